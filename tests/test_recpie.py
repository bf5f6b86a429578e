"""RecPIE's recommender: text fused into SASRec must win where only the text carries the answer,
the ablations switch the texts off, a user text is shown only after what it was written from,
the reward (gain in log-likelihood with an explanation) has the right sign and size and reads
training labels only, and the registry/run-folder entry point and data-efficiency curve work."""

from __future__ import annotations

import zlib
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from rrlib.errors import DataError, LeakageError, MethodError, MissingArtifactError, ParamError
from rrlib.methods import registry
from rrlib.methods.recpie import (
    NO_TEXT,
    TextFeatures,
    TextSequenceData,
    UserText,
    explanation_gain,
    fit_hybrid,
    log_likelihood,
    profile_texts,
    restore_hybrid,
    reward_positions,
    train_hybrid,
)
from rrlib.methods.sequential import SeqConfig


class FakeEncoder:
    """Deterministic 16-d unit vectors: 'dry' / 'oily' in a text push axis 0 to +1 / -1, the
    rest is per-text noise. Stands in for the sentence encoder (tested in test_text_encoder.py)."""

    dim = 16
    identity = {"model": "fake-encoder", "dim": 16}

    def __init__(self):
        self.calls = 0

    def encode(self, texts, progress=False, cache=True):
        self.calls += 1
        out = []
        for t in texts:
            v = np.random.default_rng(zlib.crc32(t.encode())).normal(0, 0.3, self.dim)
            v[0] += 1.0 if "dry" in t else -1.0 if "oily" in t else 0.0
            out.append(v / np.linalg.norm(v))
        return np.array(out, dtype=np.float32).reshape(len(texts), self.dim)


def text_task(n_users: int = 120, seed: int = 0, noise: float = 0.05, rule: str = "match", text_from: int = 0):
    """Every interaction is with a NEW item (ids never repeat), so ids and like-rates carry no
    signal. Items are for dry or oily skin, said only in their text. rule='match': a user likes
    the items of their own skin type, said only in the user text; rule='item': everyone likes
    dry-skin items. Returns (interactions, examples, user texts, item texts)."""
    rng = np.random.default_rng(seed)
    rows, items, users = [], {}, {}
    for u in range(n_users):
        pref = int(rng.integers(2))
        n = int(rng.integers(8, 13))
        available = text_from if text_from >= 0 else n - 2 + text_from  # negative: before the valid target
        users[f"u{u}"] = UserText(f"wants products for {'dry' if pref else 'oily'} skin", available)
        for p in range(n):
            attr = int(rng.integers(2))
            item = f"i{u}_{p}"
            items[item] = f"cream number {u}-{p} for {'dry' if attr else 'oily'} skin"
            good = attr == pref if rule == "match" else attr == 1
            liked = bool(good ^ (rng.random() < noise))
            rows.append(
                dict(user_id=f"u{u}", item_id=item, rating=5.0 if liked else 1.0, timestamp=p, liked=liked, position=p)
            )
    inter = pd.DataFrame(rows)
    ex = []
    for rank, (u, g) in enumerate(inter.groupby("user_id", sort=False)):
        it, lk = g["item_id"].tolist(), g["liked"].tolist()
        for split, off in (("train", 3), ("valid", 2), ("test", 1)):
            p = len(it) - off
            ex.append(
                dict(
                    example_id=f"{split}:{u}",
                    split=split,
                    user_id=u,
                    target_item_id=it[p],
                    label=int(lk[p]),
                    target_rating=5.0 if lk[p] else 1.0,
                    history_item_ids=it[max(0, p - 5) : p],
                    history_liked=lk[max(0, p - 5) : p],
                    target_position=p,
                    sample_rank=rank,
                )
            )
    return inter, pd.DataFrame(ex), users, items


CFG = SeqConfig(epochs=12, patience=4, hidden=32, seed=0)


def _auc(rows):
    return roc_auc_score(rows["label"], rows["p_yes"])


