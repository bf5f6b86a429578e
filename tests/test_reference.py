"""The reference baseline of every paired Δ is the one chosen on validation, not the strongest on
the test examples: a weaker-on-test reference stays the reference, and the stronger baseline then
shows a positive Δ instead of being the yardstick."""

import numpy as np
import pandas as pd

from rrlib import predictions as pr
from rrlib.evaluate import results as rs


def _examples(n: int, split: str) -> pd.DataFrame:
    y = np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)]
    return pd.DataFrame(
        {
            "example_id": [f"{split}:{i}" for i in range(n)],
            "user_id": [str(i) for i in range(n)],
            "target_item_id": ["1"] * n,
            "label": y,
            "target_rating": np.where(y == 1, 5.0, 1.0),
            "split": split,
        }
    )


def test_paired_difference_is_against_the_given_reference():
    rng = np.random.default_rng(0)
    ex = _examples(300, "test")
    y = ex["label"].to_numpy()
    strong = 1 / (1 + np.exp(-(y * 2.0 + rng.normal(size=len(y)))))
    weak = 1 / (1 + np.exp(-(y * 0.5 + rng.normal(size=len(y)))))
    preds = pd.concat(
        [pr.like_rows("user_like_rate", 0, ex, strong), pr.like_rows("item_like_rate", 0, ex, weak)], ignore_index=True
    )
    kwargs = dict(dataset="toy", n_boot=300, seed=0, bertscore_model="embedded", bertscore_layers=6, progress=False)
    chosen, _ = rs.score_predictions(preds, {}, reference="item_like_rate", **kwargs)
    by = {r.method: r for r in chosen.itertuples()}
    assert set(chosen["reference"]) == {"item_like_rate"}
    assert np.isnan(by["item_like_rate"].delta_auc) and by["user_like_rate"].delta_ci_low > 0
    on_test, _ = rs.score_predictions(preds, {}, **kwargs)  # no choice given: the strongest here
    assert set(on_test["reference"]) == {"user_like_rate"}
