"""Where every artifact of a run lives. Notebooks and modules ask here instead of building paths
themselves, so that data flows one way through one layout:

    RUN_DIR/
      data/        01: interactions, items (with sampled reviews), users, examples, data card, plots
      enrich/      02-04: item_descriptions, user_profiles (ReasoningRec); preferences, exp3rt_user_profiles,
                   exp3rt_item_profiles, candidates (EXP3RT)
      reasoning/   05: reasoning.parquet and rating_reasoning.parquet (ground truth for training examples),
                   test_references.parquet and rating_test_references.parquet (BERTScore references only)
      finetune/    06: <method>_K<k>/ adapters, trainer state, curves; recpie/ (the reward loop)
      evaluate/    07: predictions.parquet, rankings.parquet, results tables, plots
      inspect/     08: report.html, human-evaluation sheets
      recpie/      RecPIE: explanations.parquet (the explainer's user texts), rl/ (its RL rounds)
      notebooks/   executed notebooks
      results/     one JSON per notebook execution (never overwritten)
      manifest.json, metrics.json

Relative paths in parameters are relative to the project root (where pyproject.toml is), so a
notebook opened from ``notebooks/`` under JupyterLab and a papermill run agree on RUN_DIR. The
environment variable ``RRLIB_OUTPUTS`` moves the ``outputs/`` folder elsewhere (a read-only
checkout, or a test that runs the notebooks exactly as committed): relative paths that start
with ``outputs/``, such as the default RUN_DIR and CACHE_DIR, then resolve under it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rrlib.errors import MissingArtifactError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STEPS = (
    "01_data_prep",
    "02_item_descriptions",
    "03_user_profiles",
    "04_review_preferences",
    "05_reasoning_generation",
    "06_finetune",
    "07_evaluate",
    "08_inspect_outputs",
)
_SUBFOLDERS = ("data", "enrich", "reasoning", "finetune", "evaluate", "inspect", "notebooks", "results")


def resolve_path(path: str | Path) -> Path:
    """An absolute path: relative ones are taken from the project root (else the working folder
    when the package is installed without its project)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    moved = os.environ.get("RRLIB_OUTPUTS", "").strip()
    if moved and p.parts and p.parts[0] == "outputs":
        return Path(moved).expanduser().resolve().joinpath(*p.parts[1:])
    root = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").exists() else Path.cwd()
    return root / p


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @classmethod
    def of(cls, run_dir: str | Path, create: bool = True) -> "RunPaths":
        """The layout of ``run_dir`` (resolved against the project root when relative)."""
        paths = cls(resolve_path(run_dir))
        if create:
            for sub in _SUBFOLDERS:
                (paths.root / sub).mkdir(parents=True, exist_ok=True)
        return paths

    # 01 data
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def interactions(self) -> Path:
        return self.data / "interactions.parquet"

    @property
    def items(self) -> Path:
        return self.data / "items.parquet"

    @property
    def users(self) -> Path:
        return self.data / "users.parquet"

    @property
    def examples(self) -> Path:
        return self.data / "examples.parquet"

    @property
    def data_card_json(self) -> Path:
        return self.data / "data_card.json"

    @property
    def data_card_md(self) -> Path:
        return self.data / "data_card.md"

    # 02-05 enrichment and reasoning
    @property
    def enrich(self) -> Path:
        return self.root / "enrich"

    @property
    def item_descriptions(self) -> Path:
        return self.enrich / "item_descriptions.parquet"

    @property
    def user_profiles(self) -> Path:
        return self.enrich / "user_profiles.parquet"

    @property
    def preferences(self) -> Path:
        """EXP3RT step 1: the preferences extracted from every allowed review."""
        return self.enrich / "preferences.parquet"

    # the files keep their first names, so runs written before the rename still resume
    @property
    def review_user_profiles(self) -> Path:
        """EXP3RT step 2: each user's profile aggregated from their extracted preferences."""
        return self.enrich / "exp3rt_user_profiles.parquet"

    @property
    def review_item_profiles(self) -> Path:
        """EXP3RT step 2: each item's profile aggregated from its reviewers' preferences."""
        return self.enrich / "exp3rt_item_profiles.parquet"

    @property
    def candidates(self) -> Path:
        """The retriever's candidate lists of the reranking users (EXP3RT step 3, top-k)."""
        return self.enrich / "candidates.parquet"

    @property
    def reasoning_dir(self) -> Path:
        return self.root / "reasoning"

    @property
    def rating_reasoning(self) -> Path:
        """EXP3RT: rating reasoning for training examples (finetuning targets)."""
        return self.reasoning_dir / "rating_reasoning.parquet"

    @property
    def rating_reference_reasoning(self) -> Path:
        """EXP3RT: rating reasoning for the reasoning-test subsample (BERTScore references only)."""
        return self.reasoning_dir / "rating_test_references.parquet"

    @property
    def reasoning(self) -> Path:
        return self.reasoning_dir / "reasoning.parquet"

    @property
    def reference_reasoning(self) -> Path:
        """Label-conditioned reasoning for the TEST subsample: BERTScore references only, never
        shown to the student (kept in its own file so training cannot read it by accident)."""
        return self.reasoning_dir / "test_references.parquet"

    # RecPIE (issue 13): explanations written by the reward-tuned explainer, its RL rounds, and
    # the evaluation of the recommenders that read them; attribute names say what, not whose
    @property
    def explainer(self) -> Path:
        return self.root / "recpie"

    @property
    def explainer_texts(self) -> Path:
        return self.explainer / "explanations.parquet"

    @property
    def explainer_rl(self) -> Path:
        return self.explainer / "rl"

    @property
    def explainer_score_shift(self) -> Path:
        return self.explainer / "score_shift.parquet"

    @property
    def explainer_prompts(self) -> Path:
        return self.explainer / "explainer_prompts.parquet"

    @property
    def explainer_efficiency(self) -> Path:
        return self.explainer / "data_efficiency.csv"

    # 06-08
    @property
    def finetune(self) -> Path:
        return self.root / "finetune"

    def adapter_dir(self, method: str, k: int, seed: int | None = None, default_seed: int | None = None) -> Path:
        """Where the adapter of (method, K, seed) lives: ``<method>_K<k>`` for the run's SEED
        (``default_seed``, or no seed given), ``<method>_K<k>_seed<s>`` for the other seeds of SEEDS."""
        plain = seed is None or seed == default_seed
        return self.finetune / (f"{method}_K{k}" if plain else f"{method}_K{k}_seed{seed}")

    @property
    def evaluate(self) -> Path:
        return self.root / "evaluate"

    @property
    def predictions(self) -> Path:
        return self.evaluate / "predictions.parquet"

    @property
    def rankings(self) -> Path:
        return self.evaluate / "rankings.parquet"

    @property
    def evaluate_plots(self) -> Path:
        return self.evaluate / "plots"

    @property
    def inspect(self) -> Path:
        return self.root / "inspect"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def require(self, path: Path, made_by: str) -> Path:
        """Fail clearly when an upstream artifact is missing."""
        if not Path(path).exists():
            raise MissingArtifactError(
                f"{path} is missing: run notebook {made_by} for this run folder ({self.root}) first."
            )
        return Path(path)


__all__ = ["PROJECT_ROOT", "STEPS", "RunPaths", "resolve_path"]
