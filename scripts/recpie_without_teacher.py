"""RecPIE on a run folder that has only notebook 01's tables (no teacher text: notebooks 02-05 are
skipped): 06's explainer loop (GRPO, STUDENT_MODEL) and 07's bias / SASRec / RecPIE fits through
the registry on every test example, scored by rrlib.evaluate.results.score_predictions (AUC CIs and
paired differences to the strongest bias baseline), then the data-efficiency curve.
Settings: params/recpie_cpu.yaml, except item text = title + attributes and every user-text
variant fusing the explainer's explanations. A quick check of RecPIE without the teacher's cost.

    python -m rrlib run -f params/recpie_cpu.yaml --only 01 --run-id R
    python scripts/recpie_without_teacher.py outputs/R [RECPIE_RL_USERS] [CACHE_DIR]
"""

import json
import sys
import time
from pathlib import Path

from rrlib import predictions as pr
from rrlib import recpie_rl as rl
from rrlib.config.params import Config, load_params
from rrlib.config.paths import RunPaths
from rrlib.data import domain_of, load_tables
from rrlib.evaluate.efficiency import plot_data_efficiency, run_data_efficiency
from rrlib.evaluate.results import score_predictions
from rrlib.methods import registry

run = Path(sys.argv[1])
p = load_params(["params/recpie_cpu.yaml"])
cache = sys.argv[3] if len(sys.argv) > 3 else "outputs/cache"
p.update(
    RUN_DIR=str(run),
    CACHE_DIR=cache,
    RECPIE_ITEM_TEXT="title",
    RECPIE_USER_TEXT="explanations",
    RECPIE_RL_USERS=int(sys.argv[2]) if len(sys.argv) > 2 else 96,
    RECPIE_RL_STEPS=3,
)
cfg = Config.full(p)
paths = RunPaths.of(run)
t = load_tables(paths)
test = t.examples[t.examples["split"] == "test"]
times = {}
t0 = time.perf_counter()
r = rl.rl_run_for(cfg, paths, t, domain_of(p))
log = rl.run_recpie_rl(r)
rl.write_prompts(r, paths.recpie_prompts)
times["rl_loop"] = time.perf_counter() - t0
print(rl.rounds_table(log).to_string(), flush=True)
rl.plot_rounds(log, paths.recpie / "rl_rounds.png")
preds = None
for names in (["user_like_rate", "item_like_rate", "bias_logreg"], ["sasrec"], registry.names(family="recpie")):
    t0 = time.perf_counter()
    rows, info = registry.implementation(names[0])(names, t, test, cfg)
    times[names[0]] = time.perf_counter() - t0
    print(names, f"{times[names[0]]:.0f} s", flush=True)
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
]
print(res[cols].to_string(), flush=True)
res.to_csv(run / "results.csv", index=False)
t0 = time.perf_counter()
eff = run_data_efficiency(cfg, paths, t, test)
times["efficiency"] = time.perf_counter() - t0
eff.to_csv(paths.recpie_efficiency, index=False)
plot_data_efficiency(eff, paths.recpie / "data_efficiency.png")
print(eff.pivot_table(index="method", columns="fraction", values="auc", sort=False).round(3).to_string())
print(json.dumps(times))
