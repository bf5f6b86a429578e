"""Half-star ratings (MovieLens): the rating students learn EXP3RT's 1-5 integer labels (rounded half
up), so the rating rows report RMSE against the raw rating and, where targets hold half stars,
against the rounded label too; the EXP3RT rating table names the rounding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rrlib import predictions as pr
from rrlib.evaluate import rating as ra
from rrlib.evaluate.exp3rt import rating_view
from rrlib.prompts.exp3rt import integer_rating


def _examples(ratings) -> pd.DataFrame:
    n = len(ratings)
    return pd.DataFrame(
        {
            "example_id": [f"test:u{i}" for i in range(n)],
            "user_id": [f"u{i}" for i in range(n)],
            "target_item_id": [f"i{i}" for i in range(n)],
            "label": [int(r > 3.5) for r in ratings],
            "target_rating": [float(r) for r in ratings],
            "split": "test",
        }
    )


def test_half_stars_are_rounded_half_up_for_the_students():
    assert [integer_rating(r) for r in (0.5, 1.0, 2.5, 3.5, 4.5, 5.0)] == [1, 1, 3, 4, 5, 5]


def test_rating_rows_report_rmse_against_the_rounded_label_on_half_star_data():
    t = [0.5, 3.5, 4.0, 4.5, 2.0, 3.0]
    ex = _examples(t)
    predicted = [1.0, 4.0, 4.0, 5.0, 2.0, 3.0]  # exactly the rounded labels
    rows = pr.rating_rows("exp3rt", 16, ex, predicted, like_threshold=3.5)
    m = ra.rating_metrics(rows, n_boot=200, seed=0)
    assert m["n_half_star"] == 3
    assert m["rmse_rounded"] == pytest.approx(0.0)
    assert m["rmse"] == pytest.approx(np.sqrt(3 * 0.25 / 6))  # the rounding alone: 0.5 on each half star
    assert m["rmse_rounded_ci_low"] <= m["rmse_rounded"] <= m["rmse_rounded_ci_high"]
    whole = ra.rating_metrics(
        pr.rating_rows("mf", 0, _examples([1, 2, 5]), [1.5, 2, 4], like_threshold=3.5), n_boot=0, seed=0
    )
    assert whole["n_half_star"] == 0 and np.isnan(whole["rmse_rounded"])


def test_the_rating_table_names_the_rounding_only_on_half_star_data():
    def results(ratings, predicted):
        preds = pd.concat(
            [
                pr.rating_rows("global_mean", 0, _examples(ratings), [3.0] * len(ratings), like_threshold=3.5),
                pr.rating_rows("exp3rt", 16, _examples(ratings), predicted, like_threshold=3.5),
            ],
            ignore_index=True,
        )
        out = ra.rating_results(preds, n_boot=50, seed=0)
        return out.assign(task="rating", format_errors=0)

    half = results([0.5, 3.5, 4.0, 4.5], [1.0, 4.0, 4.0, 5.0])
    view = rating_view(half)
    assert "RMSE vs label rounded half up (3.5→4)" in view.columns and view["half-star targets"].tolist() == [3, 3]
    assert "rounded half up" in half["note"].iloc[0]
    whole = rating_view(results([1, 4, 4, 5], [1.0, 4.0, 4.0, 5.0]))
    assert "half-star targets" not in whole.columns
