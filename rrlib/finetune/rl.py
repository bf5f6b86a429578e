"""RecPIE's generative half: the student writes an explanation of what each user wants, the
explanation is fused into the RecPIE recommender (:mod:`rrlib.methods.recpie`), and the
recommender's gain on the user's held-out training targets is the reward that tunes the student
by RL.

The loop (rounds ``0 .. RECPIE_RL_ROUNDS``):

* round 0: the base student (a fresh, zero LoRA) explains every user greedily; the recommender
  (RECPIE's ``recpie_hybrid`` by default) is fitted with those explanations, once per fold;
* round r >= 1: (1) the explainer is updated by trl's :class:`~trl.GRPOTrainer` for
  RECPIE_RL_STEPS steps; each step samples RECPIE_NUM_GENERATIONS explanations of
  RECPIE_RL_PROMPTS_PER_STEP users and rewards each by :func:`rrlib.methods.recpie.explanation_gain`
  under round r-1's recommender of the user's fold: the mean gain in log-likelihood of the TRUE
  labels of the user's reward targets with the explanation versus without it; (2) the updated
  explainer explains every user greedily; (3) the recommenders are refitted on those
  explanations and their validation AUC is recorded.

**Out-of-sample reward (cross-fitting over users).** The rewarded users (RECPIE_RL_USERS) are
split into RECPIE_REWARD_FOLDS seeded folds. The recommender of fold f learns from every training
target except the reward targets of fold f's users (``held_out``), so it learns to use
explanations from the other folds' users and scores fold f's explanations on targets it never
trained on; :func:`rrlib.methods.recpie.check_out_of_sample` refuses any reward target inside the
scoring recommender's training data. (An in-sample reward would favour texts that let the
recommender recall what it memorised.) Validation and test targets are never reward targets.

**Coverage.** Rounds 0 and RECPIE_RL_ROUNDS also explain every evaluated user (the N_TEST test
users, :attr:`ExplainerInputs.explained`), so ``recpie_rl`` scores explanations rather than a
no-text fallback; intermediate rounds explain the rewarded users only. A user with no interaction
before its reward targets cannot be explained (07 scores ``recpie_rl`` on the explained users only
and says so).

trl 1.16 ships no PPO trainer (the paper used PPO), so GRPO is used: its group-relative
advantages need no value model, which suits a reward that only exists per whole explanation.
The KL penalty (RECPIE_KL_BETA) is to the explainer at the start of each round (trl copies the
loaded adapter as the reference), a per-round trust region; round 1's reference is the base student.

**No leakage.** Per user, the last RECPIE_REWARD_TARGETS training targets (every one before the
valid target) are the reward targets; the explainer sees only interactions before them
(:func:`explainer_inputs`), and an explanation is fused only into targets from there on
(``available_from``), so it is never scored on, or shown for, a target it was written from.
Valid and test labels are never read by the reward; validation AUC is only logged.

**Resume.** Each finished round is one folder ``round_<r>/`` (adapter, explanations,
recommender weights, summary), built in a temporary sibling and renamed into place, so a kill
leaves either a complete round or none. A rerun skips finished rounds and continues from the
last one; ``log.jsonl`` (one record per round: reward, KL, validation AUC, times) is
reconciled with the round folders. ``settings.json`` guards against resuming with other
settings or data.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from rrlib.config.paths import resolve_path
from rrlib.data.schema import eval_subset
from rrlib.data.sequences import training_cutoffs, user_sequences
from rrlib.errors import DataError, ParamError, TrainingConfigMismatch
from rrlib.finetune.sft import lora_config
from rrlib.io import (
    JsonlLog,
    read_json,
    read_json_or_none,
    sha256_text,
    stable_hash,
    write_json_atomic,
    write_parquet_atomic,
)
from rrlib.llm.base import Message
from rrlib.llm.encoder import default_encoder, limited_threads
from rrlib.methods.recpie import (
    EXPLAINED,
    VARIANTS,
    FittedHybrid,
    TextFeatures,
    explanation_gain,
    fit_hybrid,
    hybrid_config,
    restore_hybrid,
    run_texts,
    variant,
)
from rrlib.methods.sequential import SeqConfig
from rrlib.prompts.explainer import TEMPLATE_VERSION, explainer_messages
from rrlib.prompts.items import ItemCatalog
from rrlib.student import load_student_for_training, student_backend

log = logging.getLogger(__name__)

ROUND_FILES = ("explanations.parquet", "recommenders.pt", "summary.json")
LOG_NAME = "log.jsonl"
SETTINGS_NAME = "settings.json"


@dataclass(frozen=True)
class RLSettings:
    """Settings of the explainer/recommender loop (RECPIE_* and the student's LORA_*)."""

    rounds: int = 2
    steps: int = 2
    prompts_per_step: int = 2
    num_generations: int = 4
    max_completion_tokens: int = 48
    kl_beta: float = 0.04
    learning_rate: float = 5e-5
    temperature: float = 1.0
    n_users: int = 64
    reward_targets: int = 2
    reward_folds: int = 2  # cross-fitting: one recommender per fold of rewarded users
    explain_history: int = 10
    words: int = 40
    recommender: str = "recpie_hybrid"
    reward_measure: str = "log_likelihood"
    seed: int = 0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    generation_batch: int = 8
    cpu_threads: int = 1  # torch threads on CPU (0: torch's default); see rrlib.llm.encoder.limited_threads

    def __post_init__(self) -> None:
        if not variant(self.recommender)[0]:
            raise ParamError(
                f"RLSettings.recommender={self.recommender!r} fuses no user text, so explanations "
                f"cannot change it; use recpie_user_text or recpie_hybrid."
            )
        if self.num_generations < 2:
            raise ParamError("RECPIE_NUM_GENERATIONS must be >= 2: GRPO compares explanations within a group.")
        if self.reward_folds < 2:
            raise ParamError(
                "RECPIE_REWARD_FOLDS must be >= 2: each fold's reward is scored by a recommender fitted without it."
            )

    @classmethod
    def from_config(cls, cfg, **overrides: Any) -> "RLSettings":
        rc, st = cfg.recpie, cfg.student
        base = dict(
            rounds=rc.recpie_rl_rounds,
            steps=rc.recpie_rl_steps,
            prompts_per_step=rc.recpie_rl_prompts_per_step,
            num_generations=rc.recpie_num_generations,
            max_completion_tokens=rc.recpie_max_completion_tokens,
            kl_beta=rc.recpie_kl_beta,
            learning_rate=rc.recpie_rl_learning_rate,
            temperature=rc.recpie_temperature,
            n_users=rc.recpie_rl_users,
            reward_targets=rc.recpie_reward_targets,
            reward_folds=rc.recpie_reward_folds,
            explain_history=rc.recpie_explain_history,
            words=rc.recpie_explanation_words,
            seed=cfg.common.seed,
            lora_r=st.lora_r,
            lora_alpha=st.lora_alpha,
            lora_dropout=st.lora_dropout,
            lora_target_modules=tuple(st.lora_target_modules),
        )
        base.update(overrides)
        return cls(**base)


# ---------------------------------------------------------------------------------------
# What the explainer sees
# ---------------------------------------------------------------------------------------
@dataclass
class ExplainerInputs:
    users: list[str]  # rewarded users (GRPO prompts; the recommenders' explanations), sorted
    messages: dict[str, list[Message]]  # each explained user's explainer prompt
    available_from: dict[str, int]  # first position the explanation may be shown at
    explained: list[str] = field(default_factory=list)  # rewarded and evaluated users, sorted

    def __post_init__(self) -> None:
        if not self.explained:
            self.explained = list(self.users)
        missing = sorted(set(self.users) - set(self.explained))
        if missing:
            raise DataError(f"ExplainerInputs: rewarded users {missing[:3]} are not among the explained users.")

    def fingerprint(self) -> str:
        return stable_hash(
            {"template": TEMPLATE_VERSION, "messages": self.messages, "available_from": self.available_from}
        )


def explainer_inputs(
    interactions: pd.DataFrame,
    catalog: ItemCatalog,
    domain: str,
    settings: RLSettings,
    *,
    with_description: bool = True,
    first: Sequence[str] = (),
) -> ExplainerInputs:
    """Per user: the prompt over the last ``explain_history`` interactions before the user's
    reward targets, i.e. before the last ``reward_targets`` training targets. Users with too few
    interactions are left out. The rewarded users (``settings.n_users`` of them, 0: all) take the
    users in ``first`` (the evaluated ones) before a seeded sample of the rest; every eligible user
    of ``first`` is explained (``explained``) whether rewarded or not, so that the reward-tuned
    variant is scored on explanations rather than on its no-text fallback."""
    seqs = user_sequences(interactions)
    cut = training_cutoffs(seqs)
    k = int(settings.reward_targets)
    eligible = sorted(u for u, c in cut.items() if c - k >= 1)
    if not eligible:
        raise DataError(
            f"no user has an interaction before their last {k} training targets; lower "
            f"RECPIE_REWARD_TARGETS or use users with more interactions."
        )
    evaluated = sorted(set(map(str, first)) & set(eligible))
    if settings.n_users and len(eligible) > settings.n_users:
        rng = np.random.default_rng(settings.seed)
        wanted = set(map(str, first))
        head = [u for u in eligible if u in wanted]
        rest = [u for u in eligible if u not in wanted]
        if len(head) >= settings.n_users:
            chosen = [head[i] for i in rng.choice(len(head), settings.n_users, replace=False)]
        else:
            chosen = head + [rest[i] for i in rng.choice(len(rest), settings.n_users - len(head), replace=False)]
        eligible = sorted(chosen)
    explained = sorted(set(eligible) | set(evaluated))
    messages, available = {}, {}
    for u in explained:
        end = cut[u] - k
        seq = seqs[u].iloc[max(0, end - settings.explain_history) : end]
        history = list(zip(seq["item_id"].astype(str), seq["liked"].astype(bool)))
        messages[u] = explainer_messages(history, catalog, domain, settings.words, with_description=with_description)
        available[u] = int(end)
    return ExplainerInputs(eligible, messages, available, explained)


def reward_folds(users: Sequence[str], n_folds: int, seed: int) -> dict[str, int]:
    """Each rewarded user's fold (0 .. n_folds - 1): a seeded permutation dealt round-robin, so
    the folds differ in size by at most one."""
    pool = sorted(map(str, users))
    order = np.random.default_rng(seed).permutation(len(pool))
    return {pool[i]: n % int(n_folds) for n, i in enumerate(order)}


def held_out_of(fold: int, folds: Mapping[str, int], available_from: Mapping[str, int]) -> dict[str, int]:
    """The held-out positions of fold ``fold``'s recommender: each of the fold's users from its
    first reward target on (the recommender never learns from them)."""
    return {u: int(available_from[u]) for u, f in folds.items() if f == fold}


# ---------------------------------------------------------------------------------------
# The reward
# ---------------------------------------------------------------------------------------
def completion_text(completion: Any) -> str:
    """The text of a trl completion (conversational: a list of messages; or plain text)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, Mapping))
    raise TypeError(f"unexpected completion type {type(completion).__name__}")


def make_reward(
    fitted: FittedHybrid | Sequence[FittedHybrid],
    available_from: Mapping[str, int],
    encoder,
    measure: str = "log_likelihood",
    folds: Mapping[str, int] | None = None,
) -> Callable[..., list[float]]:
    """A trl reward function: each completion's :func:`explanation_gain` for its prompt's user
    (dataset column ``user_id``) under the recommender of the user's fold (``fitted[folds[user]]``;
    one recommender: every user's). A blank explanation gets 0 (it adds nothing). The gain refuses
    a reward target inside the scoring recommender's training data (out of sample only)."""
    models = [fitted] if isinstance(fitted, FittedHybrid) else list(fitted)
    fold_of = dict(folds or {})

    def recommender_gain(prompts=None, completions=(), user_id=(), **_: Any) -> list[float]:
        texts = [completion_text(c).strip() for c in completions]
        users = [str(u) for u in user_id]
        if len(users) != len(texts):
            raise ValueError(
                f"reward: {len(texts)} completions but {len(users)} user ids (keep the user_id column "
                f"and remove_unused_columns=False)."
            )
        out = np.zeros(len(texts))
        idx = [i for i, t in enumerate(texts) if t]
        if idx:
            vecs = encoder.encode([texts[i] for i in idx], cache=False)
            which = np.array([fold_of.get(users[i], 0) for i in idx])
            for f in np.unique(which):
                part = [j for j, w in enumerate(which) if w == f]
                out[[idx[j] for j in part]] = explanation_gain(
                    models[int(f)], [users[idx[j]] for j in part], vecs[part], available_from, measure=measure
                )
        return out.tolist()

    return recommender_gain


# ---------------------------------------------------------------------------------------
# The explainer
# ---------------------------------------------------------------------------------------
class Explainer(Protocol):
    """What the loop needs from an explainer (:class:`GRPOExplainer`; tests use fakes)."""

    def identity(self) -> dict[str, Any]: ...
    def load(self, adapter: Path | None) -> None: ...
    def generate(self, messages: Mapping[str, list[Message]]) -> dict[str, str]: ...
    def update(
        self, inputs: ExplainerInputs, reward: Callable[..., list[float]], *, round_no: int, work_dir: Path
    ) -> dict[str, Any]: ...
    def save(self, folder: Path) -> None: ...


class GRPOExplainer:
    """STUDENT_MODEL with a LoRA adapter (LORA_*), explanations by greedy decoding, updates by
    trl's GRPOTrainer. ``cfg``: the typed configuration (student section, CACHE_DIR)."""

    def __init__(self, cfg, settings: RLSettings):
        self.cfg, self.settings = cfg, settings
        self.model: Any = None  # loaded lazily (load())
        self.tokenizer: Any = None

    def _threads(self):
        import torch

        return limited_threads(0 if torch.cuda.is_available() else self.settings.cpu_threads)

    def identity(self) -> dict[str, Any]:
        return dict(student_backend(self.cfg).identity)

    def load(self, adapter: Path | None) -> None:
        """A fresh base student with ``adapter`` (trainable), or with a new zero LoRA."""
        from peft import PeftModel, get_peft_model

        self.model = None
        self.tokenizer = None
        with self._threads():
            model, tok = load_student_for_training(self.cfg)
        s = self.settings
        if adapter is not None:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
        else:
            model = get_peft_model(model, lora_config(s))
        self.model, self.tokenizer = model, tok

    def generate(self, messages: Mapping[str, list[Message]]) -> dict[str, str]:
        import torch

        model, tok = self.model, self.tokenizer
        users = list(messages)
        texts = [tok.apply_chat_template(messages[u], tokenize=False, add_generation_prompt=True) for u in users]
        order = sorted(range(len(users)), key=lambda i: -len(texts[i]))
        side, tok.padding_side = tok.padding_side, "left"
        out: dict[str, str] = {}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self._threads():
                for s in range(0, len(order), self.settings.generation_batch):
                    idx = order[s : s + self.settings.generation_batch]
                    enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
                    enc = {k: v.to(next(model.parameters()).device) for k, v in enc.items()}
                    gen = model.generate(
                        **enc,
                        max_new_tokens=self.settings.max_completion_tokens,
                        do_sample=False,
                        pad_token_id=tok.pad_token_id,
                    )
                    for row, i in enumerate(idx):
                        out[users[i]] = tok.decode(
                            gen[row, enc["input_ids"].shape[1] :], skip_special_tokens=True
                        ).strip()
        finally:
            tok.padding_side = side
            model.train(was_training)
        return {u: out[u] for u in users}

    def update(
        self, inputs: ExplainerInputs, reward: Callable[..., list[float]], *, round_no: int, work_dir: Path
    ) -> dict[str, Any]:
        import torch
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        s = self.settings
        data = Dataset.from_list([{"prompt": inputs.messages[u], "user_id": u} for u in inputs.users])
        cuda = torch.cuda.is_available()
        args = GRPOConfig(
            output_dir=str(work_dir / "trainer"),
            max_steps=s.steps,
            learning_rate=s.learning_rate,
            # one generation of prompts_per_step x num_generations completions per optimizer step,
            # scored and backpropagated one completion at a time: the same update, a fraction of
            # the memory (batch 8 in one pass peaked at 16 GiB on CPU)
            per_device_train_batch_size=1,
            gradient_accumulation_steps=s.prompts_per_step * s.num_generations,
            num_generations=s.num_generations,
            max_completion_length=s.max_completion_tokens,
            temperature=s.temperature,
            beta=s.kl_beta,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=s.seed + round_no,
            data_seed=s.seed + round_no,
            remove_unused_columns=False,
            use_cpu=not cuda,
            bf16=False,
            fp16=False,
            dataloader_num_workers=0,
            disable_tqdm=True,
            # a 135M-parameter student fits easily; recomputing activations would only cost time
            gradient_checkpointing=False,
        )
        reward_funcs: list[Any] = [reward]
        trainer = GRPOTrainer(
            model=self.model, reward_funcs=reward_funcs, args=args, train_dataset=data, processing_class=self.tokenizer
        )
        start = time.perf_counter()
        with self._threads():
            trainer.train()
        seconds = time.perf_counter() - start
        self.model = trainer.model
        steps = [h for h in trainer.state.log_history if "reward" in h]
        shutil.rmtree(work_dir / "trainer", ignore_errors=True)

        def mean(key: str) -> float | None:
            vals = [h[key] for h in steps if key in h and h[key] is not None]
            return float(np.mean(vals)) if vals else None

        return {
            "reward_mean": mean("reward"),
            "reward_std": mean("reward_std"),
            "kl": mean("kl"),
            "loss": mean("loss"),
            "completion_length": mean("completions/mean_length"),
            "update_seconds": seconds,
            "step_seconds": seconds / max(len(steps), 1),
            "steps": [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in steps],
        }

    def save(self, folder: Path) -> None:
        # only the trained adapter; trl's frozen "ref" copy is rebuilt from it next round
        self.model.save_pretrained(str(folder), selected_adapters=["default"])


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------
def round_dir(out_dir: Path, r: int) -> Path:
    return Path(out_dir) / f"round_{r:03d}"


def round_finished(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ROUND_FILES)


def _adapter_of(folder: Path) -> Path | None:
    a = folder / "adapter"
    return a if (a / "adapter_config.json").is_file() else None


def _frame_hash(df: pd.DataFrame, cols: Sequence[str]) -> str:
    part = df[list(cols)].astype(str).sort_values(list(cols)).to_csv(index=False)
    return sha256_text(part)


@dataclass
class RLRun:
    """Everything the loop needs; texts and the explainer are explicit so tests can pass fakes."""

    out_dir: Path
    interactions: pd.DataFrame
    examples: pd.DataFrame
    item_texts: Mapping[str, str]
    inputs: ExplainerInputs
    explainer: Explainer
    encoder: Any  # rrlib.llm.encoder.TextEncoder (or a fake with dim/encode/identity)
    settings: RLSettings
    seq_cfg: SeqConfig
    explanations_out: Path | None = None  # where the last round's explanations go (paths.explainer_texts)
    progress: bool = False
    _item_features: TextFeatures | None = field(default=None, repr=False)

    def run_config(self) -> dict[str, Any]:
        enc_id = getattr(self.encoder, "identity", None)
        return {
            "settings": asdict(self.settings),
            "recommender": asdict(self.seq_cfg),
            "inputs": self.inputs.fingerprint(),
            "template_version": TEMPLATE_VERSION,
            "item_texts": stable_hash(sorted(self.item_texts.items())),
            "interactions": _frame_hash(self.interactions, ["user_id", "item_id", "liked", "position"]),
            "valid_examples": _frame_hash(
                self.examples[self.examples["split"] == "valid"], ["example_id", "user_id", "target_item_id"]
            ),
            "explainer": self.explainer.identity(),
            "encoder": enc_id if isinstance(enc_id, dict) else str(enc_id),
        }

    def item_features(self) -> TextFeatures:
        if self._item_features is None:
            self._item_features = TextFeatures.encode({}, self.item_texts, self.encoder)
        return self._item_features

    def features_for(self, explanations: Mapping[str, str]) -> tuple[TextFeatures, list[str], np.ndarray]:
        """The item features with the users' (non-blank) explanations as user texts."""
        users = [u for u in self.inputs.users if explanations.get(u, "").strip()]
        vecs = (
            self.encoder.encode([explanations[u].strip() for u in users])
            if users
            else np.zeros((0, self.item_features().dim), dtype=np.float32)
        )
        feats = self.item_features().with_users(
            dict(zip(users, vecs)), {u: self.inputs.available_from[u] for u in users}
        )
        return feats, users, vecs


def _guard_settings(out_dir: Path, config: dict[str, Any]) -> None:
    path = out_dir / SETTINGS_NAME
    old = read_json_or_none(path)
    if old is not None and old.get("hash") != stable_hash(config):
        differ = sorted(
            k for k in set(old.get("config", {})) | set(config) if old.get("config", {}).get(k) != config.get(k)
        )
        raise TrainingConfigMismatch(
            f"{out_dir} holds RecPIE RL rounds made with other settings or data (differs in: "
            f"{', '.join(differ) or 'unknown'}); use a new RUN_DIR, or delete {out_dir} to "
            f"start over."
        )
    if old is None:
        write_json_atomic(path, {"hash": stable_hash(config), "config": config})


def _load_round(run: RLRun, r: int) -> tuple[list[FittedHybrid], dict[str, int], dict[str, str]]:
    import torch

    folder = round_dir(run.out_dir, r)
    table = pd.read_parquet(folder / "explanations.parquet")
    explanations = dict(zip(table["user_id"].astype(str), table["explanation"].fillna("").astype(str)))
    feats, _, _ = run.features_for(explanations)
    saved = torch.load(folder / "recommenders.pt", weights_only=False)
    models = [restore_hybrid(state, run.interactions, feats) for state in saved["states"]]
    return models, {str(u): int(f) for u, f in saved["folds"].items()}, explanations


def fit_folds(run: RLRun, feats: TextFeatures, folds: Mapping[str, int]) -> list[FittedHybrid]:
    """One recommender per fold, each fitted without its fold's reward targets (cross-fitting)."""
    s = run.settings
    return [
        fit_hybrid(
            s.recommender,
            run.interactions,
            run.examples,
            feats,
            run.seq_cfg,
            held_out=held_out_of(f, folds, run.inputs.available_from),
            progress=run.progress,
        )
        for f in range(s.reward_folds)
    ]


def fold_gains(
    models: Sequence[FittedHybrid],
    folds: Mapping[str, int],
    users: Sequence[str],
    vecs: np.ndarray,
    available_from: Mapping[str, int],
    measure: str = "log_likelihood",
) -> np.ndarray:
    """Each user's explanation gain under its own fold's recommender (out of sample)."""
    out = np.zeros(len(users))
    for f, model in enumerate(models):
        part = [i for i, u in enumerate(users) if folds[u] == f]
        if part:
            out[part] = explanation_gain(model, [users[i] for i in part], vecs[part], available_from, measure=measure)
    return out


def run_explainer_rl(run: RLRun) -> list[dict[str, Any]]:
    """Run (or resume) rounds 0..``settings.rounds``; returns one log record per round."""
    import torch

    out = Path(run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _guard_settings(out, run.run_config())
    jlog = JsonlLog(out / LOG_NAME, required=("round",))
    logged = {int(rec["round"]) for rec in jlog.load().records}
    s = run.settings
    folds = reward_folds(run.inputs.users, s.reward_folds, s.seed)
    prev: tuple[list[FittedHybrid], dict[str, int], dict[str, str]] | None = None
    for r in range(0, s.rounds + 1):
        folder = round_dir(out, r)
        if round_finished(folder):
            if r not in logged:  # killed after the rename, before the log line
                jlog.append([read_json(folder / "summary.json", "RecPIE RL round summary")])
                logged.add(r)
            prev = None  # reload lazily only if a later round needs it
            continue
        if r > 0 and prev is None:
            prev = _load_round(run, r - 1)
        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-", dir=out))
        try:
            run.explainer.load(_adapter_of(round_dir(out, r - 1)) if r > 1 else None)
            metrics: dict[str, Any] = {}
            if r > 0:
                assert prev is not None  # loaded above
                reward = make_reward(prev[0], run.inputs.available_from, run.encoder, s.reward_measure, folds=prev[1])
                metrics = run.explainer.update(run.inputs, reward, round_no=r, work_dir=tmp)
            # round 0 and the last round also explain the evaluated users (07 scores recpie_rl on them)
            who = run.inputs.explained if r in (0, s.rounds) else run.inputs.users
            explanations = run.explainer.generate({u: run.inputs.messages[u] for u in who})
            feats, users, vecs = run.features_for(explanations)
            models = fit_folds(run, feats, folds)
            gain = fold_gains(models, folds, users, vecs, run.inputs.available_from, s.reward_measure)
            if r > 0:
                run.explainer.save(tmp / "adapter")
            write_parquet_atomic(
                pd.DataFrame(
                    {
                        "user_id": list(who),
                        "explanation": [explanations.get(u, "") for u in who],
                        "available_from": [run.inputs.available_from[u] for u in who],
                        "round": r,
                        "rewarded": [u in folds for u in who],
                    }
                ),
                tmp / "explanations.parquet",
            )
            torch.save({"folds": folds, "states": [m.state() for m in models]}, tmp / "recommenders.pt")
            words = [len(explanations.get(u, "").split()) for u in run.inputs.users]
            valid = [float(m.best_valid) for m in models]
            evaluated = [u for u in who if u not in folds]
            record = {
                "round": r,
                "reward_mean": metrics.get("reward_mean"),
                "reward_std": metrics.get("reward_std"),
                "kl": metrics.get("kl"),
                "loss": metrics.get("loss"),
                f"valid_{models[0].metric}": float(np.mean(valid)),
                f"valid_{models[0].metric}_folds": valid,
                "heldout_gain_mean": float(gain.mean()) if len(gain) else None,
                "n_users": len(run.inputs.users),
                "n_explained": len(users),
                "n_evaluated_only": len(evaluated),
                "n_evaluated_explained": sum(bool(explanations.get(u, "").strip()) for u in evaluated),
                "reward_folds": s.reward_folds,
                "mean_words": float(np.mean(words)),
                "recommender_epochs": float(np.mean([len(m.curve) for m in models])),
                "update_seconds": metrics.get("update_seconds"),
                "step_seconds": metrics.get("step_seconds"),
                "seconds": time.perf_counter() - t0,
                "steps": metrics.get("steps", []),
            }
            write_json_atomic(tmp / "summary.json", record)
            os.rename(tmp, folder)  # the round exists complete, or not at all
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        jlog.append([record])
        logged.add(r)
        prev = (models, folds, explanations)
        log.info(
            "RecPIE RL round %d: reward %s, KL %s, valid %s %.4f (mean of %d folds)",
            r,
            record["reward_mean"],
            record["kl"],
            models[0].metric,
            float(np.mean(valid)),
            len(models),
        )
    if run.explanations_out is not None:
        last = round_dir(out, s.rounds) / "explanations.parquet"
        write_parquet_atomic(pd.read_parquet(last), run.explanations_out)
    return rounds_log(out)


# ---------------------------------------------------------------------------------------
# From the run folder (notebook 06)
# ---------------------------------------------------------------------------------------
def needs_rl(cfg) -> bool:
    """Whether the run asks for the explainer loop: ``recpie_rl`` is in EVAL_METHODS, or a
    user-text RecPIE variant is and RECPIE_USER_TEXT is 'explanations'."""
    methods = list(cfg.evaluate.eval_methods)
    if any(m in EXPLAINED for m in methods):
        return True
    return cfg.recpie.recpie_user_text == "explanations" and any(m in VARIANTS and variant(m)[0] for m in methods)


def rl_run_for(
    cfg, paths, tables, domain: str, *, explainer: Explainer | None = None, encoder: Any = None, progress: bool = False
) -> RLRun:
    """The loop of this run: the explainer sees RUN_DIR's tables (descriptions when
    RECPIE_ITEM_TEXT is 'description'), rounds go to ``paths.explainer_rl`` and the last round's
    explanations to ``paths.explainer_texts`` (which ``recpie_rl`` reads in notebook 07).
    ``explainer`` / ``encoder`` default to :class:`GRPOExplainer` and the shipped encoder."""
    rc = cfg.recpie
    settings = RLSettings.from_config(cfg)
    desc = None
    if rc.recpie_item_text == "description":
        desc = pd.read_parquet(paths.require(paths.item_descriptions, "02_item_descriptions"))
    catalog = ItemCatalog.from_tables(tables.items, desc)
    test = eval_subset(tables.examples, "test", cfg.data.n_test)
    inputs = explainer_inputs(
        tables.interactions,
        catalog,
        domain,
        settings,
        with_description=desc is not None,
        first=test["user_id"].astype(str).tolist(),
    )
    items = run_texts(paths, tables, "none", rc.recpie_item_text)[1] if rc.recpie_item_text != "none" else {}
    if encoder is None:
        encoder = default_encoder(resolve_path(cfg.common.cache_dir))
    return RLRun(
        paths.explainer_rl,
        tables.interactions,
        tables.examples,
        items,
        inputs,
        explainer if explainer is not None else GRPOExplainer(cfg, settings),
        encoder,
        settings,
        hybrid_config(cfg),
        explanations_out=paths.explainer_texts,
        progress=progress,
    )


ROUND_COLUMNS = (
    "round",
    "reward_mean",
    "reward_std",
    "kl",
    "loss",
    "valid_auc",
    "heldout_gain_mean",
    "n_explained",
    "n_evaluated_explained",
    "mean_words",
    "recommender_epochs",
    "update_seconds",
    "seconds",
)


def rounds_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per round: reward (mean and sd over the round's GRPO steps), KL, loss, the
    refitted recommenders' validation AUC (mean over the folds), the gain of the greedy
    explanations on their held-out reward targets (each under its fold's recommender), coverage
    and times. Round 0 (the base explainer) has no reward or KL."""
    rows = [{c: r.get(c) for c in ROUND_COLUMNS} for r in records]
    return pd.DataFrame(rows, columns=list(ROUND_COLUMNS))


def plot_rounds(records: Sequence[Mapping[str, Any]], path=None, title: str = "RecPIE explainer rounds"):
    """Reward, KL and validation AUC against the round (three panels); saved to ``path`` when
    given. Returns a plain matplotlib Figure."""
    from matplotlib.figure import Figure

    table = rounds_table(records)
    if table.empty:
        raise DataError("plot_rounds: no finished round to plot (run rrlib.finetune.rl.run_explainer_rl first).")
    fig = Figure(figsize=(9.6, 3.2))
    axes = fig.subplots(1, 3)
    for ax, col, name in zip(
        axes, ("reward_mean", "kl", "valid_auc"), ("reward (log-lik. gain)", "KL to round start", "validation AUC")
    ):
        t = table[["round", col]].dropna()
        ax.plot(t["round"], t[col].astype(float), marker="o")
        if col == "reward_mean" and table["reward_std"].notna().any():
            s = table[["round", "reward_mean", "reward_std"]].dropna()
            ax.fill_between(
                s["round"], s["reward_mean"] - s["reward_std"], s["reward_mean"] + s["reward_std"], alpha=0.15
            )
        ax.set(xlabel="round", title=name)
        ax.set_xticks(table["round"].tolist())
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def write_prompts(run: RLRun, path: Path) -> Path:
    """What the explainer was shown, per user (user_id, prompt, available_from): the input that
    notebook 07's faithfulness checks hold each explanation to."""
    users = run.inputs.explained
    write_parquet_atomic(
        pd.DataFrame(
            {
                "user_id": users,
                "prompt": ["\n".join(str(m["content"]) for m in run.inputs.messages[u]) for u in users],
                "available_from": [run.inputs.available_from[u] for u in users],
            }
        ),
        path,
    )
    return Path(path)


def explainer_known_texts(prompts: pd.DataFrame, examples: pd.DataFrame) -> dict[str, str]:
    """example_id -> the explainer prompt of the example's user ('' for users never explained)."""
    missing = [c for c in ("user_id", "prompt") if c not in prompts.columns]
    if missing:
        raise DataError(f"explainer prompts table lacks {missing}; it is written by rrlib.finetune.rl.write_prompts.")
    texts = dict(zip(prompts["user_id"].astype(str), prompts["prompt"].astype(str)))
    return {str(e): texts.get(str(u), "") for e, u in zip(examples["example_id"], examples["user_id"])}


def round_explanations(out_dir: Path, r: int) -> pd.DataFrame:
    """The explanations table of finished round ``r`` (user_id, explanation, available_from, round)."""
    path = round_dir(out_dir, r) / "explanations.parquet"
    if not round_finished(round_dir(out_dir, r)):
        raise DataError(f"RecPIE RL round {r} is not finished in {out_dir}; rerun 06_finetune.")
    return pd.read_parquet(path)


def rounds_log(out_dir: Path) -> list[dict[str, Any]]:
    """The log records, one per finished round (the last record of a round wins), by round."""
    recs = {int(r["round"]): r for r in JsonlLog(Path(out_dir) / LOG_NAME, required=("round",)).load().records}
    return [recs[k] for k in sorted(recs)]


__all__ = [
    "ExplainerInputs",
    "Explainer",
    "GRPOExplainer",
    "ROUND_COLUMNS",
    "RLRun",
    "RLSettings",
    "completion_text",
    "explainer_inputs",
    "explainer_known_texts",
    "fit_folds",
    "fold_gains",
    "held_out_of",
    "make_reward",
    "needs_rl",
    "reward_folds",
    "plot_rounds",
    "rl_run_for",
    "round_dir",
    "round_explanations",
    "round_finished",
    "rounds_log",
    "rounds_table",
    "run_explainer_rl",
    "write_prompts",
]