def test_fused_text_beats_no_text_where_only_text_carries_the_answer():
    inter, ex, users, items = text_task()
    test = ex[ex["split"] == "test"]
    feats = TextFeatures.encode(users, items, FakeEncoder())
    aucs = {
        m: _auc(train_hybrid(m, inter, ex, test, CFG, feats, progress=False)[0])
        for m in ("recpie_no_text", "recpie_hybrid")
    }
    assert aucs["recpie_no_text"] < 0.65, aucs  # nothing to learn from ids and like-rates
    assert aucs["recpie_hybrid"] > aucs["recpie_no_text"] + 0.25, aucs


def test_item_text_reaches_items_never_seen_in_training():
    inter, ex, users, items = text_task(rule="item", seed=1)
    test = ex[ex["split"] == "test"]
    feats = TextFeatures.encode(users, items, FakeEncoder())
    rows, info = train_hybrid("recpie_item_text", inter, ex, test, CFG, feats, progress=False)
    base, _ = train_hybrid("recpie_no_text", inter, ex, test, CFG, feats, progress=False)
    assert _auc(rows) > _auc(base) + 0.3, (_auc(rows), _auc(base))
    assert info["train_text_coverage"] == {"user_text": 0.0, "target_item_text": 1.0}
    assert info["eval_text_coverage"]["target_item_text"] == 1.0


def test_ablations_switch_texts_off_and_runs_are_seeded():
    inter, ex, users, items = text_task(n_users=40)
    test = ex[ex["split"] == "test"]
    cfg = SeqConfig(epochs=2, hidden=16, seed=5)
    feats = TextFeatures.encode(users, items, FakeEncoder())
    a, _ = train_hybrid("recpie_no_text", inter, ex, test, cfg, feats, progress=False)
    b, _ = train_hybrid("recpie_no_text", inter, ex, test, cfg, TextFeatures.empty(16), progress=False)
    np.testing.assert_array_equal(a["p_yes"].to_numpy(), b["p_yes"].to_numpy())  # texts unused, same seed
    c, _ = train_hybrid("recpie_hybrid", inter, ex, test, cfg, feats, progress=False)
    d, _ = train_hybrid("recpie_hybrid", inter, ex, test, cfg, feats, progress=False)
    np.testing.assert_array_equal(c["p_yes"].to_numpy(), d["p_yes"].to_numpy())
    assert set(c["method"]) == {"recpie_hybrid"} and (c["k"] == 0).all()
    with pytest.raises(MethodError, match="unknown RecPIE variant"):
        train_hybrid("recpie_everything", inter, ex, test, cfg, feats, progress=False)


def test_user_text_is_shown_only_from_available_from():
    inter, ex, users, items = text_task(n_users=10, text_from=4)
    feats = TextFeatures.encode(users, items, FakeEncoder())
    data = TextSequenceData(inter, 50, feats, use_user=True, use_item=False)
    u = "u0"
    rows = data.user_rows([u] * 6, [1, 2, 3, 4, 5, 6])
    assert rows.tolist() == [NO_TEXT] * 3 + [feats.user_row[u]] * 3
    off = TextSequenceData(inter, 50, feats, use_user=False, use_item=False).tensors([u], [5])
    assert off.user_text.item() == NO_TEXT and off.target_text.item() == NO_TEXT


def test_profile_texts_become_available_after_their_profile_items():
    profiles = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "profile": ["likes serums", "", "likes soap", "x"],
            "status": ["ok", "empty", "ok", "ok"],
            "source": ["generated", "generated", "no_history", "generated"],
        }
    )
    users = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "profile_positions": [[0, 1, 3], [0], [], []]})
    out = profile_texts(profiles, users)
    assert out == {"a": UserText("likes serums", 4)}  # b empty, c no history, d has no known source window
    with pytest.raises(DataError, match="not in the users table"):
        profile_texts(pd.DataFrame({"user_id": ["zz"], "profile": ["p"]}), users)


