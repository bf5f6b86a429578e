"""The fitted methods on any examples, the reference baselines chosen on validation, and the table
of every test user.

* :func:`predict_fitted`: every non-LLM method of the plan (bias, sequential, rating baselines,
  RecPIE's recommenders) on given examples, one call per family module.
* :func:`choose_references`: the strongest bias baseline (highest AUC) and the strongest rating
  baseline (lowest RMSE) on the **validation** split. Every paired Δ of notebook 07 is against
  these, so no test figure chooses the baseline a method is compared with.
* :func:`score_all_test_users`: the fitted methods on every test user (they are cheap), with
  their paired Δ to the same reference; the LLM rows keep their ``N_TEST`` subsample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib import predictions as pr
from rrlib.data.schema import eval_subset
from rrlib.evaluate.plan import EvaluationPlan
from rrlib.evaluate.rating import strongest_rating_baseline
from rrlib.evaluate.results import RESULT_COLUMNS, score_predictions, strongest_bias_baseline
from rrlib.evaluate.tables import markdown_table, results_view
from rrlib.methods import registry

#: the kinds a reference is chosen among
REFERENCE_KINDS = ("bias", "rating_baseline")
#: the columns of the all-test-users table: the results' figures, without text scores and notes
ALL_USERS_COLUMNS = [
    c
    for c in RESULT_COLUMNS
    if not c.startswith("bertscore") and c not in ("dataset", "format_errors", "training", "note")
]


def predict_fitted(
    plan: EvaluationPlan, data, examples: pd.DataFrame, cfg, kinds: tuple[str, ...] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predictions of the plan's fitted methods (of ``kinds``, default all) on ``examples`` and
    each family's fit information (training curves, chosen epochs)."""
    frames: list[pd.DataFrame] = []
    info: dict[str, Any] = {}
    for entry, names in plan.fitted.items():
        names = [n for n in names if kinds is None or registry.get(n).kind in kinds]
        if not names:
            continue
        rows, family_info = registry.implementation(names[0])(names, data, examples, cfg)
        info.update(family_info if any(n in family_info for n in names) else {entry: family_info})
        frames.append(rows)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=pr.BLOCK + ["example_id"])
    return rows, info


@dataclass(frozen=True)
class References:
    """The baselines every paired Δ is against, as chosen on the validation split."""

    bias: str | None
    bias_valid_auc: float | None
    rating: str | None
    rating_valid_rmse: float | None
    n_valid: int
    n_valid_dislikes: int

    def describe(self) -> str:
        parts = []
        if self.bias:
            parts.append(f"bias reference {self.bias} (validation AUC {self.bias_valid_auc:.3f})")
        if self.rating:
            parts.append(f"rating reference {self.rating} (validation RMSE {self.rating_valid_rmse:.3f})")
        where = f"chosen on {self.n_valid} validation examples ({self.n_valid_dislikes} dislikes)"
        return f"{'; '.join(parts) or 'no reference baseline in EVAL_METHODS'}, {where}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_references(plan: EvaluationPlan, data, cfg) -> References:
    """The strongest bias and rating baselines of the plan on every validation example."""
    valid = eval_subset(data.examples, "valid", 0)
    rows, _ = predict_fitted(plan, data, valid, cfg, kinds=REFERENCE_KINDS)
    bias, bias_auc = strongest_bias_baseline(rows) if len(rows) else (None, float("nan"))
    rating, rating_rmse = strongest_rating_baseline(rows) if len(rows) else (None, float("nan"))
    return References(
        bias=bias,
        bias_valid_auc=float(bias_auc) if bias else None,
        rating=rating,
        rating_valid_rmse=float(rating_rmse) if rating else None,
        n_valid=len(valid),
        n_valid_dislikes=int((valid["label"] == 0).sum()),
    )


def score_all_test_users(plan: EvaluationPlan, data, cfg, refs: References, out_dir: Path) -> pd.DataFrame:
    """The fitted methods on every test user with bootstrap intervals and the paired Δ to the
    validation-chosen references; written to ``all_test_users.csv`` and ``.md`` in ``out_dir``."""
    test = eval_subset(data.examples, "test", 0)
    rows, _ = predict_fitted(plan, data, test, cfg)
    if rows.empty:
        return pd.DataFrame(columns=ALL_USERS_COLUMNS)
    results, _ = score_predictions(
        rows,
        {},
        dataset=cfg.common.dataset,
        n_boot=cfg.evaluate.bootstrap_samples,
        seed=cfg.common.seed,
        bertscore_model=cfg.evaluate.bertscore_model,
        bertscore_layers=cfg.evaluate.bertscore_num_layers,
        progress=False,
        reference=refs.bias,
        rating_reference=refs.rating,
    )
    table = results.reindex(columns=ALL_USERS_COLUMNS)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "all_test_users.csv", index=False)
    header = (
        f"All {len(test)} test users ({int((test['label'] == 0).sum())} dislikes), fitted methods only; "
        f"{refs.describe()}. Δ: paired bootstrap difference to that reference on the same users.\n\n"
    )
    (out_dir / "all_test_users.md").write_text(
        header + markdown_table(results_view(results).drop(columns=["BERTScore F1", "format errors"])) + "\n"
    )
    return table


__all__ = ["References", "choose_references", "predict_fitted", "score_all_test_users", "REFERENCE_KINDS"]
