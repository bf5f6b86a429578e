"""Tiny end-to-end LoRA finetune of the embedded student on CPU, on real embedded data:
adapter saved and reloaded, probabilities in [0, 1] that vary, AUC and BERTScore against real
labels and references; resume after an interruption; skip of a finished run; config guard; a
warm rerun in a new run folder reuses the stored adapter, scores and generations without
loading the model.

The enrichment tables (descriptions, profiles, reasoning) that notebooks 02-05 would write
with the teacher LLM are built here from the real review texts of the same data, so the run
needs no teacher generation."""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from audit_example import EMBEDDED_BEAUTY

from rrlib.config.params import Config, load_params
from rrlib.config.paths import RunPaths
from rrlib.student.prompts import PromptContext

pytestmark = pytest.mark.slow

#: built once per machine and shared by test sessions (de-quantizing takes ~20 s)
SHARED_CACHE = Path(tempfile.gettempdir()) / "rrlib-test-shared-cache"
# Small and fast on 2 CPU cores: 4 training examples, 2 epochs, 6 validation examples. "Liked" is
# 5 stars here (LIKE_THRESHOLD 4) so that tiny samples hold both labels (at > 3 about 95% are liked).
TEST_OVERRIDES = dict(
    EMBEDDED_BEAUTY,
    MAX_USERS=40,
    LIKE_THRESHOLD=4.0,
    N_VALID=6,
    N_TEST=0,
    KSHOT_SIZES=[4],
    TRAIN_KSHOTS=[4],
    HISTORY_LEN=2,
    PROFILE_ITEMS=3,
    MAX_EPOCHS=2,
    MAX_SEQ_LENGTH=512,
    TRAIN_BATCH_SIZE=2,
    GRAD_ACCUM_STEPS=2,
    N_VALID_EVAL=6,
    LEARNING_RATE=1e-3,
    REASONING_MAX_NEW_TOKENS=12,
    PREDICT_BATCH_SIZE=8,
    SEED=7,
)


def _words(text: str, n: int) -> str:
    return " ".join(str(text).split()[:n])


def _link_embedded_model(cache_dir: Path) -> None:
    from rrlib.llm.embedded import embedded_checkpoint

    shared = embedded_checkpoint(SHARED_CACHE)
    (cache_dir / "models").mkdir(parents=True, exist_ok=True)
    link = cache_dir / "models" / shared.name
    if not link.exists():
        os.symlink(shared, link)


def _write_enrichment(paths: RunPaths, k_max: int) -> pd.DataFrame:
    """Descriptions, profiles and reasoning from the real reviews; returns the test references."""
    from rrlib.data import kshot, load_tables

    t = load_tables(paths)
    reviews = t.interactions.set_index(["user_id", "item_id"])["review_text"].to_dict()
    desc = pd.DataFrame(
        {
            "item_id": t.items["item_id"],
            "description": [
                _words(" ".join(r["text"] for r in revs[:2]) or title, 15)
                for revs, title in zip(t.items["sampled_reviews"], t.items["title"])
            ],
        }
    )
    desc["source"], desc["status"] = "generated", "ok"
    desc.loc[desc.index[:2], ["description", "status"]] = ["", "empty"]  # missing descriptions are tolerated
    desc["n_words"] = desc["description"].str.split().str.len()
    desc.to_parquet(paths.item_descriptions)
    prof_rows = []
    for i, u in enumerate(t.users.itertuples()):
        if i % 5 == 0:  # some users without a profile
            prof_rows.append((u.user_id, "", "no_history", "no_history"))
            continue
        titles = dict(zip(t.items["item_id"], t.items["title"]))
        liked = [titles[x] for x, like in zip(u.profile_item_ids, u.profile_liked) if like]
        disliked = [titles[x] for x, like in zip(u.profile_item_ids, u.profile_liked) if not like]
        prof_rows.append(
            (
                u.user_id,
                _words(
                    f"Liked: {'; '.join(liked) or 'nothing yet'}. Disliked: {'; '.join(disliked) or 'nothing yet'}.", 30
                ),
                "generated",
                "ok",
            )
        )
    prof = pd.DataFrame(prof_rows, columns=["user_id", "profile", "source", "status"])
    prof["n_words"] = prof["profile"].str.split().str.len()
    prof.to_parquet(paths.user_profiles)

    def reference(row) -> str:
        text = reviews.get((row.user_id, row.target_item_id), "") or "no review text"
        verdict = "liked" if row.label else "disliked"
        return f"The customer {verdict} this product. In their own words: {_words(text, 30)}"

    train = kshot(t.examples, k_max)
    reasoning = pd.DataFrame(
        {
            "example_id": train["example_id"],
            "method": "reasoningrec",
            "label": train["label"],
            "reasoning": [reference(r) for r in train.itertuples()],
            "status": "ok",
        }
    )
    reasoning["n_words"] = reasoning["reasoning"].str.split().str.len()
    paths.reasoning.parent.mkdir(parents=True, exist_ok=True)
    reasoning.to_parquet(paths.reasoning)
    test = t.examples[t.examples["split"] == "test"]
    return pd.DataFrame({"example_id": test["example_id"], "reference": [reference(r) for r in test.itertuples()]})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from rrlib.data import prepare

    root = tmp_path_factory.mktemp("finetune")
    params = load_params(overrides=dict(TEST_OVERRIDES, RUN_DIR=str(root / "run"), CACHE_DIR=str(root / "cache")))
    paths = RunPaths.of(root / "run")
    _link_embedded_model(root / "cache")
    prepare(params, paths, progress=False)
    references = _write_enrichment(paths, max(params["KSHOT_SIZES"]))
    return Config(params), paths, references


