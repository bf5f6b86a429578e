"""Quick RecPIE check on a prepared run folder (notebook 01's tables): test AUC of the bias
baselines, SASRec and the four RecPIE variants, with a quick synthetic user text (--user-text
profile: the titles of the user's profile items split into liked/disliked, shown only after the
last of them; history: the same over the 10 interactions before the user's last 2 training
targets, shown from there on) and an item text (--item-text title: title + attributes;
description: RUN_DIR's notebook-02 table).
Optionally the data-efficiency curve. Prints a table and writes recpie_quick_eval.json into
RUN_DIR/recpie/.

    python scripts/recpie_quick_eval.py RUN_DIR [--item-text title|description] [--user-text profile|history]
        [--epochs 10]
        [--max-len 20] [--fractions 12,25,50,100]
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd

from rrlib.config.paths import RunPaths, resolve_path
from rrlib.data import eval_subset, load_tables
from rrlib.evaluate.metrics import auc_with_ci, paired_auc_difference
from rrlib.llm.encoder import default_encoder
from rrlib.methods.bias import bias_baselines
from rrlib.methods.recpie import EXPLAINED, VARIANTS, TextFeatures, UserText, item_texts_from, train_hybrid
from rrlib.methods.sequential import SeqConfig, train_sequential
from rrlib.prompts.items import ItemCatalog


def synthetic_profiles(tables) -> dict[str, UserText]:
    """'Liked: A; B. Disliked: C.' over each user's profile items (notebook 01 picks them before
    every target and history window), available after the last one."""
    cat = ItemCatalog.from_tables(tables.items)
    out = {}
    for u, ids, liked, pos in zip(
        tables.users["user_id"],
        tables.users["profile_item_ids"],
        tables.users["profile_liked"],
        tables.users["profile_positions"],
    ):
        if ids is None or not len(ids):
            continue
        cards = [(cat.card(str(i), False), bool(ok)) for i, ok in zip(ids, liked)]
        text = (
            "Liked: "
            + "; ".join(c for c, ok in cards if ok)
            + ". Disliked: "
            + ("; ".join(c for c, ok in cards if not ok) or "none")
            + "."
        )
        out[str(u)] = UserText(text, int(max(pos)) + 1)
    return out


def history_texts(tables, keep_out: int = 2, n: int = 10) -> dict[str, UserText]:
    """The same kind of text over the ``n`` interactions before each user's last ``keep_out``
    training targets (the RL explainer's window), available from there on."""
    from rrlib.data.sequences import training_cutoffs, user_sequences

    cat = ItemCatalog.from_tables(tables.items)
    seqs = user_sequences(tables.interactions)
    out = {}
    for u, c in training_cutoffs(seqs).items():
        end = c - keep_out
        if end < 1:
            continue
        seq = seqs[u].iloc[max(0, end - n) : end]
        cards = [(cat.card(i, False), bool(ok)) for i, ok in zip(seq["item_id"], seq["liked"])]
        out[u] = UserText(
            "Liked: "
            + ("; ".join(c for c, ok in cards if ok) or "none")
            + ". Disliked: "
            + ("; ".join(c for c, ok in cards if not ok) or "none")
            + ".",
            end,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--item-text", default="title", choices=("title", "description"))
    ap.add_argument("--user-text", default="profile", choices=("profile", "history"))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--n-test", type=int, default=0, help="test examples (0: all)")
    ap.add_argument("--fractions", default="", help="e.g. 12,25,50,100 for the data-efficiency curve")
    ap.add_argument("--cache-dir", default="outputs/cache")
    a = ap.parse_args()
    paths = RunPaths.of(a.run_dir, create=False)
    t = load_tables(paths)
    test = eval_subset(t.examples, "test", a.n_test)
    desc = pd.read_parquet(paths.item_descriptions) if a.item_text == "description" else None
    t0 = time.perf_counter()
    enc = default_encoder(resolve_path(a.cache_dir))
    users = synthetic_profiles(t) if a.user_text == "profile" else history_texts(t)
    feats = TextFeatures.encode(users, item_texts_from(t.items, desc, a.item_text), enc)
    print(
        f"texts: {len(feats.user_row)} users, {len(feats.item_row)} items embedded in "
        f"{time.perf_counter() - t0:.1f} s ({enc.stats})"
    )
    cfg = SeqConfig(max_len=a.max_len, hidden=a.hidden, epochs=a.epochs, patience=3, seed=a.seed)
    scores, info = {}, {}
    bias, _ = bias_baselines(t.interactions, t.examples, test, seed=a.seed)
    for m, g in bias.groupby("method"):
        scores[m] = g["p_yes"].to_numpy()
    for m in ("sasrec", *(v for v in VARIANTS if v not in EXPLAINED)):  # recpie_rl needs notebook 06
        s = time.perf_counter()
        if m == "sasrec":
            rows, inf = train_sequential(m, t.interactions, t.examples, test, cfg, progress=False)
        else:
            rows, inf = train_hybrid(m, t.interactions, t.examples, test, cfg, feats, progress=False)
        scores[m] = rows["p_yes"].to_numpy()
        info[m] = {
            k: inf.get(k)
            for k in (
                "best_epoch",
                "best_valid_auc",
                "epochs_run",
                "n_train_targets",
                "train_text_coverage",
                "eval_text_coverage",
            )
        }
        info[m]["seconds"] = time.perf_counter() - s
        print(f"{m}: trained in {info[m]['seconds']:.0f} s, best epoch {inf.get('best_epoch')}", flush=True)
    y = test["label"].to_numpy(dtype=int)
    res = {m: auc_with_ci(y, p, n_boot=1000, seed=a.seed) for m, p in scores.items()}
    best_bias = max(("user_like_rate", "item_like_rate", "bias_logreg"), key=lambda m: res[m]["auc"])
    print(f"\n{len(test)} test examples ({y.mean():.3f} liked); strongest bias baseline: {best_bias}")
    print(f"{'method':18s} {'AUC':>6s} {'95% CI':>15s} {'vs bias':>8s} {'p':>6s} {'vs SASRec':>9s} {'p':>6s} {'s':>6s}")
    table = []
    for m, r in res.items():
        d_b = paired_auc_difference(y, scores[m], scores[best_bias], n_boot=1000, seed=a.seed)
        d_s = paired_auc_difference(y, scores[m], scores["sasrec"], n_boot=1000, seed=a.seed)
        sec = info.get(m, {}).get("seconds", 0.0)
        print(
            f"{m:18s} {r['auc']:6.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] {d_b['delta_auc']:+8.3f} "
            f"{d_b['p_value']:6.3f} {d_s['delta_auc']:+9.3f} {d_s['p_value']:6.3f} {sec:6.0f}"
        )
        table.append({"method": m, **r, "delta_vs_best_bias": d_b, "delta_vs_sasrec": d_s, "info": info.get(m)})
    out = {"run_dir": str(paths.root), "best_bias": best_bias, "config": vars(a), "results": table}
    if a.fractions:
        from rrlib.evaluate.efficiency import data_efficiency, plot_data_efficiency

        fr = [int(x) / 100 for x in a.fractions.split(",")]
        eff = data_efficiency(
            t.interactions,
            t.examples,
            test,
            fractions=fr,
            features=feats,
            cfg=cfg,
            methods=("user_like_rate", "item_like_rate", "bias_logreg", "sasrec", "recpie_hybrid"),
            n_boot=500,
        )
        print(eff[["method", "fraction", "n_train_users", "auc", "ci_low", "ci_high"]].to_string(index=False))
        paths.explainer.mkdir(parents=True, exist_ok=True)
        plot_data_efficiency(eff, paths.explainer / "data_efficiency.png")
        out["data_efficiency"] = eff.to_dict("records")
    paths.explainer.mkdir(parents=True, exist_ok=True)
    (paths.explainer / "recpie_quick_eval.json").write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