# ---------------------------------------------------------------------------------------
# The reward
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted_for_reward():
    """A hybrid whose user text ('wants dry/oily') is shown for the last two training targets
    of each user (as the RL loop does), trained on the match task without the reward targets of
    the first 30 users (held out, as one cross-fitting fold of the RL loop): their rewards are
    out of sample."""
    inter, ex, users, items = text_task(n_users=120, text_from=-2, seed=2)
    enc = FakeEncoder()
    feats = TextFeatures.encode(users, items, enc)
    held = {u: users[u].available_from for u in sorted(users)[:30]}
    fitted = fit_hybrid("recpie_hybrid", inter, ex, feats, CFG, held_out=held, progress=False)
    return fitted, inter, ex, users, items, feats, enc


def test_reward_sign_and_magnitude(fitted_for_reward):
    fitted, inter, ex, users, items, feats, enc = fitted_for_reward
    ids = sorted(users)[:30]
    avail = {u: users[u].available_from for u in ids}
    true = enc.encode([users[u].text for u in ids])
    wrong = enc.encode([users[u].text.replace("dry", "TMP").replace("oily", "dry").replace("TMP", "oily") for u in ids])
    g_true = explanation_gain(fitted, ids, true, avail)
    g_wrong = explanation_gain(fitted, ids, wrong, avail)
    assert np.mean(g_true > 0) > 0.8 and np.mean(g_wrong < 0) > 0.8, (g_true, g_wrong)
    assert g_true.mean() > 0.1 > -0.1 > g_wrong.mean()
    # magnitude: the same gain computed another way, from a model rebuilt with only the text swapped
    u = ids[0]
    pos = reward_positions(fitted.data, u, avail[u])
    assert pos == [avail[u], avail[u] + 1] and pos[-1] < fitted.data.cutoffs[u]
    swapped = restore_hybrid(fitted.state(), inter, feats.with_users({u: wrong[0]}, {u: avail[u]}))
    ll_with = log_likelihood(swapped, [u] * 2, pos, swapped.data.user_rows([u] * 2, pos))
    ll_without = log_likelihood(swapped, [u] * 2, pos, np.zeros(2, dtype=np.int64))
    assert explanation_gain(fitted, [u], wrong[:1], avail)[0] == pytest.approx(np.mean(ll_with - ll_without), abs=1e-6)
    correct = explanation_gain(fitted, ids, true, avail, measure="correct")
    assert correct.mean() > 0 and set(np.round(correct * 2) / 2) <= {-1.0, -0.5, 0.0, 0.5, 1.0}


def test_reward_never_reads_valid_or_test_labels(fitted_for_reward):
    fitted, inter, ex, users, items, feats, enc = fitted_for_reward
    ids = sorted(users)[:20]
    avail = {u: users[u].available_from for u in ids}
    vec = enc.encode([users[u].text for u in ids])
    before = explanation_gain(fitted, ids, vec, avail)
    # flip every valid and test label: the reward must not move
    flipped = inter.copy()
    last_two = flipped.groupby("user_id")["position"].transform("max") - flipped["position"] < 2
    flipped.loc[last_two, "liked"] = ~flipped.loc[last_two, "liked"]
    again = restore_hybrid(fitted.state(), flipped, feats)
    np.testing.assert_allclose(explanation_gain(again, ids, vec, avail), before, atol=1e-7)
    # an explanation that would only be scored on the valid target is refused
    u = ids[0]
    with pytest.raises(DataError, match="no training target after the explanation"):
        explanation_gain(fitted, [u], vec[:1], {u: fitted.data.cutoffs[u]})
    with pytest.raises(MethodError, match="uses no user text"):
        no_user = fit_hybrid("recpie_item_text", inter, ex, feats, SeqConfig(epochs=1, hidden=16), progress=False)
        explanation_gain(no_user, [u], vec[:1], avail)