def _ctx(paths: RunPaths, method: str) -> PromptContext:
    return PromptContext.from_run(paths, "beauty", method)


class _Interrupt(RuntimeError):
    pass


def _interrupt_after_first_save():
    from transformers import TrainerCallback

    class InterruptAfterEpoch1(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.epoch is not None and round(state.epoch) == 1:
                raise _Interrupt("simulated crash after the epoch-1 checkpoint")

    return InterruptAfterEpoch1()


@pytest.fixture(scope="module")
def trained(run):
    """reasoningrec K=4 for 2 epochs, interrupted after epoch 1's checkpoint, then rerun."""
    from rrlib.finetune import train

    cfg, paths, _ = run
    out = paths.adapter_dir("reasoningrec", 4)
    ctx = _ctx(paths, "reasoningrec")
    with pytest.raises(_Interrupt):
        train("reasoningrec", 4, cfg, paths, ctx, callbacks=[_interrupt_after_first_save()])
    after_crash = {
        "checkpoints": sorted(c.name for c in (out / "checkpoints").glob("checkpoint-*")),
        "finished": (out / "training_summary.json").exists(),
        "adapter": (out / "adapter").exists(),
    }
    summary = train("reasoningrec", 4, cfg, paths, ctx)
    return after_crash, summary


def test_resume_from_checkpoint_after_interruption(run, trained):
    cfg, paths, _ = run
    after_crash, summary = trained
    out = paths.adapter_dir("reasoningrec", 4)
    assert after_crash == {"checkpoints": ["checkpoint-1"], "finished": False, "adapter": False}
    assert summary["status"] == "resumed" and summary["epochs_run"] == 2 and summary["global_step"] == 2
    state = json.loads((out / "trainer_state.json").read_text())
    # epoch 0 (the base model) is validated before the first update; epoch 1 is not redone
    assert [h["epoch"] for h in state["log_history"] if "valid_auc" in h] == [0, 1, 2]
    # one optimizer step per epoch: 4 examples = 2 micro-batches of 2, accumulated
    assert len([h for h in state["log_history"] if "loss" in h]) == 2
    assert all(np.isfinite(h["loss"]) and h["loss"] > 0 for h in state["log_history"] if "loss" in h)
    assert summary["train_tokens"] > 0  # only this session's epoch is counted
    best = summary["best_epoch"]
    assert summary["best_valid_auc"] == max(summary["valid_auc"]) == summary["valid_auc"][best]
    assert summary["best_checkpoint"].endswith("base-epoch-0" if best == 0 else f"checkpoint-{best}")
    assert summary["best_step"] == best  # one update per epoch here
    assert (out / "checkpoints" / "base-epoch-0" / "adapter_model.safetensors").is_file()


def test_finished_run_is_not_retrained_and_config_changes_are_refused(run, trained):
    from rrlib.errors import TrainingConfigMismatch
    from rrlib.finetune import train

    cfg, paths, _ = run
    ctx = _ctx(paths, "reasoningrec")
    assert train("reasoningrec", 4, cfg, paths, ctx)["status"] == "already_trained"
    with pytest.raises(TrainingConfigMismatch, match="LEARNING_RATE"):
        train("reasoningrec", 4, Config(dict(cfg.params, LEARNING_RATE=5e-4)), paths, ctx)


def _test_examples(paths: RunPaths, n: int = 4) -> pd.DataFrame:
    ex = pd.read_parquet(paths.examples)
    test = ex[ex["split"] == "test"].sort_values("sample_rank")
    neg, pos = test[test["label"] == 0], test[test["label"] == 1]
    assert len(neg) >= 2, "the test split should hold disliked targets"
    return pd.concat([neg.head(n // 2), pos.head(n - n // 2)])


def test_tiny_end_to_end_finetune_predict_and_score(run, trained):
    from bert_score import score as bertscore
    from peft import PeftModel
    from sklearn.metrics import roc_auc_score

    from rrlib.evaluate.llm import predict_llm
    from rrlib.llm.embedded import embedded_bertscore_model
    from rrlib.predictions import PREDICTION_COLUMNS
    from rrlib.student import student_backend

    cfg, paths, references = run
    _, summary = trained
    out = paths.adapter_dir("reasoningrec", 4)
    assert summary["n_train"] == 4 and summary["n_valid_eval"] == 6
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    for name in ("train_config.json", "trainer_state.json", "curves.png", "curves.csv", "training_summary.json"):
        assert (out / name).is_file(), name
    assert 0.0 <= summary["best_valid_auc"] <= 1.0
    # epoch 0 is the base model, validated before any update: it has no training loss
    assert summary["tokens_per_s"] > 0 and np.isnan(summary["train_loss"][0])
    assert np.isfinite(summary["train_loss"][1:]).all()
    assert 0 < summary["trainable_params"] < summary["total_params"] / 50  # LoRA on q/v only

    # the adapter reloads onto a fresh base model; its LoRA B weights are trained (non-zero) unless
    # validation chose the base model (epoch 0, B = 0)
    reloaded = PeftModel.from_pretrained(student_backend(cfg).model, str(out / "adapter"))
    lora_b = [p for n, p in reloaded.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().sum()) > 0 for p in lora_b) == (summary["best_epoch"] > 0)
    del reloaded

    examples = _test_examples(paths)
    pred = predict_llm("reasoningrec", 4, examples, cfg, _ctx(paths, "reasoningrec"), out)
    assert list(pred.columns) == list(PREDICTION_COLUMNS) and len(pred) == len(examples)
    assert pred["p_yes"].between(0, 1).all() and pred["p_yes"].std() > 1e-4
    assert set(pred["predicted_label"]) <= {0, 1} and pred["format_ok"].dtype == bool
    stats = pred.attrs["stats"]
    assert stats["scores_computed"] == len(examples) and stats["n_format_bad"] == int((~pred["format_ok"]).sum())
    assert stats["model_identity"]["adapter_sha256"]

    auc = roc_auc_score(pred["label"], pred["p_yes"])
    assert 0.0 <= auc <= 1.0
    refs = pred.merge(references, on="example_id")["reference"].tolist()
    cands = [r if r.strip() else g for r, g in zip(pred["reasoning"], pred["generated_text"])]
    _, _, f1 = bertscore(
        [c or "(empty)" for c in cands],
        refs,
        model_type=str(embedded_bertscore_model()),
        num_layers=6,
        lang="en",
        verbose=False,
    )
    assert len(f1) == len(pred) and -1.0 <= float(f1.min()) <= float(f1.max()) <= 1.0

    # a second call is answered from the caches; the base model (zero-shot) scores differ unless
    # validation kept the base model (epoch 0)
    again = predict_llm("reasoningrec", 4, examples, cfg, _ctx(paths, "reasoningrec"), out)
    assert again.attrs["stats"]["scores_cached"] == len(examples)
    assert again.attrs["stats"]["generation"]["cached"] == len(examples)
    pd.testing.assert_frame_equal(again, pred)
    base = predict_llm("zeroshot_reasoningrec", 0, examples, cfg, _ctx(paths, "zeroshot_reasoningrec"), None)
    assert base.attrs["stats"]["scores_computed"] == len(examples)
    same = np.allclose(base["p_yes"].to_numpy(), pred["p_yes"].to_numpy())
    assert same == (summary["best_epoch"] == 0)


def test_warm_rerun_in_a_new_run_folder_loads_no_model(run, trained, tmp_path, monkeypatch):
    """Same parameters and CACHE_DIR, new run folder: the adapter comes from the store and the
    scores and generations from their caches; the model is never loaded."""
    import shutil

    import rrlib.llm.local
    import rrlib.student.model
    from rrlib.evaluate.llm import predict_llm
    from rrlib.finetune import store_dir, train

    cfg, paths, _ = run
    _, summary = trained
    examples = _test_examples(paths)
    first = predict_llm(
        "reasoningrec", 4, examples, cfg, _ctx(paths, "reasoningrec"), paths.adapter_dir("reasoningrec", 4)
    )
    stored = store_dir(cfg, summary["config_hash"])
    assert (stored / "adapter" / "adapter_model.safetensors").is_file()

    new = RunPaths.of(tmp_path / "run2")  # notebooks 01-04 of the new run: the same files
    for sub in ("data", "enrich", "reasoning"):
        shutil.copytree(paths.root / sub, new.root / sub, dirs_exist_ok=True)
    cfg2 = Config(dict(cfg.params, RUN_DIR=str(new.root)))

    def no_model(*args, **kwargs):
        raise AssertionError("a warm rerun must not load the student model")

    monkeypatch.setattr(rrlib.student.model, "load_model_and_tokenizer", no_model)
    monkeypatch.setattr(rrlib.llm.local, "load_model_and_tokenizer", no_model)
    reused = train("reasoningrec", 4, cfg2, new, _ctx(new, "reasoningrec"))
    out2 = new.adapter_dir("reasoningrec", 4)
    assert reused["status"] == "reused" and reused["config_hash"] == summary["config_hash"]
    assert reused["adapter_dir"] == str(out2) and reused["best_valid_auc"] == summary["best_valid_auc"]
    assert (out2 / "adapter" / "adapter_model.safetensors").read_bytes() == (
        paths.adapter_dir("reasoningrec", 4) / "adapter" / "adapter_model.safetensors"
    ).read_bytes()
    assert train("reasoningrec", 4, cfg2, new, _ctx(new, "reasoningrec"))["status"] == "already_trained"
    again = predict_llm("reasoningrec", 4, examples, cfg2, _ctx(new, "reasoningrec"), out2)
    assert again.attrs["stats"]["scores_computed"] == 0 and again.attrs["stats"]["generation"]["generated"] == 0
    pd.testing.assert_frame_equal(again, first)


def test_prediction_only_method_and_bad_calls(run):
    from rrlib.evaluate.llm import predict_llm

    cfg, paths, _ = run
    examples = _test_examples(paths)
    ctx = _ctx(paths, "zeroshot_vanilla")
    pred = predict_llm("zeroshot_vanilla", 0, examples, cfg, ctx, None)
    assert (pred["reasoning"] == "").all() and pred["p_yes"].between(0, 1).all()
    # no text is generated: the answer format is read from the scoring pass's greedy tokens
    assert (pred["generated_text"] == "").all() and pred.attrs["stats"]["n_generated"] == 0
    assert pred.attrs["stats"]["n_format_from_scoring"] == len(examples)
    lines = Config(dict(cfg.params, GENERATE_PREDICTION_LINES=True))
    generated = predict_llm("zeroshot_vanilla", 0, examples, lines, ctx, None)
    assert generated["generated_text"].str.split().str.len().max() <= 8
    assert generated.attrs["stats"]["n_generated"] == len(examples)
    # the greedy line, as generated, follows the format exactly where the scoring pass said so
    assert generated["format_ok"].tolist() == pred["format_ok"].tolist()
    np.testing.assert_allclose(generated["p_yes"], pred["p_yes"])
    with pytest.raises(ValueError, match="pass its adapter folder"):
        predict_llm("tallrec", 4, examples, cfg, _ctx(paths, "tallrec"), None)
    with pytest.raises(FileNotFoundError, match="no finished LoRA adapter"):
        predict_llm("tallrec", 4, examples, cfg, _ctx(paths, "tallrec"), paths.adapter_dir("tallrec", 4))
    with pytest.raises(ValueError, match="lacks column"):
        predict_llm("zeroshot_vanilla", 0, examples.drop(columns="history_liked"), cfg, ctx, None)
