"""One parameter schema for every notebook, every YAML preset and the runner, written as typed
configuration sections (in the style of trl's script configs).

Each section is a frozen dataclass; a parameter is a field, and its NAME in notebooks, YAML
files and ``-p`` overrides is the field name upper-cased (``kcore`` -> ``KCORE``). The field's
annotation gives its type and :func:`param` its default, one-line help, choices and bounds.
:data:`SCHEMA` is derived from the sections, so the two can never disagree.

The defaults are a small, coherent run: 64 users of the shipped ml-latest-small, K = 32, the
embedded teacher and student, so that the notebooks opened in JupyterLab with nothing changed run
01 -> 08 in about ten minutes on 2 CPU cores (tests/test_notebooks_defaults.py runs them so). The
presets under params/ set what they need over them; the help of a field names the paper's value.

* :func:`load_params` layers defaults < YAML files < overrides and :func:`validate` rejects
  unknown names (with close-match suggestions), wrong types, non-finite numbers and values out
  of range before anything runs (papermill itself only warns);
* :meth:`Config.from_params` turns validated parameters into typed sections
  (``cfg.student.learning_rate``). A notebook declares only the parameters it uses; reading a
  field it did not declare raises a :class:`ParamError` that names the parameter, instead of
  silently using the default.
"""

from __future__ import annotations

import ast
import difflib
import functools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from rrlib.errors import ParamError

TYPES = ("str", "int", "float", "bool", "list[int]", "list[float]", "list[str]")


@dataclass(frozen=True)
class Param:
    """A parameter as the schema knows it."""

    name: str
    type: str
    default: Any
    help: str
    section: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None


class _Undeclared:
    """The value of a field the notebook did not declare."""

    def __repr__(self) -> str:
        return "<undeclared>"


UNDECLARED: Any = _Undeclared()