def test_reward_refuses_targets_the_recommender_trained_on(fitted_for_reward):
    """The out-of-sample guard: a reward target inside the scoring recommender's training data
    fails (issue 20); the held-out users' targets are really absent from what it learned."""
    fitted, inter, ex, users, items, feats, enc = fitted_for_reward
    held = sorted(users)[:30]
    trained = set(zip(*fitted.data.training_positions()))
    for u in held:
        pos = reward_positions(fitted.data, u, users[u].available_from)
        assert pos and not trained & {(u, p) for p in pos}
        assert (u, pos[0] - 1) in trained  # what comes before the reward targets is still learned from
    inside = sorted(users)[40]  # not held out: its reward targets are training targets of this model
    vec = enc.encode([users[inside].text])
    with pytest.raises(LeakageError, match="in the scoring recommender's training data"):
        explanation_gain(fitted, [inside], vec, {inside: users[inside].available_from})
    in_sample = fit_hybrid("recpie_hybrid", inter, ex, feats, SeqConfig(epochs=1, hidden=16), progress=False)
    with pytest.raises(LeakageError, match="held_out="):
        explanation_gain(
            in_sample, [held[0]], enc.encode([users[held[0]].text]), {held[0]: users[held[0]].available_from}
        )


# ---------------------------------------------------------------------------------------
# Registry entry point (texts read from the run folder) and data efficiency
# ---------------------------------------------------------------------------------------
def test_registry_entries_and_run_folder_entry_point(tmp_path, monkeypatch):
    from rrlib.config.params import Config
    from rrlib.config.paths import RunPaths

    assert registry.names(kind="hybrid") == [
        "recpie_no_text",
        "recpie_user_text",
        "recpie_item_text",
        "recpie_hybrid",
        "recpie_rl",
    ]
    for m in registry.names(kind="hybrid"):
        spec = registry.get(m)
        assert spec.task == "like" and registry.implementation(m).__module__ == "rrlib.methods.recpie"
    assert registry.get("recpie_hybrid").shows("explanation")

    inter, ex, users, items = text_task(n_users=40)
    paths = RunPaths.of(tmp_path / "run")
    pd.DataFrame(
        {"user_id": list(users), "profile": [t.text for t in users.values()], "status": "ok", "source": "generated"}
    ).to_parquet(paths.user_profiles)
    pd.DataFrame({"item_id": list(items), "description": list(items.values()), "status": "ok"}).to_parquet(
        paths.item_descriptions
    )
    tables = SimpleNamespace(
        interactions=inter,
        examples=ex,
        users=pd.DataFrame({"user_id": list(users), "profile_positions": [[0]] * len(users)}),
        items=pd.DataFrame({"item_id": list(items), "title": list(items)}),
    )
    monkeypatch.setattr("rrlib.methods.recpie.default_encoder", lambda cache_dir: FakeEncoder())
    cfg = Config.full({"RUN_DIR": str(paths.root), "RECPIE_EPOCHS": 2, "RECPIE_HIDDEN": 16})
    test = ex[ex["split"] == "test"]
    rows, info = registry.implementation("recpie_hybrid")(["recpie_hybrid", "recpie_no_text"], tables, test, cfg)
    assert sorted(set(rows["method"])) == ["recpie_hybrid", "recpie_no_text"] and len(rows) == 2 * len(test)
    assert info["recpie_hybrid"]["text_sources"] == {"user": "profile", "item": "description"}
    assert info["recpie_hybrid"]["eval_text_coverage"] == {"user_text": 1.0, "target_item_text": 1.0}
    with pytest.raises(ParamError, match="RECPIE_USER_TEXT is 'none'"):
        registry.implementation("recpie_hybrid")(
            ["recpie_hybrid"], tables, test, Config.full({"RUN_DIR": str(paths.root), "RECPIE_USER_TEXT": "none"})
        )


