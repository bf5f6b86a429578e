#!/usr/bin/env python
"""Teacher tokens a preset's notebooks 02, 03 and 05 will ask for, counted without generating
(docs/scale.md uses it for the paper ML-1M run's teacher tokens and GPU hours).

Notebook 01 runs for real on the preset's data (DATA_DIR), so the enrichment scope (the items and
users the K-shot sets and the valid/test subsamples touch), the profile items and the reasoning
examples are exactly the run's. Every teacher prompt is then rendered as the notebooks render it
and counted with a tokenizer (``--tokenizer``: 'embedded' = SmolLM2's, or a local folder such as a
Mixtral checkpoint). Texts that earlier steps would write (descriptions inside profile and
reasoning prompts, profiles inside reasoning prompts) are stood in for by text of the asked length
taken from the ReasoningRec release (Mixtral's own 25-word ML-1M summaries and Beauty profiles);
plots (PLOT_SOURCE cinemagoer) by the same summaries, or by ``--plots-csv``.

Completion tokens: the cap (the preset's max_new_tokens per task) and an expected count, the
words asked for times the tokens per word of Mixtral-written text measured with the same tokenizer
on the release texts (a teacher that stops at its word budget). Retries (MAX_OUTPUT_RETRIES) come
on top: ``--retry-rate`` is the share of answers regenerated (the embedded teacher: 47 of 96
reasoning answers in the default's cold run; a large teacher far fewer).

    python scripts/estimate_teacher_tokens.py -f params/paper_ml1m.yaml -p DATA_DIR /data/ml-1m
    python scripts/estimate_teacher_tokens.py -f params/paper_ml1m.yaml -p DATA_DIR ../shared/data/ml-1m-slice \\
        --prefill-rate 20000 --decode-rate 2500      # tokens/s of the serving setup: prints GPU hours
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "rrlib" / "resources" / "reasoningrec_release"


def _release_texts() -> tuple[dict[str, str], list[str]]:
    import pandas as pd

    summaries = pd.read_csv(RELEASE / "ml1m" / "movie_summary_25_words.csv", dtype=str).fillna("")
    by_id = dict(zip(summaries["movie_id"].astype(str), summaries["summary"].astype(str)))
    profiles = list(json.loads((RELEASE / "beauty" / "user_profile_summary.json").read_text()).values())
    return by_id, [str(p) for p in profiles if str(p).strip()]


def _words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def main(argv: Sequence[str] | None = None) -> int:
    from rrlib.config.params import Config, add_parameter_arguments, load_params, parse_override

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_parameter_arguments(parser)
    parser.add_argument("--tokenizer", default="embedded", help="'embedded' or a local model folder")
    parser.add_argument("--plots-csv", default="", help="plots for PLOT_SOURCE cinemagoer (default: release summaries)")
    parser.add_argument("--retry-rate", type=float, default=0.1, help="share of answers generated twice")
    parser.add_argument("--prefill-rate", type=float, default=0.0, help="prompt tokens/s of the teacher setup")
    parser.add_argument("--decode-rate", type=float, default=0.0, help="completion tokens/s of the teacher setup")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)

    import pandas as pd

    from rrlib.config.paths import RunPaths
    from rrlib.data import domain_of, load_tables, prepare
    from rrlib.data.schema import as_list
    from rrlib.enrich.descriptions import description_request
    from rrlib.enrich.profiles import profile_request
    from rrlib.enrich.scope import enrichment_scope
    from rrlib.llm.local import LocalBackend
    from rrlib.prompts.items import ItemCatalog
    from rrlib.reasoning import reasoning_examples, reasoning_request, reference_examples, teacher_views

    work = Path(tempfile.mkdtemp(prefix="rrlib-teacher-tokens-"))
    overrides = {name: parse_override(name, value) for name, value in args.overrides}
    overrides.setdefault("CACHE_DIR", str(work / "cache"))
    params = load_params(args.files, {**overrides, "RUN_DIR": str(work / "run")})
    cfg, paths = Config(params), RunPaths.of(work / "run")
    print(f"notebook 01 on {params['DATASET']} ({params['DATA_DIR'] or 'download cache'}) ...", file=sys.stderr)
    prepare(params, paths, progress=False)
    t = load_tables(paths)
    domain = domain_of(params)
    scope = enrichment_scope(t.items, t.users, t.examples, cfg, t.interactions)

    tok_backend = LocalBackend(args.tokenizer, cache_dir=Path(params["CACHE_DIR"]))
    count = tok_backend.count_tokens
    summaries, profiles = _release_texts()
    plots = dict(summaries)
    if args.plots_csv:
        from rrlib.enrich.movie_plots import load_plots_csv

        plots = load_plots_csv(args.plots_csv)
    if params.get("PLOT_SOURCE") == "none":
        plots = {}

    def tokens_per_word(texts: Sequence[str]) -> float:
        texts = [x for x in texts if x.strip()][:400]
        return sum(
            count([{"role": "user", "content": x}]) - count([{"role": "user", "content": ""}]) for x in texts
        ) / max(1, sum(len(x.split()) for x in texts))

    tpw = tokens_per_word(list(summaries.values()) + profiles)
    tasks: dict[str, dict] = {}

    def add(task: str, requests, words_asked: int) -> None:
        prompt = [count(list(r.messages)) for r in requests]
        cap = [r.settings.max_new_tokens for r in requests]
        expected = [min(c, round(words_asked * tpw)) for c in cap]
        tasks[task] = {
            "requests": len(requests),
            "prompt_tokens": sum(prompt),
            "prompt_tokens_mean": round(statistics.mean(prompt), 1) if prompt else 0,
            "completion_tokens_cap": sum(cap),
            "completion_tokens_expected": sum(expected),
        }
        print(f"  {task}: {len(requests)} requests, {sum(prompt):,} prompt tokens", file=sys.stderr)

    # 02: descriptions of the scoped items (minus the imported ones)
    items = t.items.assign(item_id=t.items["item_id"].astype(str)).set_index("item_id", drop=False)
    imported: set[str] = set()
    if params.get("DESCRIPTIONS_IMPORT"):
        imported = set(summaries) if "ml1m" in str(params["DESCRIPTIONS_IMPORT"]) else set()
    todo = [i for i in scope.item_ids if i not in imported]
    add(
        "02 item descriptions",
        [description_request(items.loc[i].to_dict(), domain=domain, cfg=cfg, plot=plots.get(i, "")) for i in todo],
        cfg.enrich.description_words,
    )
    n = cfg.enrich.description_words
    desc = pd.DataFrame(
        {"item_id": scope.item_ids, "description": [_words(summaries.get(i, ""), n) for i in scope.item_ids]}
    )
    desc["status"] = "ok"
    catalog = ItemCatalog.from_tables(t.items, desc)

    # 03: profiles of the scoped users that have profile items
    users = t.users[t.users["user_id"].astype(str).isin(scope.user_ids)]
    users = users[[len(as_list(x)) > 0 for x in users["profile_item_ids"]]]
    add(
        "03 user profiles",
        [profile_request(u, catalog, domain=domain, cfg=cfg) for u in users.to_dict("records")],
        cfg.enrich.profile_words,
    )
    q = cfg.enrich.profile_words
    profile_of = {str(u): _words(profiles[i % len(profiles)], q) for i, u in enumerate(t.users["user_id"])}

    # 05: label-conditioned reasoning of the K-shot examples, per teacher view; test references
    views = sorted(set(teacher_views(cfg.student.methods, cfg.enrich.ablation_reasoning).values()), key=sorted)
    train = reasoning_examples(t.examples, cfg)
    reqs = [
        reasoning_request(ex, profile_of.get(str(ex["user_id"]), ""), catalog, domain=domain, cfg=cfg, view=v)
        for v in views
        for ex in train.to_dict("records")
    ]
    add(f"05 reasoning ({len(views)} view(s) x {len(train)} examples)", reqs, 2 * cfg.enrich.reasoning_words)
    if cfg.enrich.reference_reasoning:  # BERTScore references, under every view as the training reasoning
        test = reference_examples(t.examples, cfg)
        add(
            f"05 test references ({len(views)} view(s) x {len(test)} examples)",
            [
                reasoning_request(ex, profile_of.get(str(ex["user_id"]), ""), catalog, domain=domain, cfg=cfg, view=v)
                for v in views
                for ex in test.to_dict("records")
            ],
            2 * cfg.enrich.reasoning_words,
        )

    total = {
        k: sum(v[k] for v in tasks.values())
        for k in ("requests", "prompt_tokens", "completion_tokens_cap", "completion_tokens_expected")
    }
    retry = 1.0 + max(0.0, args.retry_rate)
    out = {
        "params": {
            k: params[k]
            for k in ("DATASET", "KCORE", "HISTORY_LEN", "PROFILE_ITEMS", "KSHOT_SIZES", "N_VALID", "N_TEST")
        },
        "data": {"users": len(t.users), "examples": len(t.examples), "scope": scope.summary()},
        "tokenizer": args.tokenizer,
        "tokens_per_word_of_teacher_text": round(tpw, 3),
        "tasks": tasks,
        "total": total,
        "retry_rate": args.retry_rate,
        "with_retries": {k: round(v * retry) for k, v in total.items() if k != "requests"},
    }
    if args.prefill_rate > 0 and args.decode_rate > 0:
        w = out["with_retries"]
        hours = {
            which: (w["prompt_tokens"] / args.prefill_rate + w[f"completion_tokens_{which}"] / args.decode_rate) / 3600
            for which in ("expected", "cap")
        }
        out["gpu_hours"] = {k: round(v, 2) for k, v in hours.items()}
        out["rates"] = {"prefill_tokens_per_s": args.prefill_rate, "decode_tokens_per_s": args.decode_rate}
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