def param(
    default: Any, help: str, *, choices: Iterable | None = None, min: float | None = None, max: float | None = None
) -> Any:
    """A schema field: its default, one-line help (it becomes the notebook cell comment), and
    optional choices and inclusive bounds (bounds apply to each element of a list)."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "min": min, "max": max}
    if isinstance(default, list):
        return field(default_factory=functools.partial(list, tuple(default)), metadata=meta)
    return field(default=default, metadata=meta)


class Section:
    """Base of the configuration sections: refuses reads of undeclared fields."""

    TITLE: ClassVar[str] = ""

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if value is UNDECLARED:
            raise ParamError(
                f"parameter {name.upper()} is read here but was not declared: add it to the notebook's "
                f"parameters cell (or pass it to Config.from_params)."
            )
        return value


DATASET_NAMES = (
    "ml_latest_small",
    "amazon_instruments",
    "embedded_beauty",
    "beauty",
    "fashion",
    "amazon2018",
    "ml1m",
    "release_beauty",
    "generic",
)


# ---------------------------------------------------------------------------------------
# The sections, in notebook order
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommonConfig(Section):
    TITLE: ClassVar[str] = "shared by every notebook"
    dataset: str = param("ml_latest_small", "dataset name: " + ", ".join(DATASET_NAMES), choices=DATASET_NAMES)
    data_dir: str = param("", "folder with the raw dataset files ('': the shipped copy or download cache)")
    run_dir: str = param("outputs/dev", "run folder every notebook reads from and writes to")
    cache_dir: str = param("outputs/cache", "cache shared across runs: generations, models, downloads")
    seed: int = param(42, "seed for every sampler, trainer and generator", min=0)


@dataclass(frozen=True)
class DataConfig(Section):
    TITLE: ClassVar[str] = "data (01)"
    allow_download: bool = param(True, "download a paper dataset into CACHE_DIR when absent and online")
    domain: str = param(
        "",
        "prompt domain ('': from DATASET): movies, beauty, fashion, instruments, books",
        choices=("", "movies", "beauty", "fashion", "instruments", "books"),
    )
    amazon_category: str = param(
        "",
        "DATASET amazon2018: the category, e.g. Musical_Instruments ('': the single "
        "<Category>[_5].json[.gz] in DATA_DIR)",
    )
    encoding: str = param(
        "utf-8",
        "text encoding of CSV files read from DATA_DIR: utf-8, latin-1, cp1252, ... or auto "
        "(UTF-8 when valid, else latin-1)",
    )
    date_order: str = param(
        "auto",
        "slash dates such as 03/04/2019: auto (from the data; ambiguous columns are "
        "refused), dmy (3 April) or mdy (March 4)",
        choices=("auto", "dmy", "mdy"),
    )
    rating_scale: list[float] = param(
        [], "[lowest, highest] valid rating; values outside are refused ([]: the dataset's own scale; generic: [1, 5])"
    )
    kcore: int = param(20, "keep users with at least this many interactions (paper: 20 ML1M, 5 Amazon)", min=3)
    like_threshold: float = param(3.0, "rating > threshold counts as liked (paper: 3)")
    history_len: int = param(5, "k: most recent interactions shown before each target (paper: the k-core k)", min=1)
    profile_items: int = param(5, "m: earliest interactions summarised into the user profile (paper: 15)", min=0)
    collapse_copies: bool = param(
        True,
        "one review copied onto several listings (same user, text and rating, "
        "different item ids) becomes one interaction, the earliest",
    )
    release_windows: str = param(
        "clean",
        "release_beauty: clean (drop exact duplicate rows and the target's own "
        "item from its window) or as_released (the authors' windows unchanged)",
        choices=("clean", "as_released"),
    )
    dedup: str = param(
        "keep_last",
        "duplicate user-item rows: keep_last, keep_first or keep_all",
        choices=("keep_last", "keep_first", "keep_all"),
    )
    tie_order: str = param(
        "file", "order of same-timestamp interactions: file (source order) or item (item id)", choices=("file", "item")
    )
    reviews_per_item: int = param(10, "p: reviews sampled per item by Algorithm 1", min=0)
    review_words: int = param(50, "each sampled review is trimmed to this many words", min=1)
    kshot_sizes: list[int] = param(
        [32], "K: training-set sizes (nested; paper: 64, 128, 256; at most one per user)", min=1
    )
    kshot_sampling: str = param(
        "stratified",
        "K-shot sets: stratified (label shares of the train split), balanced "
        "(50/50, ReasoningRec authors) or random (TALLRec authors)",
        choices=("stratified", "balanced", "random"),
    )
    leakage_threshold: float = param(
        0.01,
        "notebook 01 stops when a larger share of a split's targets has its item "
        "or an identical review in its own input",
        min=0,
        max=1,
    )
    n_valid: int = param(16, "validation examples subsampled (paper: 600; 0: all)", min=0)
    n_test: int = param(0, "test examples subsampled (paper: 600; 0: all)", min=0)
    max_users: int = param(
        64, "keep only this many users after the k-core, seeded (0: all; a slice for trying things out)", min=0
    )


@dataclass(frozen=True)
class TeacherConfig(Section):
    TITLE: ClassVar[str] = "teacher LLM (02-05)"
    teacher_backend: str = param(
        "local", "local (transformers in this process) or server (OpenAI-compatible)", choices=("local", "server")
    )
    teacher_engine: str = param(
        "auto",
        "with TEACHER_BACKEND local: transformers (in this process), "
        "llama_server, llama_cpp_python or vllm (a loopback process the "
        "workbook starts and stops; make server / make vllm), or auto (the "
        "fastest installed engine that works here, else transformers)",
        choices=("auto", "transformers", "llama_server", "llama_cpp_python", "vllm"),
    )
    teacher_engine_weights: str = param(
        "auto",
        "GGUF weights the llama.cpp engines serve: q4_1 (shipped), q8_0, f16 or bf16 (made once with "
        "llama-quantize), or auto (bf16 on a CPU with AVX-512 BF16 or AMX, where it measured 26% faster than f16; else f16)",
        choices=("auto", "q4_1", "q8_0", "f16", "bf16"),
    )
    teacher_engine_parallel: int = param(
        16, "engine requests decoded together (llama-server slots, vLLM max_num_seqs)", min=1
    )
    teacher_engine_threads: int = param(
        0,
        "engine CPU threads (0: every core; on a machine shared with other jobs 1 "
        "is faster: llama.cpp threads spin-wait on each other)",
        min=0,
    )
    teacher_engine_timeout_s: float = param(
        900.0,
        "timeout of one request to a self-started engine, in seconds (it "
        "shares the CPU with the other slots and any other job)",
        min=1,
        max=86400,
    )
    teacher_engine_idle_s: float = param(
        120.0,
        "a self-started engine is shared by every notebook and run on this machine that uses the same "
        "model and settings, and stopped once idle this many seconds (0: one engine per notebook, "
        "stopped at its end)",
        min=0,
        max=86400,
    )
    teacher_model: str = param("embedded", "'embedded' (SmolLM2-135M-Instruct), a local path or a model id")
    teacher_revision: str = param("", "model revision for a hub id ('': default)")
    teacher_quantization: str = param(
        "none", "none, 4bit (nf4, bf16 compute) or 8bit; CUDA only", choices=("none", "4bit", "8bit")
    )
    teacher_dtype: str = param(
        "auto",
        "auto (bf16 where fast, else fp32), bfloat16, float16 or float32",
        choices=("auto", "bfloat16", "float16", "float32"),
    )
    teacher_batch_size: int = param(64, "largest generation batch (shrunk for long prompts or on OOM)", min=1)
    teacher_batch_tokens: int = param(65536, "most (prompt + new) tokens x rows in one local generation batch", min=64)
    trust_remote_code: bool = param(False, "allow model repositories to run their own code")
    server_url: str = param("http://127.0.0.1:8080/v1", "base URL of the OpenAI-compatible server")
    server_model: str = param("", "model name the server expects")
    server_api_key_env: str = param("OPENAI_API_KEY", "environment variable holding the API key (never stored)")
    server_concurrency: int = param(8, "requests in flight at once", min=1)
    server_timeout_s: float = param(120.0, "timeout of one request in seconds", min=1, max=86400)
    server_retries: int = param(4, "retries with exponential backoff on errors and 5xx", min=0)
    server_grammar: str = param(
        "grammar",
        "how the server is sent a teacher answer's grammar: grammar (llama.cpp, llama-cpp-python), "
        "structured_outputs (vLLM), guided_grammar (older vLLM) or none (it cannot constrain: answers "
        "are free text, as TEACHER_CONSTRAINED false)",
        choices=("grammar", "structured_outputs", "guided_grammar", "none"),
    )
    teacher_constrained: bool = param(
        True,
        "decode every teacher answer that is parsed (EXP3RT extraction, profiles and rating reasoning; "
        "ReasoningRec's reasoning sections) under its grammar, so it parses by construction",
    )
    teacher_repetition_penalty: float = param(
        1.1, "repetition penalty for the teacher (paper: 1.0, off; small models loop without ~1.1)", min=1.0, max=10.0
    )
    generation_mode: str = param("paper", "paper (Table 6 temperature/top_p) or greedy", choices=("paper", "greedy"))
    teacher_tokens_per_word: float = param(
        1.6,
        "cap on the teacher's new tokens per word its prompt asks for (0: the paper's max_new_tokens, "
        "scaled to the word budget; small models write to the cap, and text past the budget is trimmed)",
        min=0.0,
        max=10.0,
    )
    max_output_retries: int = param(2, "re-generations with a new seed for degenerate outputs", min=0)
    max_prompt_tokens: int = param(2048, "longer prompts are truncated by the documented policy", min=128)


@dataclass(frozen=True)
class EnrichConfig(Section):
    TITLE: ClassVar[str] = "enrichment and reasoning (02-05)"
    description_words: int = param(25, "n: words in an item description", min=5)
    descriptions_import: str = param(
        "release:ml1m_summaries",
        "file of existing descriptions keyed by item, or release:<name> for a shipped one ('': none)",
    )
    plot_source: str = param(
        "none", "movie plots (ML1M): cinemagoer, csv or none", choices=("cinemagoer", "csv", "none")
    )
    plots_csv: str = param("", "CSV of movie plots (item_id, plot) when PLOT_SOURCE is csv")
    plot_rate_limit_s: float = param(1.0, "seconds between two IMDb look-ups", min=0)
    profile_words: int = param(60, "q: words in a user profile (paper: 100)", min=10)
    profiles_import: str = param("", "file of existing profiles keyed by user ('': none)")
    reasoning_words: int = param(
        50, "words per reasoning part (profile analysis; target explanation; paper: 100)", min=10
    )
    ablation_reasoning: str = param(
        "faithful",
        "ablations' ground truth: faithful (written by a teacher that sees "
        "only what the ablated student sees) or full (reuse the full reasoning)",
        choices=("faithful", "full"),
    )
    reference_reasoning: bool = param(
        True, "also write label-conditioned reasoning for the test subsample, as BERTScore references only"
    )
    n_reasoning_test: int = param(
        8,
        "test examples whose reasoning is written by the teacher (reference) and by "
        "the student, for BERTScore (0: all N_TEST; AUC always uses all N_TEST)",
        min=0,
    )
    enrich_scope: str = param(
        "needed", "needed (items/users of the sampled examples) or all", choices=("needed", "all")
    )


@dataclass(frozen=True)
class Exp3rtConfig(Section):
    TITLE: ClassVar[str] = "EXP3RT: review preferences, profiles, rating prediction and reranking (04-08)"
    exp3rt_review_words: int = param(
        80, "each review is trimmed to this many words before preference extraction", min=5
    )
    exp3rt_reviews_per_user: int = param(
        8, "most recent allowed reviews per user whose preferences form the user profile", min=1
    )
    exp3rt_reviews_per_item: int = param(
        5, "Algorithm 1 reviews per item whose preferences form the item profile", min=1
    )
    exp3rt_profile_words: int = param(60, "words in an EXP3RT user or item profile", min=10)
    exp3rt_reasoning_words: int = param(80, "words of the rating reasoning", min=10)
    exp3rt_multitask: bool = param(
        False, "the rating student also learns steps 1 and 2 (extraction, profiles), as the paper distils all three"
    )
    rank_candidates: int = param(
        20, "N: items in each ranking user's candidate list (both protocols), the held-out item included", min=2
    )
    rank_users: int = param(
        50,
        "ranking users (a liked held-out item) of the N_TEST subsample whose candidates the LLM rerankers rerank "
        "(0: all of them)",
        min=0,
    )
    rank_retriever_users: int = param(
        0, "ranking users the retrievers rank, from every test user (0: all; cheap, so the intervals are narrow)", min=0
    )
    rank_protocols: list[str] = param(
        ["retrieved", "sampled"],
        "candidate lists: retrieved (the retriever's top-N, held-out item inserted) and/or sampled (held-out item "
        "+ N-1 sampled items the user never rated)",
    )
    rank_k: list[int] = param([5, 10], "cutoffs k of NDCG@k, Recall@k and HitRate@k", min=1)
    retriever: str = param(
        "bpr_mf", "candidate generator for reranking: bpr_mf or popularity", choices=("bpr_mf", "popularity")
    )


@dataclass(frozen=True)
class StudentConfig(Section):
    TITLE: ClassVar[str] = "student finetuning (06)"
    student_model: str = param(
        "embedded",
        "'embedded' (SmolLM2-135M-Instruct), 'embedded-tiny' (random, smoke runs), a local path or a model id",
    )
    student_revision: str = param("", "model revision for a hub id ('': default)")
    student_quantization: str = param(
        "none", "none, 4bit or 8bit (CUDA only; paper: 8bit)", choices=("none", "4bit", "8bit")
    )
    student_dtype: str = param(
        "auto",
        "auto (training: fp32 on CPU, fp16 with 8bit; prediction: bf16 where "
        "fast, else fp32), bfloat16, float16 or float32",
        choices=("auto", "bfloat16", "float16", "float32"),
    )
    train_kshots: list[int] = param([32], "K values to finetune (each must be in KSHOT_SIZES)", min=1)
    seeds: list[int] = param(
        [], "repeat K-shot sampling and training over these seeds ([]: SEED only); tables report mean and sd", min=0
    )
    methods: list[str] = param(
        ["reasoningrec", "tallrec"],
        "finetuned methods to train and evaluate (the ablations: reasoningrec_no_description, reasoningrec_no_profile)",
    )
    learning_rate: float = param(1e-4, "peak learning rate (paper: 1e-4 Amazon, 3e-5 ML1M)", min=0)
    lr_scheduler: str = param(
        "constant",
        "learning-rate schedule after warm-up (transformers' names; docs/learning_study.md)",
        choices=("constant", "constant_with_warmup", "linear", "cosine"),
    )
    warmup_ratio: float = param(
        0.0, "share of the optimizer updates spent warming the learning rate up", min=0, max=0.5
    )
    answer_loss_weight: float = param(
        1.0,
        "weight of the Yes/No answer token in a reasoning student's loss, relative to a reasoning "
        "token (1: plain token mean; the answer is ~1% of a reasoning completion's tokens; "
        "label-only students such as TALLRec are unaffected)",
        min=0,
    )
    max_epochs: int = param(1, "epochs at most (paper: 100)", min=1)
    early_stopping_patience: int = param(5, "epochs without validation-AUC gain before stopping", min=1)
    lora_r: int = param(8, "LoRA rank", min=1)
    lora_alpha: int = param(16, "LoRA alpha", min=1)
    lora_dropout: float = param(0.05, "LoRA dropout", min=0, max=0.99)
    lora_target_modules: list[str] = param(["q_proj", "v_proj"], "modules that get LoRA adapters")
    max_seq_length: int = param(1024, "longest training sequence in tokens (paper: 2048)", min=64)
    train_batch_size: int = param(1, "per-device training batch (1 keeps memory low on CPU)", min=1)
    grad_accum_steps: int = param(8, "gradient accumulation steps (optimizer batch: TRAIN_BATCH_SIZE x this)", min=1)
    n_valid_eval: int = param(16, "validation examples scored for AUC after each epoch (0: all)", min=0)


@dataclass(frozen=True)
class EvaluateConfig(Section):
    TITLE: ClassVar[str] = "evaluation (07)"
    eval_methods: list[str] = param(
        [
            "zeroshot_vanilla",
            "zeroshot_reasoningrec",
            "user_like_rate",
            "item_like_rate",
            "bias_logreg",
            "sasrec",
            "caser",
        ],
        "methods scored besides the finetuned ones",
    )
    generate_reasoning: bool = param(True, "generate reasoning text for BERTScore (prediction only if False)")
    generate_prediction_lines: bool = param(
        False,
        "also generate the prediction line of examples outside the reasoning subset (one more prefill "
        "each); False reads their greedy answer format from the scoring pass",
    )
    reasoning_max_new_tokens: int = param(96, "reasoning generation budget for the student (paper: 256)", min=1)
    predict_batch_size: int = param(32, "batch for Yes/No scoring and generation", min=1)
    bertscore_model: str = param(
        "embedded", "'embedded' (all-MiniLM-L6-v2) or a model id/path (paper: microsoft/deberta-xlarge-mnli)"
    )
    bertscore_num_layers: int = param(6, "encoder layer whose embeddings BERTScore uses", min=1)
    bootstrap_samples: int = param(1000, "bootstrap resamples for the AUC 95% interval", min=0)
    seq_epochs: int = param(10, "SASRec/Caser epochs at most (early stopping on validation AUC)", min=1)
    seq_hidden: int = param(32, "SASRec/Caser hidden size", min=4)
    seq_max_len: int = param(20, "SASRec/Caser: most recent history steps fed to the model", min=1)
    seq_patience: int = param(2, "SASRec/Caser: epochs without validation-AUC gain before stopping", min=1)
    seq_learning_rate: float = param(6e-3, "SASRec/Caser Adam learning rate", min=0, max=1)
    seq_batch_size: int = param(512, "SASRec/Caser training batch (targets per Adam step)", min=1)


@dataclass(frozen=True)
class RecpieConfig(Section):
    TITLE: ClassVar[str] = "RecPIE: text-fused recommender and reward-tuned explainer"
    recpie_user_text: str = param(
        "profile",
        "user text fused into the recommender: profile (03), explanations (the reward-tuned explainer) or none",
        choices=("profile", "explanations", "none"),
    )
    recpie_item_text: str = param(
        "description",
        "item text fused into the recommender: description (02), title (title and attributes) or none",
        choices=("description", "title", "none"),
    )
    recpie_hidden: int = param(64, "RecPIE recommender hidden size", min=4)
    recpie_epochs: int = param(50, "RecPIE recommender epochs at most (early stopping on validation AUC)", min=1)
    recpie_patience: int = param(5, "RecPIE: epochs without validation-AUC gain before stopping", min=1)
    recpie_learning_rate: float = param(3e-3, "RecPIE recommender Adam learning rate", min=0, max=1)
    recpie_max_len: int = param(50, "RecPIE: most recent history steps fed to the recommender", min=1)
    recpie_fractions: list[int] = param(
        [12, 25, 50, 100], "data-efficiency curve: percent of training users (nested, seeded)", min=1, max=100
    )
    recpie_efficiency_seeds: int = param(
        3, "data-efficiency curve: seeds (SEED, SEED+1, ...), each drawing its own fractions; paired over seeds", min=1
    )
    recpie_efficiency_test: str = param(
        "all",
        "data-efficiency curve scored on every test user (all; the recommenders are cheap) or the N_TEST subsample",
        choices=("all", "subsample"),
    )
    recpie_rl_rounds: int = param(2, "explainer updates alternated with recommender refits", min=1)
    recpie_rl_steps: int = param(2, "GRPO steps per round (CPU: a few; paper scale: hundreds)", min=1)
    recpie_rl_prompts_per_step: int = param(2, "users (prompts) per GRPO step", min=1)
    recpie_num_generations: int = param(4, "explanations sampled per prompt (the GRPO group)", min=2)
    recpie_max_completion_tokens: int = param(48, "longest explanation the explainer writes, in tokens", min=4)
    recpie_kl_beta: float = param(0.04, "KL penalty to the explainer at the start of the round (0: none)", min=0)
    recpie_rl_learning_rate: float = param(5e-5, "explainer LoRA learning rate in the RL updates", min=0, max=1)
    recpie_temperature: float = param(1.0, "sampling temperature of the explanations during RL", min=0.01, max=5)
    recpie_rl_users: int = param(
        64, "users whose explanations are rewarded (0: all; seeded); every evaluated user is explained too", min=0
    )
    recpie_reward_targets: int = param(
        2, "latest training targets per user kept out of the explainer's view; the reward is scored on them", min=1
    )
    recpie_reward_folds: int = param(
        2,
        "cross-fitting: rewarded users split into this many folds, each rewarded by a recommender that never "
        "trained on its reward targets",
        min=2,
    )
    recpie_explain_history: int = param(10, "most recent interactions shown to the explainer", min=1)
    recpie_explanation_words: int = param(40, "words the explainer is asked to write", min=5)


@dataclass(frozen=True)
class InspectConfig(Section):
    TITLE: ClassVar[str] = "inspection (08)"
    n_showcase: int = param(12, "test examples shown side by side", min=1)
    showcase_filter: str = param(
        "all",
        "which examples: all, correct, wrong, confident_wrong, liked, disliked",
        choices=("all", "correct", "wrong", "confident_wrong", "liked", "disliked"),
    )
    showcase_user: str = param("", "show only this user's examples ('': any)")
    inspect_method: str = param("reasoningrec", "method whose outputs lead the side-by-side view")


SECTION_CLASSES: dict[str, type[Section]] = {
    "common": CommonConfig,
    "data": DataConfig,
    "teacher": TeacherConfig,
    "enrich": EnrichConfig,
    "exp3rt": Exp3rtConfig,
    "student": StudentConfig,
    "evaluate": EvaluateConfig,
    "recpie": RecpieConfig,
    "inspect": InspectConfig,
}


def _type_of(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if text not in TYPES:
        raise TypeError(f"unsupported parameter type {text!r}")
    return text


def _schema() -> tuple[dict[str, dict[str, Param]], dict[str, Param]]:
    sections: dict[str, dict[str, Param]] = {}
    for sname, cls in SECTION_CLASSES.items():
        out = {}
        instance = cls()  # every field has a default: read them (factories included) from an instance
        for f in fields(instance):  # type: ignore[arg-type]  # Section subclasses are dataclasses
            default = getattr(instance, f.name)
            m = f.metadata
            out[f.name.upper()] = Param(
                f.name.upper(), _type_of(f.type), default, m["help"], sname, m["choices"], m["min"], m["max"]
            )
        sections[sname] = out
    flat = {k: v for s in sections.values() for k, v in s.items()}
    return sections, flat


#: section name -> {NAME: Param}, and the flat {NAME: Param}
SECTIONS, SCHEMA = _schema()
COMMON, DATA, TEACHER, ENRICH = SECTIONS["common"], SECTIONS["data"], SECTIONS["teacher"], SECTIONS["enrich"]
STUDENT, EVALUATE, INSPECT = SECTIONS["student"], SECTIONS["evaluate"], SECTIONS["inspect"]
EXP3RT = SECTIONS["exp3rt"]
RECPIE = SECTIONS["recpie"]


def defaults() -> dict[str, Any]:
    return {k: (list(p.default) if isinstance(p.default, list) else p.default) for k, p in SCHEMA.items()}


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------
def suggest(name: str, candidates: Iterable[str] = ()) -> list[str]:
    """Close matches of a misspelt parameter name (difflib), best first."""
    pool = list(candidates) or list(SCHEMA)
    close = difflib.get_close_matches(name.upper(), pool, n=3, cutoff=0.6)
    # a dropped or added plural/suffix ("MAX_EPOCH" -> "MAX_EPOCHS") is always worth naming
    close += [
        k
        for k in pool
        if k not in close
        and (k.startswith(name.upper()) or name.upper().startswith(k))
        and abs(len(k) - len(name)) <= 3
    ]
    return close[:3]


def _number(value: Any, name: str, where: str, param: Param, kind: str) -> Any:
    def bad(expected: str) -> ParamError:
        return ParamError(
            f"{where}: parameter {name} must be {expected}, got {value!r} ({type(value).__name__}). {param.help}."
        )

    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise bad("a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad("a number")
    value = float(value)
    if not math.isfinite(value):
        raise ParamError(f"{where}: parameter {name}={value!r} must be a finite number. {param.help}.")
    return value


def check_value(name: str, value: Any, param: Param, where: str = "parameters") -> Any:
    """The value converted to the parameter's type; a ParamError naming it when it does not fit."""
    t = param.type

    def bad(expected: str) -> ParamError:
        return ParamError(
            f"{where}: parameter {name} must be {expected}, got {value!r} ({type(value).__name__}). {param.help}."
        )

    if t == "str":
        if not isinstance(value, str):
            raise bad("a string")
    elif t == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
    elif t in ("int", "float"):
        value = _number(value, name, where, param, t)
    else:
        inner = t[5:-1]
        if not isinstance(value, list):
            raise bad(f"a list of {inner}s")
        if inner == "int":
            if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
                raise bad("a list of integers")
        elif inner == "float":
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
                raise bad("a list of numbers")
            value = [float(v) for v in value]
            if not all(math.isfinite(v) for v in value):
                raise ParamError(f"{where}: parameter {name}={value!r} must hold finite numbers. {param.help}.")
        elif any(not isinstance(v, str) for v in value):
            raise bad("a list of strings")
        value = list(value)
    if param.choices is not None and value not in param.choices:
        raise ParamError(f"{where}: parameter {name}={value!r} is not one of {list(param.choices)}.")
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if param.min is not None and v < param.min:
                raise ParamError(
                    f"{where}: parameter {name}={value!r} must be >= {param.min:g}"
                    f"{' (each element)' if isinstance(value, list) else ''}. {param.help}."
                )
            if param.max is not None and v > param.max:
                raise ParamError(
                    f"{where}: parameter {name}={value!r} must be <= {param.max:g}"
                    f"{' (each element)' if isinstance(value, list) else ''}. {param.help}."
                )
    return value