def test_data_efficiency_table_and_plot(tmp_path):
    from rrlib.evaluate.efficiency import data_efficiency, nested_user_fractions, plot_data_efficiency

    subsets = nested_user_fractions([f"u{i}" for i in range(50)], [0.12, 0.5, 1.0], seed=3)
    assert [len(v) for v in subsets.values()] == [6, 25, 50]
    assert set(subsets[0.12]) <= set(subsets[0.5]) <= set(subsets[1.0])
    with pytest.raises(ParamError, match=r"\(0, 1\]"):
        nested_user_fractions(["a"], [25], seed=0)

    inter, ex, users, items = text_task(n_users=60)
    test = ex[ex["split"] == "test"]
    feats = TextFeatures.encode(users, items, FakeEncoder())
    table = data_efficiency(
        inter,
        ex,
        test,
        fractions=[0.25, 1.0],
        features=feats,
        cfg=SeqConfig(epochs=3, hidden=16, seed=0),
        n_boot=50,
        seeds=[0, 1, 2],
        methods=("user_like_rate", "bias_logreg", "sasrec", "recpie_hybrid"),
    )
    assert len(table) == 8 and set(table["fraction"]) == {0.25, 1.0} and (table["n_seeds"] == 3).all()
    assert (table["n"] == len(test)).all() and table["auc"].between(0, 1).all() and table["auc_sd"].ge(0).all()
    small = table[table["fraction"] == 0.25]
    assert (small["n_train_users"] == 15).all() and (small["n_train_targets"] < table["n_train_targets"].max()).all()
    assert (small["n_valid"] == 15).all()  # early stopping on the fraction's own users' validation targets
    # paired with SASRec at the same fraction; the reference itself has no difference
    assert set(table["reference"]) == {"sasrec"} and table.loc[table["method"] == "sasrec", "delta_auc"].isna().all()
    per_seed = table.attrs["per_seed"]
    assert len(per_seed) == 24 and set(per_seed["seed"]) == {0, 1, 2}
    hyb = per_seed[(per_seed["method"] == "recpie_hybrid") & (per_seed["fraction"] == 1.0)]["auc"].mean()
    sas = per_seed[(per_seed["method"] == "sasrec") & (per_seed["fraction"] == 1.0)]["auc"].mean()
    row = table.set_index(["method", "fraction"]).loc[("recpie_hybrid", 1.0)]
    assert (
        row["delta_auc"] == pytest.approx(hyb - sas) and row["delta_ci_low"] <= row["delta_auc"] <= row["delta_ci_high"]
    )
    assert row["delta_ci_low"] > 0  # only the text carries the answer here: the hybrid wins, resolvably
    # each seed draws its own fractions
    draws = {s: nested_user_fractions([f"u{i}" for i in range(60)], [0.25], seed=s)[0.25] for s in (0, 1)}
    assert draws[0] != draws[1]
    from rrlib.evaluate.efficiency import efficiency_view

    view = efficiency_view(table)
    assert (
        list(view.columns) == ["25% users", "100% users"] and "Δ" in view.loc["RecPIE (user + item text)", "100% users"]
    )
    fig = plot_data_efficiency(table, tmp_path / "eff.png")
    assert (tmp_path / "eff.png").stat().st_size > 0 and len(fig.axes) == 2
    with pytest.raises(MethodError, match="cannot train"):
        data_efficiency(inter, ex, test, fractions=[1.0], features=feats, cfg=CFG, methods=("caser",))


