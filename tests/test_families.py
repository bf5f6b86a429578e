"""Each family's own views (rrlib.evaluate.families for notebook 07, rrlib.report.families for 08):
the notebooks name no system, the registry and the tables of families tell them what to show, and
each family's record lands in the results under its name. Small synthetic tables, no model."""

from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from test_inspect import _tables

from rrlib.config.params import Config
from rrlib.config.paths import RunPaths
from rrlib.evaluate import exp3rt as ev_exp3rt
from rrlib.evaluate import recpie as ev_recpie
from rrlib.evaluate.efficiency import EFFICIENCY_COLUMNS
from rrlib.evaluate.faithfulness import prompt_known_texts
from rrlib.evaluate.families import EVALUATION_SECTIONS, EvaluationContext, evaluation_sections
from rrlib.evaluate.plan import EvaluationPlan
from rrlib.evaluate.results import Evaluation, results_record
from rrlib.evaluate.section import Section, section_records
from rrlib.methods import registry
from rrlib.report import cases as rc
from rrlib.report import exp3rt as rp_exp3rt
from rrlib.report import recpie as rp_recpie
from rrlib.report.families import INSPECTION_SECTIONS, InspectionContext, inspection_sections

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


# ---------------------------------------------------------------------------------------
# The notebooks name no method and no family
# ---------------------------------------------------------------------------------------
def _system_names() -> dict[str, tuple[str, ...]]:
    """Every registered method and family, as word sequences; a family named like the registry's
    own vocabulary (a kind, a task, an input: 'bias', 'sequential', 'rating', 'zeroshot') is a
    concept the notebooks may ask the registry about, not a system."""
    vocab = set(registry.KINDS) | set(registry.TASKS) | set(registry.INPUTS)
    vocab |= {w for k in registry.KINDS for w in k.split("_")}
    names = (set(registry.REGISTRY) | set(registry.families())) - vocab
    return {n: tuple(n.split("_")) for n in names}


def _code_cells(nb: dict) -> list[tuple[int, str]]:
    out = []
    for i, cell in enumerate(nb["cells"]):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] == "code" and "parameters" not in tags and "injected-parameters" not in tags:
            out.append((i, "".join(cell["source"])))
    return out


def _parameter_names(nb: dict) -> set[str]:
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    return {n for c in cells for n in re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", "".join(c["source"]), re.M)}


def _mentions(source: str, params: set[str]) -> list[tuple[int, str]]:
    """(line, word) of every identifier-like word of the code (comments left out, strings and
    f-strings included, parameter names such as RECPIE_FRACTIONS allowed) that contains a method
    or family name as a run of its underscore-separated parts, in any case."""
    names = _system_names()
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.NAME, tokenize.STRING):
            continue
        for word in re.findall(r"[A-Za-z0-9_]+", tok.string):
            word = word.strip("_")
            if word in params:
                continue
            parts = tuple(word.lower().split("_"))
            for seq in names.values():
                if any(parts[i : i + len(seq)] == seq for i in range(len(parts) - len(seq) + 1)):
                    found.append((tok.start[0], word))
                    break
    return found