def validate(params: Mapping[str, Any], where: str = "parameters") -> dict[str, Any]:
    """Check names, types and ranges; return a copy with numbers normalised. Raises ParamError."""
    unknown = sorted(set(params) - set(SCHEMA))
    if unknown:
        hint = "; ".join(f"{u} (did you mean: {', '.join(suggest(u)) or 'no close match'})" for u in unknown)
        raise ParamError(f"{where}: unknown parameter(s): {hint}. `python -m rrlib params` lists every parameter.")
    out = {name: check_value(name, value, SCHEMA[name], where) for name, value in params.items()}
    for k in out.get("TRAIN_KSHOTS", []):
        sizes = out.get("KSHOT_SIZES", SCHEMA["KSHOT_SIZES"].default)
        if k not in sizes:
            raise ParamError(f"{where}: TRAIN_KSHOTS has {k}, which is not in KSHOT_SIZES {sizes}.")
    sizes = out.get("KSHOT_SIZES")
    if sizes is not None and len(set(sizes)) != len(sizes):
        raise ParamError(f"{where}: KSHOT_SIZES {sizes} repeats a size.")
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a preset that sets a name twice is a mistake."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ParamError(
                    f"{self.name}: line {line} sets {key} again (first set on line {seen[key]}); keep one of them."
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"parameter file {path} does not exist.")
    try:
        loader = _UniqueKeyLoader(path.read_text())
        loader.name = str(path)
        try:
            data = loader.get_single_data() or {}
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise ParamError(f"parameter file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ParamError(f"parameter file {path} must be a mapping of NAME: value, got {type(data).__name__}.")
    return validate(data, where=str(path))


def yaml_keys(path: str | Path) -> list[str]:
    """The names a YAML file sets (empty when it cannot be read)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    return list(data) if isinstance(data, dict) else []


def parse_override(name: str, text: str) -> Any:
    """Turn a command-line ``-p NAME VALUE`` into a typed value using the schema."""
    if name not in SCHEMA:
        validate({name: None}, where="-p")  # raises the unknown-name error
    t = SCHEMA[name].type
    if t == "str":
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ParamError(f"-p {name}: cannot parse {text!r}: {e}") from e
    if t == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if t == "float" and isinstance(value, str):  # YAML 1.1 reads "1e-4" and "nan" as strings
        try:
            value = float(text)
        except ValueError:
            pass  # validate() reports it
    return value


def add_parameter_arguments(parser) -> None:
    """``-f YAML`` (repeatable, later files win) and ``-p NAME VALUE`` (wins over the files), the
    parameter options of every command line (``python -m rrlib``, ``scripts/train.py``)."""
    parser.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        default=[],
        metavar="YAML",
        help="parameter file; repeat to layer (later files win)",
    )
    parser.add_argument(
        "-p",
        "--param",
        dest="overrides",
        action="append",
        nargs=2,
        default=[],
        metavar=("NAME", "VALUE"),
        help="override one parameter (YAML syntax: 3, 1e-4, true, [64,128]); wins over the files",
    )


def load_params(files: Iterable[str | Path] = (), overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then each YAML file in order, then overrides; validated."""
    merged = defaults()
    for f in files:
        merged.update(load_yaml(f))
    if overrides:
        merged.update(validate(dict(overrides), where="overrides"))
    return validate(merged, where="merged parameters")


# ---------------------------------------------------------------------------------------
# Notebooks
# ---------------------------------------------------------------------------------------
def parameters_cell(notebook_path: str | Path) -> str:
    nb = json.loads(Path(notebook_path).read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParamError(f"{notebook_path}: expected exactly one cell tagged 'parameters', found {len(cells)}.")
    return "".join(cells[0]["source"])


def notebook_parameters(notebook_path: str | Path) -> dict[str, Any]:
    """The literals assigned in a notebook's cell tagged ``parameters``."""
    found = {}
    for node in ast.parse(parameters_cell(notebook_path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


def notebook_comments(notebook_path: str | Path) -> dict[str, str]:
    """The comment after each assignment of the parameters cell (``NAME = 1  # comment``)."""
    out = {}
    for line in parameters_cell(notebook_path).splitlines():
        head, sep, comment = line.partition("  # ")
        if sep and "=" in head and not head.lstrip().startswith("#"):
            out[head.split("=")[0].strip()] = comment.strip()
    return out


def select_for_notebook(params: Mapping[str, Any], notebook_path: str | Path) -> dict[str, Any]:
    """The subset of ``params`` that a notebook declares (what papermill should inject)."""
    declared = notebook_parameters(notebook_path)
    return {k: v for k, v in params.items() if k in declared}


def cell_comment(p: Param) -> str:
    """The notebook cell comment of a parameter: its help, with '=' avoided (papermill drops a
    parameter whose comment holds '=')."""
    return p.help.replace("=", ":")


def render_parameters_cell(names: Iterable[str]) -> str:
    """The source of a parameters cell declaring ``names`` with schema defaults and help as
    comments, grouped under one header per section (``scripts/sync_parameter_cells.py``)."""
    wanted = set(names)
    unknown = sorted(wanted - set(SCHEMA))
    if unknown:
        raise ParamError(f"render_parameters_cell: unknown parameter(s) {unknown}.")
    blocks = []
    for sname, section in SECTIONS.items():
        lines = [_wrapped(f"{n} = {_literal(p.default)}", cell_comment(p)) for n, p in section.items() if n in wanted]
        if lines:
            blocks.append("\n".join([f"# {SECTION_CLASSES[sname].TITLE}"] + lines))
    return "\n\n".join(blocks)


def _literal(value: Any) -> str:
    return repr(value)


#: parameters-cell lines are wrapped to this width, so their comments stay inside a JupyterLab cell
CELL_WIDTH = 100


def _wrapped(assignment: str, comment: str) -> str:
    """``NAME = value  # comment``, the comment continued on ``#   ...`` lines past CELL_WIDTH."""
    import textwrap

    head = f"{assignment}  # "
    first = textwrap.wrap(comment, width=max(30, CELL_WIDTH - len(head)), break_on_hyphens=False) or [""]
    rest = textwrap.wrap(" ".join(first[1:]), width=CELL_WIDTH - 4, break_on_hyphens=False)
    return "\n".join([head + first[0]] + [f"#   {line}" for line in rest])


# ---------------------------------------------------------------------------------------
# Typed configuration
# ---------------------------------------------------------------------------------------
class Config:
    """Typed sections built from validated parameters: ``cfg.data.kcore``, ``cfg.student.methods``.

    Fields whose parameter was not given are undeclared: reading one raises a ParamError."""

    common: CommonConfig
    data: DataConfig
    teacher: TeacherConfig
    enrich: EnrichConfig
    exp3rt: Exp3rtConfig
    student: StudentConfig
    evaluate: EvaluateConfig
    recpie: RecpieConfig
    inspect: InspectConfig

    def __init__(self, params: Mapping[str, Any], where: str = "parameters"):
        checked = validate(dict(params), where=where)
        self.params = checked
        for sname, cls in SECTION_CLASSES.items():
            values = {f.name: checked.get(f.name.upper(), UNDECLARED) for f in fields(cls)}  # type: ignore[arg-type]
            object.__setattr__(self, sname, cls(**values))

    @classmethod
    def from_params(cls, params: Mapping[str, Any], where: str = "parameters") -> "Config":
        return cls(params, where)

    @classmethod
    def full(cls, params: Mapping[str, Any] | None = None) -> "Config":
        """Every parameter declared: schema defaults under ``params``."""
        return cls({**defaults(), **dict(params or {})})

    def declared(self, name: str) -> bool:
        return name in self.params

    def __repr__(self) -> str:
        return f"Config({len(self.params)} parameters)"


def run_seeds(cfg: Config) -> list[int]:
    """The seeds K-shot sampling and training are repeated over: SEEDS, else [SEED]."""
    return list(cfg.student.seeds) or [cfg.common.seed]


def from_namespace(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The validated schema parameters found in a notebook's globals (call after the parameters
    cell): ``PARAMS = from_namespace(globals())``."""
    return validate({k: v for k, v in namespace.items() if k in SCHEMA}, where="notebook parameters")


def config_from_namespace(namespace: Mapping[str, Any]) -> Config:
    """``CFG = config_from_namespace(globals())``: the notebook's parameters as typed sections."""
    return Config(from_namespace(namespace), where="notebook parameters")


__all__ = [
    "Config",
    "CommonConfig",
    "DataConfig",
    "EnrichConfig",
    "EvaluateConfig",
    "Exp3rtConfig",
    "InspectConfig",
    "Param",
    "RecpieConfig",
    "ParamError",
    "SCHEMA",
    "SECTIONS",
    "SECTION_CLASSES",
    "StudentConfig",
    "TeacherConfig",
    "UNDECLARED",
    "check_value",
    "config_from_namespace",
    "defaults",
    "from_namespace",
    "load_params",
    "load_yaml",
    "notebook_comments",
    "notebook_parameters",
    "param",
    "parameters_cell",
    "parse_override",
    "render_parameters_cell",
    "run_seeds",
    "select_for_notebook",
    "suggest",
    "validate",
    "yaml_keys",
]
