"""RecPIE's reward-tuned explainer: the prompt is versioned and shows nothing from the reward
targets on, the trl reward function returns the recommender's gain, the loop resumes after a kill
without recomputing finished rounds, and (slow) one real GRPO round runs on CPU."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_recpie import FakeEncoder, text_task

from rrlib.errors import ParamError, TrainingConfigMismatch
from rrlib.finetune.rl import RLRun, RLSettings, explainer_inputs, make_reward, round_dir, rounds_log, run_explainer_rl
from rrlib.io import stable_hash
from rrlib.methods.recpie import TextFeatures, explanation_gain, fit_hybrid
from rrlib.methods.sequential import SeqConfig
from rrlib.prompts.explainer import TEMPLATE_VERSION, explainer_messages
from rrlib.prompts.items import ItemCatalog

SEQ = SeqConfig(epochs=4, patience=2, hidden=16, seed=0)


def _catalog(items):
    return ItemCatalog(titles=dict(items))


def test_prompt_is_versioned_and_pinned():
    catalog = ItemCatalog(
        titles={"a": "Rose face oil", "b": "Clay mask"},
        attributes={"a": "brand: Flora"},
        descriptions={"a": "A light oil for dry skin."},
    )
    msgs = explainer_messages([("a", True), ("b", False)], catalog, "beauty", 40)
    assert TEMPLATE_VERSION == "recpie-explainer-v1"
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert '1. "Rose face oil" (brand: Flora): A light oil for dry skin. -> liked' in msgs[1]["content"]
    assert "at most 40 words" in msgs[1]["content"]
    # any change of wording must bump TEMPLATE_VERSION (and then this hash)
    assert stable_hash(msgs, 16) == "8f104cad2417474f", stable_hash(msgs, 16)
    with pytest.raises(ValueError, match="history is empty"):
        explainer_messages([], catalog, "beauty", 40)
    from rrlib.prompts.teacher import DOMAINS

    for domain in DOMAINS:  # every domain renders (the smoke's instruments once raised a KeyError)
        assert (
            "You are a recommender system for" in explainer_messages([("a", True)], catalog, domain, 40)[0]["content"]
        )


def test_the_evaluated_users_are_explained_first():
    inter, ex, users, items = text_task(n_users=30)
    everyone = sorted(inter["user_id"].astype(str).unique())
    first = everyone[3:9]
    s = RLSettings(n_users=10, reward_targets=2, explain_history=3, seed=4)
    picked = explainer_inputs(inter, _catalog(items), "beauty", s, with_description=False, first=first).users
    assert set(first) <= set(picked) and len(picked) == 10
    few = RLSettings(n_users=4, reward_targets=2, explain_history=3, seed=4)
    assert set(
        explainer_inputs(inter, _catalog(items), "beauty", few, with_description=False, first=first).users
    ) < set(first)


def test_explainer_sees_only_interactions_before_the_reward_targets():
    inter, ex, users, items = text_task(n_users=30)
    s = RLSettings(n_users=10, reward_targets=2, explain_history=3, seed=4)
    inputs = explainer_inputs(inter, _catalog(items), "beauty", s, with_description=False)
    assert len(inputs.users) == 10 and inputs.users == sorted(inputs.users)
    assert explainer_inputs(inter, _catalog(items), "beauty", s, with_description=False).users == inputs.users
    for u in inputs.users:
        seq = inter[inter["user_id"] == u].sort_values("position")
        end = len(seq) - 2 - 2  # valid target at len-2; two reward targets before it
        assert inputs.available_from[u] == end
        text = inputs.messages[u][1]["content"]
        shown = [i for i in seq["item_id"] if f'"{items[i]}"' in text]
        assert shown == seq["item_id"].iloc[end - 3 : end].tolist()  # the 3 steps right before the reward targets
    with pytest.raises(ParamError, match="fuses no user text"):
        RLSettings(recommender="recpie_item_text")


def test_reward_function_is_the_recommenders_gain():
    inter, ex, users, items = text_task(n_users=80, text_from=-2, seed=2)
    enc = FakeEncoder()
    ids = sorted(users)[:4]
    avail = {u: users[u].available_from for u in ids}
    feats = TextFeatures.encode(users, items, enc)
    fitted = fit_hybrid("recpie_hybrid", inter, ex, feats, SEQ, held_out=avail, progress=False)
    reward = make_reward(fitted, avail, enc)
    texts = [users[u].text for u in ids[:3]] + ["   "]
    got = reward(
        prompts=[None] * 4,
        completions=[[{"role": "assistant", "content": t}] for t in texts],
        user_id=ids,
        trainer_state=None,
    )
    expected = explanation_gain(fitted, ids[:3], enc.encode(texts[:3]), avail)
    np.testing.assert_allclose(got[:3], expected, atol=1e-7)
    assert got[3] == 0.0  # a blank explanation adds nothing
    with pytest.raises(ValueError, match="user ids"):
        reward(completions=["x", "y"], user_id=ids[:1])


class FakeExplainer:
    """Writes the true 'wants dry/oily skin' text once it has been updated at least once (its
    'skill' is carried by the saved adapter); before that a vague text. Can fail on an update."""

    def __init__(self, truth: dict[str, str], fail_on_update: int | None = None):
        self.truth, self.fail = truth, fail_on_update
        self.skill, self.updates, self.loads = 0, 0, []

    def identity(self):
        return {"model": "fake-explainer"}

    def load(self, adapter):
        self.loads.append(adapter)
        self.skill = int((adapter / "skill.txt").read_text()) if adapter is not None else 0

    def generate(self, messages):
        return {u: (self.truth[u] if self.skill else "likes skincare products") for u in messages}

    def update(self, inputs, reward, *, round_no, work_dir):
        self.updates += 1
        if self.fail is not None and self.updates == self.fail:
            raise RuntimeError(f"simulated kill in round {round_no}")
        r = reward(completions=[self.truth[u] for u in inputs.users], user_id=inputs.users)
        self.skill += 1
        return {
            "reward_mean": float(np.mean(r)),
            "reward_std": float(np.std(r)),
            "kl": 0.01 * round_no,
            "loss": 0.0,
            "update_seconds": 0.0,
            "step_seconds": 0.0,
            "steps": [],
        }

    def save(self, folder):
        folder.mkdir(parents=True)
        (folder / "skill.txt").write_text(str(self.skill))
        (folder / "adapter_config.json").write_text("{}")


def _run(tmp_path, explainer, settings, data):
    inter, ex, users, items = data
    inputs = explainer_inputs(inter, _catalog(items), "beauty", settings, with_description=False)
    return RLRun(
        tmp_path / "rl",
        inter,
        ex,
        items,
        inputs,
        explainer,
        FakeEncoder(),
        settings,
        SEQ,
        explanations_out=tmp_path / "explanations.parquet",
    )


def test_loop_resumes_after_a_kill_without_recomputing_finished_rounds(tmp_path):
    data = text_task(n_users=120, seed=3)  # enough users that the true texts help out of sample
    truth = {u: t.text for u, t in data[2].items()}
    settings = RLSettings(rounds=3, n_users=0, reward_targets=2, explain_history=4, seed=1)

    crashing = FakeExplainer(truth, fail_on_update=2)
    with pytest.raises(RuntimeError, match="simulated kill in round 2"):
        run_explainer_rl(_run(tmp_path, crashing, settings, data))
    out = tmp_path / "rl"
    assert [r["round"] for r in rounds_log(out)] == [0, 1]
    assert (round_dir(out, 1) / "adapter" / "skill.txt").is_file() and not round_dir(out, 2).exists()
    assert not list(out.glob(".round_*"))  # the half-built round was removed
    stamp = {f: (round_dir(out, 1) / f).stat().st_mtime_ns for f in ("recommenders.pt", "explanations.parquet")}

    resumed = FakeExplainer(truth)
    log = run_explainer_rl(_run(tmp_path, resumed, settings, data))
    assert resumed.updates == 2  # rounds 2 and 3 only; round 1 was not recomputed
    assert resumed.loads[0] == round_dir(out, 1) / "adapter"  # round 2 starts from round 1's explainer
    assert {f: (round_dir(out, 1) / f).stat().st_mtime_ns for f in stamp} == stamp
    assert [r["round"] for r in log] == [0, 1, 2, 3]
    assert len((out / "log.jsonl").read_text().splitlines()) == 4
    assert all(r["kl"] is not None for r in log[1:])
    # round 1 is rewarded by round 0's recommenders, fitted on vague texts: its sign means nothing;
    # from round 2 on the recommenders learned the true texts, which then help on held-out targets
    assert all(r["reward_mean"] > 0 for r in log[2:]) and log[1]["heldout_gain_mean"] > 0
    assert log[1]["valid_auc"] > log[0]["valid_auc"] + 0.1  # vague texts -> true texts
    final = pd.read_parquet(tmp_path / "explanations.parquet")
    assert set(final["round"]) == {3} and final["explanation"].tolist() == [truth[u] for u in final["user_id"]]

    # killed after a round's folder was renamed into place but before its log line: reconciled
    lines = (out / "log.jsonl").read_text().splitlines()
    (out / "log.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    idle = FakeExplainer(truth)
    assert [r["round"] for r in run_explainer_rl(_run(tmp_path, idle, settings, data))] == [0, 1, 2, 3]
    assert idle.updates == 0 and idle.loads == []

    with pytest.raises(TrainingConfigMismatch, match="settings"):
        run_explainer_rl(
            _run(
                tmp_path,
                FakeExplainer(truth),
                RLSettings(rounds=3, n_users=0, reward_targets=2, explain_history=4, seed=1, kl_beta=0.5),
                data,
            )
        )


def test_every_reward_is_scored_by_a_recommender_that_never_trained_on_its_targets(tmp_path):
    """Cross-fitting (issue 20): each rewarded user's reward targets are absent from the training
    data of the recommender that rewards it (its fold's), and present in the other fold's (which
    is how explanations are learned); an in-sample reward fails."""
    import torch

    from rrlib.errors import LeakageError
    from rrlib.methods.recpie import restore_hybrid, reward_positions

    data = text_task(n_users=120, seed=3)
    inter, ex, users, items = data
    truth = {u: t.text for u, t in users.items()}
    settings = RLSettings(rounds=2, n_users=0, reward_targets=2, explain_history=4, seed=1, reward_folds=3)
    run = _run(tmp_path, FakeExplainer(truth), settings, data)
    log = run_explainer_rl(run)
    saved = torch.load(round_dir(tmp_path / "rl", 0) / "recommenders.pt", weights_only=False)
    folds = saved["folds"]
    assert sorted(folds) == run.inputs.users and sorted(set(folds.values())) == [0, 1, 2]
    models = [restore_hybrid(state, inter, TextFeatures.encode({}, items, FakeEncoder())) for state in saved["states"]]
    trained = [set(zip(*m.data.training_positions())) for m in models]
    for u, f in folds.items():
        targets = {(u, p) for p in reward_positions(models[f].data, u, run.inputs.available_from[u])}
        assert targets and not targets & trained[f], f"user {u}: a reward target is in its recommender's training data"
        assert all(targets <= trained[g] for g in range(3) if g != f)
    assert log[2]["reward_mean"] > 0 and log[1]["heldout_gain_mean"] > 0  # true texts help out of sample too
    # the guard itself: the fold-0 recommender cannot reward a fold-1 user
    u1 = next(u for u, f in folds.items() if f == 1)
    reward = make_reward(models[0], run.inputs.available_from, FakeEncoder())
    with pytest.raises(LeakageError, match="training data"):
        reward(completions=[truth[u1]], user_id=[u1])
    fine = make_reward(models, run.inputs.available_from, FakeEncoder(), folds=folds)
    assert np.isfinite(fine(completions=[truth[u1]], user_id=[u1])).all()


def test_every_evaluated_user_is_explained_in_the_first_and_last_rounds(tmp_path):
    """Coverage (issue 20): the evaluated users are explained even when RECPIE_RL_USERS rewards
    fewer; intermediate rounds explain the rewarded users only."""
    data = text_task(n_users=40, seed=4)
    inter, ex, users, items = data
    truth = {u: t.text for u, t in users.items()}
    evaluated = sorted(users)[:12]
    settings = RLSettings(rounds=2, n_users=6, reward_targets=2, explain_history=4, seed=2)
    inputs = explainer_inputs(inter, _catalog(items), "beauty", settings, with_description=False, first=evaluated)
    assert len(inputs.users) == 6 and set(inputs.users) < set(evaluated) and inputs.explained == evaluated

    class Recording(FakeExplainer):
        calls: list = []

        def generate(self, messages):
            self.calls.append(sorted(messages))
            return super().generate(messages)

    rec = Recording(truth)
    run = RLRun(tmp_path / "rl", inter, ex, items, inputs, rec, FakeEncoder(), settings, SEQ, tmp_path / "e.parquet")
    log = run_explainer_rl(run)
    assert rec.calls == [evaluated, inputs.users, evaluated]
    final = pd.read_parquet(tmp_path / "e.parquet")
    assert sorted(final["user_id"]) == evaluated and final["explanation"].str.strip().ne("").all()
    assert final.set_index("user_id")["rewarded"].sum() == 6
    assert [r["n_evaluated_explained"] for r in log] == [6, 0, 6]


SHARED_CACHE = Path(tempfile.gettempdir()) / "rrlib-test-shared-cache"  # as tests/test_finetune.py


@pytest.mark.slow
def test_one_grpo_round_on_cpu(tmp_path):
    """One real round: trl's GRPOTrainer updates a LoRA on the embedded student from the
    recommender's reward; reward, KL and times are logged; a rerun recomputes nothing."""
    from rrlib.config.params import Config
    from rrlib.finetune.rl import GRPOExplainer

    inter, ex, users, items = text_task(n_users=30, seed=5)
    short = {i: f"{'dry' if 'dry' in t else 'oily'} skin cream" for i, t in items.items()}
    cfg = Config.full({"CACHE_DIR": str(SHARED_CACHE), "SEED": 3})
    settings = RLSettings(
        rounds=1,
        steps=1,
        prompts_per_step=1,
        num_generations=2,
        max_completion_tokens=8,
        n_users=2,
        reward_targets=2,
        explain_history=2,
        words=10,
        seed=3,
        learning_rate=1e-4,
    )
    inputs = explainer_inputs(inter, _catalog(short), "beauty", settings, with_description=False)
    run = RLRun(tmp_path / "rl", inter, ex, short, inputs, GRPOExplainer(cfg, settings), FakeEncoder(), settings, SEQ)
    log = run_explainer_rl(run)
    assert [r["round"] for r in log] == [0, 1]
    r1 = log[1]
    assert np.isfinite(r1["reward_mean"]) and r1["kl"] is not None and r1["step_seconds"] > 0
    assert len(r1["steps"]) == 1 and r1["steps"][0]["completions/mean_length"] <= 8
    adapter = round_dir(tmp_path / "rl", 1) / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    table = pd.read_parquet(round_dir(tmp_path / "rl", 1) / "explanations.parquet")
    assert table["explanation"].str.strip().str.len().gt(0).all()
    again = GRPOExplainer(cfg, settings)
    assert (
        run_explainer_rl(RLRun(tmp_path / "rl", inter, ex, short, inputs, again, FakeEncoder(), settings, SEQ)) == log
    )
    assert again.model is None  # nothing was loaded, generated or trained


def test_notebook_path_resumes_from_the_run_folder_and_feeds_recpie_rl(tmp_path, monkeypatch):
    """Notebook 06's path (rl_run_for on RUN_DIR, then run_explainer_rl) keeps finished rounds after a
    kill; its explanations are what recpie_rl of notebook 07 fuses; the round log table/plot work."""
    from types import SimpleNamespace

    from rrlib.config.params import Config
    from rrlib.config.paths import RunPaths
    from rrlib.finetune.rl import needs_rl, plot_rounds, rl_run_for, rounds_table
    from rrlib.methods import registry

    inter, ex, users, items = text_task(n_users=50, seed=6)
    truth = {u: t.text for u, t in users.items()}
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
    cfg = Config.full(
        {
            "RUN_DIR": str(paths.root),
            "RECPIE_RL_ROUNDS": 2,
            "RECPIE_RL_USERS": 0,
            "RECPIE_EPOCHS": 4,
            "RECPIE_PATIENCE": 2,
            "RECPIE_HIDDEN": 16,
            "RECPIE_EXPLAIN_HISTORY": 4,
            "EVAL_METHODS": ["user_like_rate", "recpie_rl"],
        }
    )
    assert needs_rl(cfg) and not needs_rl(Config.full({"EVAL_METHODS": ["recpie_hybrid"]}))
    assert needs_rl(Config.full({"EVAL_METHODS": ["recpie_hybrid"], "RECPIE_USER_TEXT": "explanations"}))

    def run(explainer):
        return run_explainer_rl(rl_run_for(cfg, paths, tables, "beauty", explainer=explainer, encoder=FakeEncoder()))

    with pytest.raises(RuntimeError, match="simulated kill in round 2"):
        run(FakeExplainer(truth, fail_on_update=2))
    assert [r["round"] for r in rounds_log(paths.explainer_rl)] == [0, 1] and not paths.explainer_texts.exists()
    resumed = FakeExplainer(truth)
    log = run(resumed)
    assert resumed.updates == 1 and [r["round"] for r in log] == [0, 1, 2]  # only round 2 was computed
    table = rounds_table(log)
    assert table["round"].tolist() == [0, 1, 2] and pd.isna(table.loc[0, "reward_mean"])
    assert table["valid_auc"].between(0, 1).all() and (table.loc[1:, "kl"] >= 0).all()
    fig = plot_rounds(log, paths.explainer / "rounds.png")
    assert len(fig.axes) == 3 and (paths.explainer / "rounds.png").stat().st_size > 0

    monkeypatch.setattr("rrlib.methods.recpie.default_encoder", lambda cache_dir: FakeEncoder())
    test = ex[ex["split"] == "test"]
    rows, info = registry.implementation("recpie_rl")(["recpie_rl"], tables, test, cfg)
    final = pd.read_parquet(paths.explainer_texts)
    assert set(final["round"]) == {2} and info["recpie_rl"]["eval_text_coverage"]["user_text"] == 1.0
    assert (rows.set_index("user_id").loc[final["user_id"], "reasoning"] == final["explanation"].tolist()).all()

    # notebook 07: faithfulness of the explanations against what the explainer saw; blind sheets
    from rrlib.evaluate.faithfulness import explanation_quality
    from rrlib.evaluate.families import EvaluationContext
    from rrlib.evaluate.human_eval import export_human_eval
    from rrlib.evaluate.plan import EvaluationPlan
    from rrlib.evaluate.recpie import explainer_section, explanation_comparisons
    from rrlib.finetune.rl import explainer_known_texts, round_explanations, write_prompts
    from rrlib.report.recpie import largest_shifts, load_score_shift, plot_score_shift, score_shift_summary

    write_prompts(
        rl_run_for(cfg, paths, tables, "beauty", explainer=FakeExplainer(truth), encoder=FakeEncoder()),
        paths.explainer_prompts,
    )
    known = explainer_known_texts(pd.read_parquet(paths.explainer_prompts), test)
    assert set(known) == set(test["example_id"]) and all("Recent" in t or t for t in known.values())
    quality = explanation_quality(rows, known)
    assert quality["method"].tolist() == ["recpie_rl"] and quality.loc[0, "n_reasoning"] == len(final)
    round0 = round_explanations(paths.explainer_rl, 0)
    comp = explanation_comparisons(rows, round0, ex, tables.items.assign(attributes=""), n_examples=5, seed=1)
    assert len(comp.sheet) == 5 and set(comp.key["method_2"]) == {"recpie_rl_round0"}
    assert "recpie_rl" not in comp.sheet.to_csv()  # blind
    vague = (comp.sheet["explanation_a"] == "likes skincare products").astype(int) + (
        comp.sheet["explanation_b"] == "likes skincare products"
    )
    assert (vague == 1).all()  # one side is round 0's vague text, the other the tuned one
    files = export_human_eval(comp, paths.evaluate / "human_eval_recpie")
    assert files["sheet_csv"].is_file()
    # the same through RecPIE's view of notebook 07 (rrlib.evaluate.families)
    scored = rows.assign(task="like")
    ctx = EvaluationContext(
        cfg=cfg,
        paths=paths,
        plan=EvaluationPlan(fitted={"rrlib.methods.recpie:predict": ["recpie_rl"]}),
        data=tables,  # type: ignore[arg-type]
        test=test,
        predictions=scored,
        scored=scored,
        evaluation=None,  # type: ignore[arg-type]
        baseline_info=info,
        contexts={},
        domain="beauty",
    )
    section = explainer_section(ctx)
    assert section is not None and section.record["coverage"] == info["recpie_rl"]["coverage"]
    pd.testing.assert_frame_equal(pd.DataFrame(section.record["explanations"]["quality"]), quality)
    assert section.record["explanations"]["human_eval"]["sheet_html"] == "evaluate/human_eval_recpie/sheet.html"
    assert (paths.evaluate / "recpie_explanation_quality.csv").is_file() and "blind questions" in section.lines[-1]

    # notebook 08: how the explanation moved the score
    shift = load_score_shift(paths.explainer_score_shift)
    summary = score_shift_summary(shift)
    assert summary.loc[0, "n_shown"] == len(final) and summary.loc[0, "toward_label_share"] > 0.5
    assert summary.loc[0, "logloss_with"] < summary.loc[0, "logloss_without"]  # true texts help on test too
    top = largest_shifts(shift, "recpie_rl", n=3)
    assert len(top) == 3 and top["delta"].abs().is_monotonic_decreasing and top["user_text"].str.len().gt(0).all()
    assert (
        plot_score_shift(shift, "recpie_rl", paths.inspect / "shift.png").axes
        and (paths.inspect / "shift.png").is_file()
    )
