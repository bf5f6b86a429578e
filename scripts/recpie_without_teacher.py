"""RecPIE on a run folder that has only notebook 01's tables (no teacher text: notebooks 02-05 are
skipped): 06's explainer loop (GRPO, STUDENT_MODEL; cross-fitted reward, every evaluated user
explained) and 07's bias / SASRec / RecPIE fits through the registry on the N_TEST test examples,
scored by rrlib.evaluate.results.score_predictions (AUC CIs and paired differences to the strongest
bias baseline; recpie_rl's coverage in its note), then the data-efficiency curve (paired over
RECPIE_EFFICIENCY_SEEDS seeds, on every test user by default).
Settings: params/recpie_cpu.yaml, except item text = title + attributes and every user-text
variant fusing the explainer's explanations, then ``-p NAME VALUE`` overrides. A quick check of
RecPIE without the teacher's cost.

    python -m rrlib run -f params/recpie_cpu.yaml --only 01 --run-id R
    python scripts/recpie_without_teacher.py outputs/R [RECPIE_RL_USERS] [CACHE_DIR] [-p NAME VALUE ...]
"""

import argparse
import json
import time
from pathlib import Path

from rrlib import predictions as pr
from rrlib.config.params import Config, load_params, parse_override
from rrlib.config.paths import RunPaths
from rrlib.data import domain_of, eval_subset, load_tables
from rrlib.evaluate.efficiency import efficiency_view, plot_data_efficiency, run_data_efficiency
from rrlib.evaluate.results import score_predictions
from rrlib.finetune import rl
from rrlib.methods import registry

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("run")
ap.add_argument("rl_users", nargs="?", type=int, default=96)
ap.add_argument("cache", nargs="?", default="outputs/cache")
ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
args = ap.parse_args()
run = Path(args.run)
p = load_params(["params/recpie_cpu.yaml"])
cache = args.cache
p.update(
    RUN_DIR=str(run),
    CACHE_DIR=cache,
    RECPIE_ITEM_TEXT="title",
    RECPIE_USER_TEXT="explanations",
    RECPIE_RL_USERS=args.rl_users,
    RECPIE_RL_STEPS=3,
)
p.update({name: parse_override(name, value) for name, value in args.p})
cfg = Config.full(p)
paths = RunPaths.of(run)
t = load_tables(paths)
test = eval_subset(t.examples, "test", cfg.data.n_test)
times = {}
t0 = time.perf_counter()
r = rl.rl_run_for(cfg, paths, t, domain_of(p))
log = rl.run_explainer_rl(r)
rl.write_prompts(r, paths.explainer_prompts)
times["rl_loop"] = time.perf_counter() - t0
print(rl.rounds_table(log).to_string(), flush=True)
rl.plot_rounds(log, paths.explainer / "rl_rounds.png")
preds = None
for names in (["user_like_rate", "item_like_rate", "bias_logreg"], ["sasrec"], registry.names(family="recpie")):
    t0 = time.perf_counter()
    rows, info = registry.implementation(names[0])(names, t, test, cfg)
    times[names[0]] = time.perf_counter() - t0
    print(names, f"{times[names[0]]:.0f} s", flush=True)
    if "recpie_rl" in info:
        print("recpie_rl coverage (explained of evaluated test users):", info["recpie_rl"]["coverage"], flush=True)
    preds = rows if preds is None else pr.merge(preds, rows)
pr.save(preds, paths.predictions)
res, _ = score_predictions(
    preds,
    {},
    dataset=p["DATASET"],
    n_boot=1000,
    seed=cfg.common.seed,
    bertscore_model="embedded",
    bertscore_layers=6,
    cache_dir=Path(cache),
)
cols = [
    "method",
    "n",
    "n_neg",
    "auc",
    "auc_ci_low",
    "auc_ci_high",
    "reference",
    "delta_auc",
    "delta_ci_low",
    "delta_ci_high",
    "delta_p",
    "note",
]
print(res[cols].to_string(), flush=True)
res.to_csv(run / "results.csv", index=False)
t0 = time.perf_counter()
eff = run_data_efficiency(cfg, paths, t)
times["efficiency"] = time.perf_counter() - t0
eff.to_csv(paths.explainer_efficiency, index=False)
eff.attrs["per_seed"].to_csv(paths.explainer / "data_efficiency_per_seed.csv", index=False)
plot_data_efficiency(eff, paths.explainer / "data_efficiency.png")
print(f"data efficiency on {int(eff['n'].iloc[0])} test examples, text coverage {eff.attrs.get('text_coverage')}")
print(efficiency_view(eff).to_string())
print(json.dumps(times))
