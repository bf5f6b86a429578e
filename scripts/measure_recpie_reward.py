"""What RecPIE's reward measures, and its data-efficiency curves, on a run folder that has only
notebook 01's tables (no LLM): user texts are synthetic ("Liked: <titles>. Disliked: <titles>." over
the interactions an explainer would see, i.e. before each user's reward targets), item texts are
title + attributes.

1. The reward of the TRUE texts and of texts SHUFFLED between users, each scored in sample (by a
   recommender trained on the reward targets, the old reward) and out of sample (cross-fitted: the
   recommender of the user's fold never trained on them, rrlib.finetune.rl). A reward that rates a
   shuffled text as highly as the true one measures nothing about the user.
2. The data-efficiency table (rrlib.evaluate.efficiency.data_efficiency): paired over seeds, early
   stopping on each fraction's own users, scored on every test user.

    python -m rrlib run -f params/recpie_cpu.yaml --only 01 --run-id R
    python scripts/measure_recpie_reward.py outputs/R [--users 200] [--hidden 16] [--epochs 3] [--max-len 10]
        [--seeds 3] [--fractions 25 100] [--skip-efficiency]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rrlib.config.paths import RunPaths
from rrlib.data import load_tables
from rrlib.data.sequences import training_cutoffs, user_sequences
from rrlib.evaluate.efficiency import data_efficiency, efficiency_view
from rrlib.finetune.rl import held_out_of, reward_folds
from rrlib.llm.encoder import default_encoder
from rrlib.methods.recpie import TextFeatures, UserText, fit_hybrid, item_texts_from, log_likelihood, reward_positions
from rrlib.methods.sequential import SeqConfig
from rrlib.prompts.items import ItemCatalog


def history_texts(tables, keep_out: int, n: int) -> dict[str, UserText]:
    cat = ItemCatalog.from_tables(tables.items)
    seqs = user_sequences(tables.interactions)
    cut = training_cutoffs(seqs)
    out = {}
    for u, s in seqs.items():
        end = cut[u] - keep_out
        if end < 1:
            continue
        w = s.iloc[max(0, end - n) : end]
        liked = [cat.card(str(i), False) for i, ok in zip(w["item_id"], w["liked"]) if ok]
        disliked = [cat.card(str(i), False) for i, ok in zip(w["item_id"], w["liked"]) if not ok]
        out[u] = UserText(f"Liked: {'; '.join(liked) or 'none'}. Disliked: {'; '.join(disliked) or 'none'}.", end)
    return out


def gain(fitted, users, rows_of_user, available) -> np.ndarray:
    """Mean log-likelihood gain per user over its reward targets, with user-text row
    ``rows_of_user[u]`` vs none (no out-of-sample check: this also measures the old reward)."""
    out = []
    for u in users:
        pos = reward_positions(fitted.data, u, available[u])
        with_t = log_likelihood(fitted, [u] * len(pos), pos, np.full(len(pos), rows_of_user[u]))
        without = log_likelihood(fitted, [u] * len(pos), pos, np.zeros(len(pos), dtype=np.int64))
        out.append(float(np.mean(with_t - without)))
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--cache", default="outputs/cache")
    ap.add_argument("--users", type=int, default=200, help="rewarded users (seeded sample)")
    ap.add_argument("--reward-targets", type=int, default=2)
    ap.add_argument("--history", type=int, default=10)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-len", type=int, default=10)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fractions", type=int, nargs="+", default=[25, 100])
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--skip-efficiency", action="store_true")
    args = ap.parse_args()
    paths = RunPaths.of(args.run)
    t = load_tables(paths)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    texts = history_texts(t, args.reward_targets, args.history)
    enc = default_encoder(Path(args.cache))
    items = item_texts_from(t.items, None, "title")
    cfg = SeqConfig(hidden=args.hidden, epochs=args.epochs, max_len=args.max_len, patience=2, lr=3e-3, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    users = sorted(rng.choice(sorted(texts), size=min(args.users, len(texts)), replace=False).tolist())
    available = {u: texts[u].available_from for u in users}
    # texts shown for every user from its window's end (the recommender learns to use them); the
    # rewarded users' texts are also the candidates: true (own) and shuffled (another user's)
    feats = TextFeatures.encode(texts, items, enc)
    times["encode"] = time.perf_counter() - t0
    shuffled_of = dict(zip(users, rng.permutation(users).tolist()))
    true_rows = {u: feats.user_row[u] for u in users}
    shuffled_rows = {u: feats.user_row[shuffled_of[u]] for u in users}
    record: dict = {"users": len(users), "folds": args.folds, "config": vars(args)}
    t0 = time.perf_counter()
    in_sample = fit_hybrid("recpie_hybrid", t.interactions, t.examples, feats, cfg, progress=False)
    record["in_sample"] = {
        "true": float(gain(in_sample, users, true_rows, available).mean()),
        "shuffled": float(gain(in_sample, users, shuffled_rows, available).mean()),
        "valid_auc": float(in_sample.best_valid),
    }
    folds = reward_folds(users, args.folds, args.seed)
    true_g, shuf_g, valid = np.zeros(len(users)), np.zeros(len(users)), []
    for f in range(args.folds):
        model = fit_hybrid(
            "recpie_hybrid",
            t.interactions,
            t.examples,
            feats,
            cfg,
            held_out=held_out_of(f, folds, available),
            progress=False,
        )
        valid.append(float(model.best_valid))
        idx = [i for i, u in enumerate(users) if folds[u] == f]
        part = [users[i] for i in idx]
        true_g[idx] = gain(model, part, true_rows, available)
        shuf_g[idx] = gain(model, part, shuffled_rows, available)
    record["out_of_sample"] = {"true": float(true_g.mean()), "shuffled": float(shuf_g.mean()), "valid_auc": valid}
    diff = true_g - shuf_g
    boot = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(args.n_boot)])
    record["out_of_sample"]["true_minus_shuffled"] = [
        float(diff.mean()),
        *map(float, np.quantile(boot, [0.025, 0.975])),
    ]
    times["reward"] = time.perf_counter() - t0
    print(json.dumps(record, indent=1), flush=True)
    if not args.skip_efficiency:
        t0 = time.perf_counter()
        test = t.examples[t.examples["split"] == "test"]
        table = data_efficiency(
            t.interactions,
            t.examples,
            test,
            fractions=[f / 100 for f in args.fractions],
            features=feats,
            cfg=replace(cfg),
            methods=("user_like_rate", "item_like_rate", "bias_logreg", "sasrec", "recpie_hybrid"),
            n_boot=args.n_boot,
            seeds=[args.seed + i for i in range(args.seeds)],
        )
        times["efficiency"] = time.perf_counter() - t0
        paths.explainer.mkdir(parents=True, exist_ok=True)
        table.to_csv(paths.explainer / "measure_efficiency.csv", index=False)
        table.attrs["per_seed"].to_csv(paths.explainer / "measure_efficiency_per_seed.csv", index=False)
        print(f"data efficiency on {len(test)} test users ({int((test['label'] == 0).sum())} dislikes)")
        print(efficiency_view(table).to_string(), flush=True)
        record["efficiency"] = table.to_dict(orient="records")
    record["seconds"] = times
    paths.explainer.mkdir(parents=True, exist_ok=True)
    (paths.explainer / "measure_recpie_reward.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(times))


if __name__ == "__main__":
    main()
