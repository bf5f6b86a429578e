"""One parameter schema for every notebook, every YAML preset and the runner.

Each notebook declares the parameters it uses in its cell tagged ``parameters``, with the
defaults given here (tests check both). ``params/*.yaml`` files layer over those defaults;
:func:`load_params` merges them and :func:`validate` rejects unknown names and wrong types
before anything runs (papermill itself only warns).
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml


class ParamError(ValueError):
    """A parameter file or override names an unknown key or has a wrong type or value."""


@dataclass(frozen=True)
class Param:
    type: str  # "str" | "int" | "float" | "bool" | "list[int]" | "list[str]" | "dict"
    default: Any
    help: str
    choices: tuple | None = None
    min: float | None = None


_P = Param

# ---------------------------------------------------------------------------------------
# Shared by every notebook
# ---------------------------------------------------------------------------------------
COMMON = {
    "DATASET": _P("str", "embedded_beauty", "dataset name: embedded_beauty, beauty, fashion, ml1m, "
                  "release_beauty or generic", ("embedded_beauty", "beauty", "fashion", "ml1m",
                                                 "release_beauty", "generic")),
    "DATA_DIR": _P("str", "", "folder with the raw dataset files ('' = the embedded copy or download cache)"),
    "RUN_DIR": _P("str", "outputs/dev", "run folder every notebook reads from and writes to"),
    "CACHE_DIR": _P("str", "outputs/cache", "cache shared across runs: generations, models, downloads"),
    "SEED": _P("int", 42, "seed for every sampler, trainer and generator", min=0),
}

# ---------------------------------------------------------------------------------------
# 01 data preparation
# ---------------------------------------------------------------------------------------
DATA = {
    "ALLOW_DOWNLOAD": _P("bool", True, "download a paper dataset into CACHE_DIR when absent and online"),
    "DOMAIN": _P("str", "", "prompt domain ('' = from DATASET): movies, beauty, fashion",
                 ("", "movies", "beauty", "fashion")),
    "KCORE": _P("int", 5, "keep users with at least this many interactions (paper: 20 ML1M, 5 Amazon)", min=3),
    "LIKE_THRESHOLD": _P("float", 3.0, "rating > threshold counts as liked (paper: 3)"),
    "HISTORY_LEN": _P("int", 5, "k: most recent interactions shown before each target (paper: the k-core k)", min=1),
    "PROFILE_ITEMS": _P("int", 15, "m: earliest interactions summarised into the user profile", min=0),
    "DEDUP": _P("str", "keep_last", "duplicate user-item rows: keep_last, keep_first or keep_all",
                ("keep_last", "keep_first", "keep_all")),
    "TIE_ORDER": _P("str", "file", "order of same-timestamp interactions: file (source order) or item (item id)",
                    ("file", "item")),
    "REVIEWS_PER_ITEM": _P("int", 10, "p: reviews sampled per item by Algorithm 1", min=0),
    "REVIEW_WORDS": _P("int", 50, "each sampled review is trimmed to this many words", min=1),
    "KSHOT_SIZES": _P("list[int]", [64, 128, 256], "K: training-set sizes (nested, label-stratified)"),
    "N_VALID": _P("int", 600, "validation examples subsampled (paper: 600; 0 = all)", min=0),
    "N_TEST": _P("int", 600, "test examples subsampled (paper: 600; 0 = all)", min=0),
    "MAX_USERS": _P("int", 0, "keep only this many users after the k-core, seeded (0 = all; for smoke runs)", min=0),
}

# ---------------------------------------------------------------------------------------
# 02-04 teacher LLM: item descriptions, user profiles, reasoning ground truth
# ---------------------------------------------------------------------------------------
TEACHER = {
    "TEACHER_BACKEND": _P("str", "local", "local (transformers in this process) or server (OpenAI-compatible)",
                          ("local", "server")),
    "TEACHER_ENGINE": _P("str", "transformers", "with TEACHER_BACKEND local: transformers (in this process), "
                         "llama_server, llama_cpp_python or vllm (a loopback process the workbook starts and "
                         "stops; `make server` / `make vllm`), or auto (the fastest installed engine that "
                         "works here, else transformers)",
                         ("auto", "transformers", "llama_server", "llama_cpp_python", "vllm")),
    "TEACHER_ENGINE_WEIGHTS": _P("str", "f16", "GGUF weights the llama.cpp engines serve: q4_1 (shipped), q8_0, "
                                 "f16 or bf16 (made once with llama-quantize)", ("q4_1", "q8_0", "f16", "bf16")),
    "TEACHER_ENGINE_PARALLEL": _P("int", 16, "engine requests decoded together (llama-server slots, vLLM "
                                  "max_num_seqs)", min=1),
    "TEACHER_ENGINE_THREADS": _P("int", 0, "engine CPU threads (0 = every core; on a machine shared with "
                                 "other jobs 1 is faster: llama.cpp threads spin-wait on each other)", min=0),
    "TEACHER_MODEL": _P("str", "embedded", "'embedded' (SmolLM2-135M-Instruct), a local path or a model id"),
    "TEACHER_REVISION": _P("str", "", "model revision for a hub id ('' = default)"),
    "TEACHER_QUANTIZATION": _P("str", "none", "none, 4bit (nf4, bf16 compute) or 8bit; CUDA only",
                               ("none", "4bit", "8bit")),
    "TEACHER_DTYPE": _P("str", "auto", "auto (bf16 where fast, else fp32), bfloat16, float16 or float32",
                        ("auto", "bfloat16", "float16", "float32")),
    "TEACHER_BATCH_SIZE": _P("int", 64, "largest generation batch (shrunk for long prompts or on OOM)", min=1),
    "TEACHER_BATCH_TOKENS": _P("int", 65536, "most (prompt + new) tokens x rows in one local generation batch",
                               min=64),
    "TRUST_REMOTE_CODE": _P("bool", False, "allow model repositories to run their own code"),
    "SERVER_URL": _P("str", "http://127.0.0.1:8080/v1", "base URL of the OpenAI-compatible server"),
    "SERVER_MODEL": _P("str", "", "model name the server expects"),
    "SERVER_API_KEY_ENV": _P("str", "OPENAI_API_KEY", "environment variable holding the API key (never stored)"),
    "SERVER_CONCURRENCY": _P("int", 8, "requests in flight at once", min=1),
    "SERVER_TIMEOUT_S": _P("float", 120.0, "timeout of one request in seconds", min=1),
    "SERVER_RETRIES": _P("int", 4, "retries with exponential backoff on errors and 5xx", min=0),
    "TEACHER_REPETITION_PENALTY": _P("float", 1.0, "repetition penalty for the teacher (paper: 1.0, off; "
                                     "small models loop without ~1.2)", min=1.0),
    "GENERATION_MODE": _P("str", "paper", "paper (Table 6 temperature/top_p) or greedy", ("paper", "greedy")),
    "MAX_OUTPUT_RETRIES": _P("int", 2, "re-generations with a new seed for degenerate outputs", min=0),
    "MAX_PROMPT_TOKENS": _P("int", 2048, "longer prompts are truncated by the documented policy", min=128),
}
ENRICH = {
    "DESCRIPTION_WORDS": _P("int", 25, "n: words in an item description", min=5),
    "DESCRIPTIONS_IMPORT": _P("str", "", "file of existing descriptions keyed by item ('' = none)"),
    "PLOT_SOURCE": _P("str", "cinemagoer", "movie plots (ML1M): cinemagoer, csv or none",
                      ("cinemagoer", "csv", "none")),
    "PLOTS_CSV": _P("str", "", "CSV of movie plots (item_id, plot) when PLOT_SOURCE is csv"),
    "PLOT_RATE_LIMIT_S": _P("float", 1.0, "seconds between two IMDb look-ups", min=0),
    "PROFILE_WORDS": _P("int", 100, "q: words in a user profile", min=10),
    "PROFILES_IMPORT": _P("str", "", "file of existing profiles keyed by user ('' = none)"),
    "REASONING_WORDS": _P("int", 100, "words per reasoning part (profile analysis; target explanation)", min=10),
    "REFERENCE_REASONING": _P("bool", True, "also write label-conditioned reasoning for the test subsample, as "
                              "BERTScore references only"),
    "ENRICH_SCOPE": _P("str", "needed", "needed (items/users of the sampled examples) or all", ("needed", "all")),
}

# ---------------------------------------------------------------------------------------
# 05 finetuning and 06 evaluation
# ---------------------------------------------------------------------------------------
STUDENT = {
    "STUDENT_MODEL": _P("str", "embedded", "'embedded' (SmolLM2-135M-Instruct), a local path or a model id"),
    "STUDENT_REVISION": _P("str", "", "model revision for a hub id ('' = default)"),
    "STUDENT_QUANTIZATION": _P("str", "none", "none or 8bit (CUDA only; paper: 8bit)", ("none", "4bit", "8bit")),
    "STUDENT_DTYPE": _P("str", "auto", "auto (training: fp32 on CPU, fp16 with 8bit; prediction: bf16 where "
                        "fast, else fp32), bfloat16, float16 or float32", ("auto", "bfloat16", "float16", "float32")),
    "TRAIN_KSHOTS": _P("list[int]", [64], "K values to finetune (each must be in KSHOT_SIZES)"),
    "METHODS": _P("list[str]", ["reasoningrec", "tallrec", "reasoningrec_no_description",
                                "reasoningrec_no_profile"], "finetuned methods to train and evaluate"),
    "LEARNING_RATE": _P("float", 1e-4, "learning rate (paper: 1e-4 Amazon, 3e-5 ML1M)", min=0),
    "MAX_EPOCHS": _P("int", 2, "epochs at most (paper: 100)", min=1),
    "EARLY_STOPPING_PATIENCE": _P("int", 5, "epochs without validation-AUC gain before stopping", min=1),
    "LORA_R": _P("int", 8, "LoRA rank", min=1),
    "LORA_ALPHA": _P("int", 16, "LoRA alpha", min=1),
    "LORA_DROPOUT": _P("float", 0.05, "LoRA dropout", min=0),
    "LORA_TARGET_MODULES": _P("list[str]", ["q_proj", "v_proj"], "modules that get LoRA adapters"),
    "MAX_SEQ_LENGTH": _P("int", 2048, "longest training sequence in tokens", min=64),
    "TRAIN_BATCH_SIZE": _P("int", 8, "per-device training batch", min=1),
    "GRAD_ACCUM_STEPS": _P("int", 1, "gradient accumulation steps", min=1),
    "N_VALID_EVAL": _P("int", 64, "validation examples scored for AUC after each epoch (0 = all)", min=0),
}
EVALUATE = {
    "EVAL_METHODS": _P("list[str]", ["zeroshot_vanilla", "zeroshot_reasoningrec", "user_like_rate",
                                     "item_like_rate", "bias_logreg", "sasrec", "caser"],
                       "methods scored besides the finetuned ones"),
    "GENERATE_REASONING": _P("bool", True, "generate reasoning text for BERTScore (prediction only if False)"),
    "REASONING_MAX_NEW_TOKENS": _P("int", 256, "reasoning generation budget for the student", min=1),
    "PREDICT_BATCH_SIZE": _P("int", 32, "batch for Yes/No scoring and generation", min=1),
    "BERTSCORE_MODEL": _P("str", "embedded", "'embedded' (all-MiniLM-L6-v2) or a model id/path "
                          "(paper: microsoft/deberta-xlarge-mnli)"),
    "BERTSCORE_NUM_LAYERS": _P("int", 6, "encoder layer whose embeddings BERTScore uses", min=1),
    "BOOTSTRAP_SAMPLES": _P("int", 1000, "bootstrap resamples for the AUC 95% interval", min=0),
    "SEQ_EPOCHS": _P("int", 50, "SASRec/Caser epochs at most (early stopping on validation AUC)", min=1),
    "SEQ_HIDDEN": _P("int", 64, "SASRec/Caser hidden size", min=4),
    "SEQ_MAX_LEN": _P("int", 50, "SASRec/Caser: most recent history steps fed to the model", min=1),
    "SEQ_PATIENCE": _P("int", 5, "SASRec/Caser: epochs without validation-AUC gain before stopping", min=1),
    "SEQ_LEARNING_RATE": _P("float", 3e-3, "SASRec/Caser Adam learning rate", min=0),
}

# ---------------------------------------------------------------------------------------
# 07 inspection
# ---------------------------------------------------------------------------------------
INSPECT = {
    "N_SHOWCASE": _P("int", 12, "test examples shown side by side", min=1),
    "SHOWCASE_FILTER": _P("str", "all", "which examples: all, correct, wrong, confident_wrong, liked, "
                          "disliked", ("all", "correct", "wrong", "confident_wrong", "liked", "disliked")),
    "SHOWCASE_USER": _P("str", "", "show only this user's examples ('' = any)"),
    "INSPECT_METHOD": _P("str", "reasoningrec", "method whose outputs lead the side-by-side view"),
}

SECTIONS = {"common": COMMON, "data": DATA, "teacher": TEACHER, "enrich": ENRICH,
            "student": STUDENT, "evaluate": EVALUATE, "inspect": INSPECT}
SCHEMA: dict[str, Param] = {k: v for section in SECTIONS.values() for k, v in section.items()}


def defaults() -> dict[str, Any]:
    return {k: p.default for k, p in SCHEMA.items()}


def _check_type(name: str, value: Any, param: Param, where: str) -> Any:
    def bad(expected: str) -> ParamError:
        return ParamError(f"{where}: parameter {name} must be {expected}, got {value!r} "
                          f"({type(value).__name__}). {param.help}.")

    t = param.type
    if t == "str":
        if not isinstance(value, str):
            raise bad("a string")
    elif t == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
    elif t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif t == "float":
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
    elif t.startswith("list["):
        inner = t[5:-1]
        if not isinstance(value, list):
            raise bad(f"a list of {inner}")
        for v in value:
            if inner == "int" and (isinstance(v, bool) or not isinstance(v, int)):
                raise bad("a list of integers")
            if inner == "str" and not isinstance(v, str):
                raise bad("a list of strings")
    elif t == "dict":
        if not isinstance(value, dict):
            raise bad("a mapping")
    if param.choices is not None and value not in param.choices:
        raise ParamError(f"{where}: parameter {name}={value!r} is not one of {list(param.choices)}.")
    if param.min is not None:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, (int, float)) and v < param.min:
                raise ParamError(f"{where}: parameter {name}={value!r} must be >= {param.min}.")
    return value


def validate(params: Mapping[str, Any], where: str = "parameters") -> dict[str, Any]:
    """Check names and types; return a copy with numbers normalised. Raises ParamError."""
    out = {}
    unknown = sorted(set(params) - set(SCHEMA))
    if unknown:
        close = {u: [k for k in SCHEMA if k.split("_")[0] == u.split("_")[0]][:3] for u in unknown}
        hint = "; ".join(f"{u} (similar: {', '.join(c) or 'none'})" for u, c in close.items())
        raise ParamError(f"{where}: unknown parameter(s): {hint}. Known parameters are listed in "
                         f"rrlib/params.py.")
    for name, value in params.items():
        out[name] = _check_type(name, value, SCHEMA[name], where)
    for k in out.get("TRAIN_KSHOTS", []):
        sizes = out.get("KSHOT_SIZES", SCHEMA["KSHOT_SIZES"].default)
        if k not in sizes:
            raise ParamError(f"{where}: TRAIN_KSHOTS has {k}, which is not in KSHOT_SIZES {sizes}.")
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"parameter file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamError(f"parameter file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ParamError(f"parameter file {path} must be a mapping of NAME: value, got {type(data).__name__}.")
    return validate(data, where=str(path))


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
    if t == "float" and isinstance(value, int):
        value = float(value)
    if t == "float" and isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            value = float(text)
        except ValueError:
            pass  # validate() reports it
    return value


def load_params(files: Iterable[str | Path] = (), overrides: Mapping[str, Any] | None = None
                ) -> dict[str, Any]:
    """Defaults, then each YAML file in order, then overrides; validated."""
    merged = defaults()
    for f in files:
        merged.update(load_yaml(f))
    if overrides:
        merged.update(validate(dict(overrides), where="overrides"))
    return validate(merged, where="merged parameters")


def notebook_parameters(notebook_path: str | Path) -> dict[str, Any]:
    """The literals assigned in a notebook's cell tagged ``parameters``."""
    nb = json.loads(Path(notebook_path).read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParamError(f"{notebook_path}: expected exactly one cell tagged 'parameters', found {len(cells)}.")
    source = "".join(cells[0]["source"])
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


def select_for_notebook(params: Mapping[str, Any], notebook_path: str | Path) -> dict[str, Any]:
    """The subset of ``params`` that a notebook declares (what papermill should inject)."""
    declared = notebook_parameters(notebook_path)
    return {k: v for k, v in params.items() if k in declared}


def from_namespace(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The validated schema parameters found in a notebook's globals (call after the
    parameters cell): ``PARAMS = from_namespace(globals())``."""
    return validate({k: v for k, v in namespace.items() if k in SCHEMA}, where="notebook parameters")