def test_the_system_names_come_from_the_registry():
    names = _system_names()
    assert {"recpie", "exp3rt", "tallrec", "reasoningrec", "recpie_rl", "sasrec", "bias_logreg"} <= set(names)
    assert not {"rating", "bias", "sequential", "zeroshot"} & set(names)  # registry vocabulary
    assert _mentions('x = plan.names()\nif "recpie_rl" in x: print("EXP3RT")  # exp3rt', set()) == [
        (2, "recpie_rl"),
        (2, "EXP3RT"),
    ]
    assert _mentions('y = f"{RECPIE_FRACTIONS} {lead_recpie}"', {"RECPIE_FRACTIONS"}) == [(1, "lead_recpie")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_code_cell_names_a_method_or_a_family(path):
    nb = json.loads(path.read_text())
    params = _parameter_names(nb)
    named = [
        f"cell {i} line {line}: {word}" for i, source in _code_cells(nb) for line, word in _mentions(source, params)
    ]
    assert named == [], (
        f"{path.name} names systems in code: {named}. Let the registry or a family's section "
        f"(rrlib/evaluate/families.py, rrlib/report/families.py) decide what to show."
    )


# ---------------------------------------------------------------------------------------
# The mechanism
# ---------------------------------------------------------------------------------------
def test_families_are_in_registry_order_and_every_declared_one_is_registered():
    families = registry.families()
    assert families[:3] == ["bias", "sequential", "recpie"] and len(families) == len(set(families))
    assert set(EVALUATION_SECTIONS) <= set(families) and set(INSPECTION_SECTIONS) <= set(families)


def test_section_records_merge_each_familys_records_in_order():
    sections = [
        Section("recpie", "a", record={"data_efficiency": 1}),
        Section("exp3rt", "b"),
        Section("exp3rt", "c", record={"ranking": [], "ranking_info": {}}),
        Section("recpie", "d", record={"coverage": 2}),
        Section("exp3rt", "e", record={"faithfulness": []}),
    ]
    out = section_records(sections)
    assert list(out) == ["recpie", "exp3rt"]
    assert out["recpie"] == {"data_efficiency": 1, "coverage": 2}
    assert list(out["exp3rt"]) == ["ranking", "ranking_info", "faithfulness"]
    assert section_records([Section("recpie", "x")]) == {"recpie": {}}  # a family with a section keeps its key


def test_every_declared_family_is_asked_in_registry_order(monkeypatch):
    asked = []

    def declare(name):
        def sections(ctx):
            asked.append(name)
            return [Section(name, name.upper(), record={"ctx": ctx})]

        return sections

    monkeypatch.setattr(
        "rrlib.evaluate.families.EVALUATION_SECTIONS", {"exp3rt": declare("exp3rt"), "recpie": declare("recpie")}
    )
    monkeypatch.setattr(
        "rrlib.report.families.INSPECTION_SECTIONS", {"exp3rt": declare("exp3rt"), "recpie": declare("recpie")}
    )
    assert [s.name for s in evaluation_sections("ctx")] == ["recpie", "exp3rt"]  # type: ignore[arg-type]
    assert [s.name for s in inspection_sections("ctx")] == ["recpie", "exp3rt"]  # type: ignore[arg-type]
    assert asked == ["recpie", "exp3rt"] * 2


def test_the_results_record_ends_with_each_familys_record(tmp_path):
    paths = RunPaths.of(tmp_path / "run")
    evaluation = Evaluation(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {"auc": {"x@K0": 0.5}}, {})
    refs = SimpleNamespace(as_dict=lambda: {"bias": "user_like_rate"})
    record = results_record(
        paths,
        evaluation,
        references=refs,
        all_users=pd.DataFrame({"method": ["m"]}),
        baseline_info={"sasrec": {"curve": [1, 2], "epochs": 3}},
        llm_stats={"m@K0@seed1": {"generation": {"n": 1}, "model_identity": "id"}},
        plots={"roc": tmp_path / "roc.png"},
        sections=[Section("recpie", "a"), Section("exp3rt", "b", record={"faithfulness": []})],
    )
    assert list(record)[-2:] == ["recpie", "exp3rt"] and record["exp3rt"] == {"faithfulness": []}
    assert record["baselines"] == {"sasrec": {"epochs": 3}} and record["references"] == {"bias": "user_like_rate"}
    assert record["generation"] == {"m@K0@seed1": {"n": 1}} and record["model_identities"] == {"m@K0@seed1": "id"}
    assert record["files"] == {"roc": str(tmp_path / "roc.png")} and record["predictions"] == str(paths.predictions)


# ---------------------------------------------------------------------------------------
# Notebook 07's views
# ---------------------------------------------------------------------------------------
def _scored(inputs) -> pd.DataFrame:
    """The synthetic predictions as a plan's rows (its K=8 block, whose reasoning is 'x', left out:
    TF-IDF finds no vocabulary in it)."""
    rows = inputs.predictions.assign(task="like", seed=0)
    return rows[rows["k"] != 8].reset_index(drop=True)


def _evaluation_context(tmp_path, *, plan=None, scored=None, results=None, metrics=None, **kw) -> EvaluationContext:
    inputs = _tables()
    paths = RunPaths.of(tmp_path / "run")
    paths.evaluate.mkdir(parents=True, exist_ok=True)
    cfg = Config.full({"RUN_DIR": str(paths.root), "LIKE_THRESHOLD": 3.0, "SEED": 7})
    scored = _scored(inputs) if scored is None else scored
    evaluation = Evaluation(
        pd.DataFrame({"task": ["like"]}) if results is None else results,
        pd.DataFrame(),
        pd.DataFrame(),
        metrics or {},
        {},
    )
    return EvaluationContext(
        cfg=kw.pop("cfg", cfg),
        paths=paths,
        plan=plan or EvaluationPlan(),
        data=SimpleNamespace(examples=inputs.examples, items=inputs.items),  # type: ignore[arg-type]
        test=inputs.examples[inputs.examples["split"] == "test"],
        predictions=scored,
        scored=scored,
        evaluation=evaluation,
        baseline_info=kw.pop("baseline_info", {}),
        contexts={},
        domain="beauty",
    )


def test_a_family_without_methods_in_the_plan_says_so_and_keeps_its_record_key(tmp_path):
    ctx = _evaluation_context(tmp_path)
    recpie = ev_recpie.sections(ctx)
    assert [s.title for s in recpie] == ["RecPIE: data efficiency"]
    assert recpie[0].lines == ["data efficiency skipped: recpie_hybrid is not in EVAL_METHODS"]
    assert recpie[0].record == {} and recpie[0].about.startswith("RecPIE's hybrids")
    rating, ranking = ev_exp3rt.rating_section(ctx), ev_exp3rt.ranking_section(ctx)
    assert rating.lines == ["no rating method in this run"] and not rating.tables and rating.record == {}
    assert ranking.lines == ["no retriever or reranker in EVAL_METHODS"]
    assert ranking.record == {"ranking_plan": {"retrievers": [], "rerankers": []}, "ranking": [], "ranking_info": {}}


def test_the_data_efficiency_view_writes_its_files_and_records_them(tmp_path, monkeypatch):
    rows = []
    for m, auc in (("sasrec", 0.6), ("recpie_hybrid", 0.7)):
        for f in (0.5, 1.0):
            delta = np.nan if m == "sasrec" else 0.1
            rows.append(
                dict.fromkeys(EFFICIENCY_COLUMNS, 1)
                | {
                    "method": m,
                    "label": registry.label(m),
                    "fraction": f,
                    "auc": auc,
                    "ci_low": auc - 0.05,
                    "ci_high": auc + 0.05,
                    "reference": "sasrec",
                    "delta_auc": delta,
                    "delta_ci_low": delta,
                    "delta_ci_high": delta,
                }
            )
    table = pd.DataFrame(rows, columns=EFFICIENCY_COLUMNS)
    table.attrs = {"per_seed": pd.DataFrame({"seed": [7]}), "text_coverage": {"user_text": 1.0}}
    calls = []

    def fake_run(cfg, paths, data, test):
        calls.append(len(test))
        return table

    monkeypatch.setattr("rrlib.evaluate.recpie.run_data_efficiency", fake_run)
    plan = EvaluationPlan(fitted={"rrlib.methods.recpie:predict": ["recpie_hybrid"]})
    ctx = _evaluation_context(tmp_path, plan=plan)
    section = ev_recpie.efficiency_section(ctx)
    paths = ctx.paths
    assert calls == [3]  # every test example (RECPIE_EFFICIENCY_TEST 'all')
    assert pd.read_csv(paths.explainer_efficiency)["method"].tolist() == table["method"].tolist()
    assert (paths.explainer / "data_efficiency_per_seed.csv").is_file()
    assert section.images == [paths.explainer / "data_efficiency.png"] and section.images[0].stat().st_size > 0
    assert list(section.tables) == ["AUC per share of training users"]
    assert section.lines[0].startswith("3 test examples (1 dislikes)")
    eff = section.record["data_efficiency"]
    assert eff["n_examples"] == 3 and eff["text_coverage"] == {"user_text": 1.0} and len(eff["table"]) == 4
    assert (eff["csv"], eff["per_seed_csv"], eff["plot"]) == (
        "recpie/data_efficiency.csv",
        "recpie/data_efficiency_per_seed.csv",
        "recpie/data_efficiency.png",
    )


def test_the_rating_view_shows_the_rating_rows(tmp_path):
    from rrlib import predictions as pr
    from rrlib.evaluate import rating as ra

    ex = pd.DataFrame(
        {
            "example_id": [f"test:u{i}" for i in range(4)],
            "user_id": [f"u{i}" for i in range(4)],
            "target_item_id": [f"i{i}" for i in range(4)],
            "label": [0, 1, 1, 1],
            "target_rating": [1.0, 4.0, 4.0, 5.0],
            "split": "test",
        }
    )
    preds = pd.concat(
        [
            pr.rating_rows("global_mean", 0, ex, [3.0] * 4, like_threshold=3.0),
            pr.rating_rows("exp3rt", 8, ex, [1.0, 4.0, 4.0, 5.0], like_threshold=3.0),
        ],
        ignore_index=True,
    )
    results = ra.rating_results(preds, n_boot=20, seed=0).assign(task="rating", format_errors=0)
    ctx = _evaluation_context(tmp_path, results=results, metrics={"strongest_rating_baseline": "global_mean"})
    section = ev_exp3rt.rating_section(ctx)
    assert section.lines == ["strongest rating baseline: global_mean"]
    assert set(section.tables["Rating prediction"]["method"]) == {"EXP3RT", "Global mean rating"}


def test_the_faithfulness_view_checks_every_reasoning_method_against_its_prompt(tmp_path):
    ctx = _evaluation_context(tmp_path)
    section = ev_exp3rt.faithfulness_section(ctx)
    table = section.tables["Faithfulness per method"]
    assert list(table.columns) == ev_exp3rt.FAITHFULNESS_SHOWN
    assert set(table["label"]) == {"ReasoningRec", "Zero-shot ReasoningRec"}
    written = pd.read_csv(ctx.paths.evaluate / "faithfulness.csv")
    assert len(written) == len(section.record["faithfulness"]) == len(table)
    # without the run's descriptions and profiles the like prompts hold titles and attributes only
    inputs = _tables()
    bare = prompt_known_texts(inputs.examples, inputs.items)
    assert "Argan Oil" in bare["test:u1"] and "dry hair" not in bare["test:u1"]
    # with them, the same texts as notebook 08's cases
    full = prompt_known_texts(inputs.examples, inputs.items, inputs.descriptions, inputs.profiles)
    assert full == rc.known_texts(inputs) and "Loves gentle hair care" in full["test:u1"]


def test_nothing_to_check_says_so(tmp_path):
    inputs = _tables()
    no_text = _scored(inputs).assign(reasoning="")
    no_text = no_text[no_text["method"] == "user_like_rate"]
    section = ev_exp3rt.faithfulness_section(_evaluation_context(tmp_path, scored=no_text))
    assert section.lines == ["no reasoning method wrote reasoning in this run"] and section.record == {
        "faithfulness": []
    }


# ---------------------------------------------------------------------------------------
# Notebook 08's views
# ---------------------------------------------------------------------------------------
def _inspection_context(tmp_path) -> InspectionContext:
    paths = RunPaths.of(tmp_path / "run")
    return InspectionContext(paths, _tables(), "beauty", n_showcase=2, seed=0)


def test_inspection_views_of_a_run_without_those_families(tmp_path):
    ctx = _inspection_context(tmp_path)
    sections = inspection_sections(ctx)
    assert [s.name for s in sections] == ["recpie", "exp3rt"]
    assert sections[0].lines == ["no RecPIE user-text method was scored in 07_evaluate"]
    assert sections[1].lines == ["no EXP3RT predictions in this run"]
    assert section_records(sections) == {"recpie": {}, "exp3rt": {"shown_example_ids": [], "human_eval": {}}}


def test_the_score_shift_view_leads_with_the_reward_tuned_method(tmp_path):
    ctx = _inspection_context(tmp_path)
    paths = ctx.paths
    n = 6
    shift = pd.DataFrame(
        {
            "method": ["recpie_hybrid"] * n + ["recpie_rl"] * n,
            "example_id": [f"test:u{i}" for i in range(n)] * 2,
            "user_id": [f"u{i}" for i in range(n)] * 2,
            "target_item_id": [f"i{i}" for i in range(n)] * 2,
            "label": [1, 0] * n,
            "p_without_user_text": [0.5] * (2 * n),
            "p_with_user_text": [0.7, 0.3, 0.6, 0.4, 0.55, 0.45] * 2,
            "user_text_shown": [True] * (2 * n),
            "user_text": ["likes gentle things"] * (2 * n),
        }
    )
    paths.explainer.mkdir(parents=True, exist_ok=True)
    shift.to_parquet(paths.explainer_score_shift)
    (section,) = rp_recpie.sections(ctx)
    assert list(section.tables) == ["Score shift per method", "Largest shifts of recpie_rl"]
    assert len(section.tables["Largest shifts of recpie_rl"]) == 2  # N_SHOWCASE
    assert section.images == [paths.inspect / "recpie_score_shift.png"] and section.images[0].is_file()
    assert section.record["plot"] == "inspect/recpie_score_shift.png"
    assert [r["method"] for r in section.record["score_shift"]] == ["recpie_hybrid", "recpie_rl"]


def test_the_exp3rt_cases_view_prints_its_cases(tmp_path, monkeypatch):
    ctx = _inspection_context(tmp_path)
    rating = ctx.inputs.predictions.iloc[:3].assign(method="exp3rt_zeroshot", task="rating")
    ctx.inputs.predictions = pd.concat([ctx.inputs.predictions, rating], ignore_index=True)
    cases = pd.DataFrame({"example_id": ["test:u2", "test:u1"], "reasoning": ["too harsh", "fits"]})
    seen = []

    def fake_cases(paths, predictions, method, n):
        seen.append((method, n))
        return cases

    monkeypatch.setattr("rrlib.report.exp3rt.exp3rt_cases", fake_cases)
    monkeypatch.setattr("rrlib.report.exp3rt.human_eval_pairs", lambda test, lead: [])
    (section,) = rp_exp3rt.sections(ctx)
    assert seen == [("exp3rt_zeroshot", 2)]  # the fine-tuned student leads when it was scored
    assert section.lines == ["=" * 100, "example_id: test:u2", "reasoning: too harsh"] + [
        "=" * 100,
        "example_id: test:u1",
        "reasoning: fits",
    ]
    assert section.record == {"shown_example_ids": ["test:u2", "test:u1"], "human_eval": {}}