def test_reward_tuned_variant_reads_the_explainer_and_records_the_score_shift(tmp_path, monkeypatch):
    """recpie_rl fuses notebook 06's explanations whatever RECPIE_USER_TEXT says, carries the
    explanation it was shown as reasoning, and the score shift (without / with the user text) is
    written for notebook 08."""
    from rrlib.config.params import Config
    from rrlib.config.paths import RunPaths

    inter, ex, users, items = text_task(n_users=40, seed=1)
    paths = RunPaths.of(tmp_path / "run")
    pd.DataFrame({"item_id": list(items), "description": list(items.values()), "status": "ok"}).to_parquet(
        paths.item_descriptions
    )
    tables = SimpleNamespace(
        interactions=inter,
        examples=ex,
        users=pd.DataFrame({"user_id": list(users)}),
        items=pd.DataFrame({"item_id": list(items), "title": list(items)}),
    )
    monkeypatch.setattr("rrlib.methods.recpie.default_encoder", lambda cache_dir: FakeEncoder())
    cfg = Config.full({"RUN_DIR": str(paths.root), "RECPIE_EPOCHS": 2, "RECPIE_HIDDEN": 16, "RECPIE_USER_TEXT": "none"})
    test = ex[ex["split"] == "test"]
    predict = registry.implementation("recpie_rl")
    with pytest.raises(MissingArtifactError, match="06_finetune"):
        predict(["recpie_rl"], tables, test, cfg)  # notebook 06 has not written explanations yet
    paths.explainer.mkdir()
    explained = sorted(users)[:30]  # the rest have no explanation: no text, no reasoning
    pd.DataFrame(
        {"user_id": explained, "explanation": [users[u].text for u in explained], "available_from": 2, "round": 1}
    ).to_parquet(paths.explainer_texts)
    rows, info = predict(["recpie_rl", "recpie_item_text"], tables, test, cfg)
    assert info["recpie_rl"]["text_sources"] == {"user": "explanations", "item": "description"}
    rl = rows[rows["method"] == "recpie_rl"].set_index("user_id")
    # scored on the explained users only, each with the explanation it was shown (coverage recorded)
    assert sorted(rl.index) == explained and info["recpie_rl"]["coverage"] == {"explained": 30, "evaluated": 40}
    assert (rl.loc[explained, "reasoning"] == [users[u].text for u in explained]).all()
    assert (rows[rows["method"] == "recpie_item_text"]["reasoning"].fillna("") == "").all()
    shift = pd.read_parquet(paths.explainer_score_shift)
    assert set(shift["method"]) == {"recpie_rl"} and len(shift) == len(test)  # item-only variant: no user text
    shown = shift[shift["user_text_shown"]]
    assert set(shown["user_id"]) == set(explained)
    np.testing.assert_allclose(shift.set_index("user_id").loc[rl.index, "p_with_user_text"], rl["p_yes"], atol=1e-6)
    hidden = shift[~shift["user_text_shown"]]
    np.testing.assert_allclose(hidden["p_with_user_text"], hidden["p_without_user_text"], atol=1e-7)
    assert (shown["p_with_user_text"] - shown["p_without_user_text"]).abs().max() > 1e-4


def test_a_row_scored_on_fewer_examples_than_the_baseline_says_so():
    """recpie_rl scored on its explained users only: the like table's note gives the coverage and
    its paired difference is on those examples (issue 20)."""
    from rrlib import predictions as pr
    from rrlib.evaluate.results import score_predictions

    rng = np.random.default_rng(0)
    n = 120
    ex = pd.DataFrame(
        {
            "example_id": [f"test:u{i}" for i in range(n)],
            "split": "test",
            "user_id": [f"u{i}" for i in range(n)],
            "target_item_id": "i1",
            "label": rng.integers(0, 2, n),
        }
    )
    y = ex["label"].to_numpy()
    preds = pd.concat(
        [
            pr.like_rows("bias_logreg", 0, ex, 1 / (1 + np.exp(-(y + rng.normal(size=n))))),
            pr.like_rows("recpie_rl", 0, ex.iloc[:90], 1 / (1 + np.exp(-(2 * y[:90] + rng.normal(size=90))))),
        ],
        ignore_index=True,
    )
    results, _ = score_predictions(
        preds, {}, dataset="toy", n_boot=100, seed=0, bertscore_model="embedded", bertscore_layers=6, progress=False
    )
    row = results.set_index("method").loc["recpie_rl"]
    assert row["n"] == 90 and "scored on 90 of the 120 examples (coverage 75%)" in row["note"]
    assert np.isfinite(row["delta_auc"])
    assert "coverage" not in results.set_index("method").loc["bias_logreg", "note"]
