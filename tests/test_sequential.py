"""SASRec and Caser: learn a synthetic like/dislike rule whose answer is known, are
reproducible with a seed, never see valid/test targets in training, and run on the embedded
dataset prepared by notebook 01's code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from rrlib.methods.sequential import SeqConfig, SequenceData, train_sequential


def group_task(n_users: int = 200, n_items: int = 40, seed: int = 0, noise: float = 0.05):
    """Items fall in two groups (even / odd id); each user likes the items of one group and
    dislikes the others (5% label noise). The user's liked history reveals the group, so the
    answer is known; item and user like-rates alone carry no signal (both about 0.5)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        pref = int(rng.integers(2))
        for p in range(int(rng.integers(8, 16))):
            item = int(rng.integers(n_items))
            liked = bool((item % 2 == pref) ^ (rng.random() < noise))
            rows.append(
                dict(
                    user_id=f"u{u}",
                    item_id=f"i{item}",
                    rating=5.0 if liked else 1.0,
                    timestamp=1000 + p,
                    liked=liked,
                    position=p,
                    review_text="",
                    summary="",
                )
            )
    inter = pd.DataFrame(rows)
    ex = []
    for u, g in inter.groupby("user_id", sort=False):
        items, liked = g["item_id"].tolist(), g["liked"].tolist()
        for split, off in (("train", 3), ("valid", 2), ("test", 1)):
            p = len(items) - off
            ex.append(
                dict(
                    example_id=f"{split}:{u}",
                    split=split,
                    user_id=u,
                    target_item_id=items[p],
                    label=int(liked[p]),
                    history_item_ids=items[max(0, p - 10) : p],
                    history_liked=liked[max(0, p - 10) : p],
                    sample_rank=0,
                )
            )
    return inter, pd.DataFrame(ex)


SYNTH_CFG = SeqConfig(epochs=30, patience=8, lr=3e-3, hidden=32, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sasrec", "caser"])
def test_learns_the_known_rule_above_chance(model):
    inter, ex = group_task()
    test = ex[ex["split"] == "test"]
    rows, info = train_sequential(model, inter, ex, test, SYNTH_CFG, progress=False)
    auc = roc_auc_score(rows["label"], rows["p_yes"])
    assert auc > 0.8, f"{model} test AUC {auc:.3f} on a rule it should learn (curve {info['curve']})"
    assert set(rows["method"]) == {model} and (rows["k"] == 0).all()
    assert rows["example_id"].tolist() == test["example_id"].tolist()
    assert info["best_valid_auc"] > 0.8 and 1 <= info["best_epoch"] <= info["epochs_run"]


def test_training_targets_stop_before_the_valid_target():
    inter, ex = group_task(n_users=20)
    data = SequenceData(inter, max_len=50)
    n_train = sum(max(len(s) - 2, 0) - 1 for s in data.sequences.values())
    assert len(data.training_targets()) == n_train
    # items that occur only as valid/test targets get the "unseen" index, not an embedding
    train_items = {i for u, s in data.sequences.items() for i in s["item_id"].iloc[: data.cutoffs[u]]}
    assert set(data.item_index) == train_items
    test = ex[ex["split"] == "test"]
    batch = data.example_targets(test)
    # a test target's history ends right before it: its last step is the valid target
    for r, u in enumerate(test["user_id"]):
        seq = data.sequences[u]
        assert batch.label[r].item() == float(seq["liked"].iat[-1])
        assert batch.items[r, -1].item() == data.item_index.get(seq["item_id"].iat[-2], 1)


def test_reproducible_with_a_seed():
    inter, ex = group_task(n_users=40)
    test = ex[ex["split"] == "test"]
    cfg = SeqConfig(epochs=2, hidden=16, seed=3)
    a, _ = train_sequential("caser", inter, ex, test, cfg, progress=False)
    b, _ = train_sequential("caser", inter, ex, test, cfg, progress=False)
    np.testing.assert_array_equal(a["p_yes"].to_numpy(), b["p_yes"].to_numpy())
    with pytest.raises(ValueError, match="unknown sequential baseline 'gru4rec'"):
        train_sequential("gru4rec", inter, ex, test, cfg, progress=False)


@pytest.mark.slow
def test_runs_on_the_embedded_dataset(tmp_path):
    from rrlib.config.params import Config, load_params
    from rrlib.config.paths import RunPaths
    from rrlib.data import eval_subset, load_tables, prepare

    # the shipped default dataset (ml-latest-small), on a user slice so SASRec trains in seconds
    params = load_params([], {"DATASET": "ml_latest_small", "MAX_USERS": 25, "N_TEST": 25})
    paths = RunPaths.of(tmp_path / "run")
    prepare(params, paths)
    tables = load_tables(paths)
    test = eval_subset(tables.examples, "test", params["N_TEST"])
    for model in ("sasrec", "caser"):
        rows, info = train_sequential(
            model,
            tables.interactions,
            tables.examples,
            test,
            SeqConfig.from_config(Config.full(params), epochs=5),
            progress=False,
        )
        assert len(rows) == len(test) and rows["p_yes"].between(0, 1).all()
        assert rows["p_yes"].nunique() > 1
        assert info["n_train_targets"] > 100 and info["epochs_run"] <= 5
        assert 0 <= roc_auc_score(rows["label"], rows["p_yes"]) <= 1


def test_a_second_identical_fit_is_read_from_the_cache_and_a_change_refits(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import rrlib.methods.sequential as seq
    from rrlib.config.params import Config

    inter, ex = group_task(n_users=40, n_items=12)
    tables = SimpleNamespace(interactions=inter, examples=ex)
    test = ex[ex["split"] == "test"]
    cfg = Config.full({"CACHE_DIR": str(tmp_path / "cache"), "SEQ_EPOCHS": 2, "SEQ_HIDDEN": 8, "SEQ_MAX_LEN": 8})
    calls = []
    real = seq.train_sequential
    monkeypatch.setattr(seq, "train_sequential", lambda *a, **k: calls.append(a[0]) or real(*a, **k, progress=False))
    first, info = seq.predict(["sasrec"], tables, test, cfg)
    again, info2 = seq.predict(["sasrec"], tables, test, cfg)
    assert calls == ["sasrec"] and info["sasrec"]["fit_cache"] == "fitted" and info2["sasrec"]["fit_cache"] == "reused"
    pd.testing.assert_frame_equal(first, again)
    assert info2["sasrec"]["curve"] == info["sasrec"]["curve"]
    # another seed, another label or another setting is another fit
    flipped = ex.copy()
    flipped.loc[flipped.index[0], "label"] = 1 - flipped.loc[flipped.index[0], "label"]
    seq.predict(["sasrec"], SimpleNamespace(interactions=inter, examples=flipped), test, cfg)
    seq.predict(["sasrec"], tables, test, Config.full({**cfg.params, "SEQ_HIDDEN": 12}))
    assert calls == ["sasrec"] * 3
    # another torch thread count reduces in another order: another fit
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        seq.predict(["sasrec"], tables, test, cfg)
    finally:
        torch.set_num_threads(threads)
    assert calls == ["sasrec"] * 4
    calls.pop()
    # a fit killed before its rows were written leaves nothing to reuse
    for rows in (tmp_path / "cache" / "fitted").glob("*/rows.parquet"):
        rows.unlink()
    seq.predict(["sasrec"], tables, test, cfg)
    assert calls == ["sasrec"] * 4
