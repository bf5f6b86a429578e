"""The lean training loss (logits on completion positions only) equals the full-logits loss of
the same batch, in value and in gradient, with and without gradient-accumulation token counts;
on a tiny randomly initialised model with the embedded tokenizer (no download, seconds)."""

import tempfile
from pathlib import Path

import pytest

SHARED_CACHE = Path(tempfile.gettempdir()) / "rrlib-test-shared-cache"
PAIRS = [
    {
        "prompt": [
            {"role": "system", "content": "You recommend beauty products."},
            {"role": "user", "content": "Liked: a lavender shampoo. Target: an argan oil mask. Will they like it?"},
        ],
        "completion": [{"role": "assistant", "content": "Prediction: Yes\nThey like hair care with natural oils."}],
    },
    {
        "prompt": [
            {"role": "system", "content": "You recommend beauty products."},
            {"role": "user", "content": "Disliked: every perfume. Target: a perfume. Will they like it?"},
        ],
        "completion": [{"role": "assistant", "content": "Prediction: No"}],
    },
]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig

    from rrlib.finetune.sft import _sft_trainer_class
    from rrlib.llm.embedded import embedded_checkpoint

    tok = AutoTokenizer.from_pretrained(embedded_checkpoint(SHARED_CACHE))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    model = get_peft_model(
        LlamaForCausalLM(config),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", init_lora_weights=False),
    )
    args = SFTConfig(
        output_dir=str(tmp_path_factory.mktemp("loss")),
        per_device_train_batch_size=2,
        completion_only_loss=True,
        report_to="none",
        use_cpu=True,
        max_length=256,
    )
    return _sft_trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(PAIRS), processing_class=tok)


def _reference_loss(model, batch, num_items=None):
    import torch

    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    labels = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum"
    )
    return nll / (labels.ne(-100).sum() if num_items is None else num_items)


@pytest.mark.parametrize("num_items", [None, 40])
def test_completion_loss_equals_full_logits_loss(trainer, num_items):
    import torch

    model = trainer.model
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["labels"].shape[0] == 2 and (batch["labels"] == -100).any() and (batch["labels"] != -100).any()
    model.zero_grad()
    lean = trainer.compute_loss(model, dict(batch), num_items_in_batch=num_items)
    lean.backward()
    lean_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    ref = _reference_loss(model, batch, num_items)
    ref.backward()
    assert float(lean) == pytest.approx(float(ref), rel=1e-5)
    assert lean_grads and all(
        torch.allclose(p.grad, lean_grads[n], rtol=1e-4, atol=1e-7)
        for n, p in model.named_parameters()
        if p.requires_grad
    )
    assert {"entropy", "mean_token_accuracy", "num_tokens"} <= set(trainer._metrics["train"])


def test_answer_token_weight_scales_only_the_answer_token(trainer):
    """ANSWER_LOSS_WEIGHT: each row's Yes/No token counts ``w`` times; every other token once."""
    import torch

    from rrlib.finetune.data import check_prediction_position

    tok = trainer.processing_class
    offset = check_prediction_position(tok, PAIRS)
    assert offset is not None and offset >= 1  # "Prediction:" comes first
    model = trainer.model
    batch = next(iter(trainer.get_train_dataloader()))
    labels = batch["labels"]
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2).float(), labels[:, 1:], ignore_index=-100, reduction="none"
        )
    weights = labels[:, 1:].ne(-100).float()
    for row in range(labels.shape[0]):
        first = int(labels[row].ne(-100).nonzero()[0])
        answer = first + offset
        assert tok.decode([int(labels[row, answer])]).strip() in {"Yes", "No"}
        weights[row, answer - 1] = 5.0
    expected = (nll * weights).sum() / labels[:, 1:].ne(-100).sum()
    trainer.answer_offset, trainer.answer_weight = offset, 5.0
    try:
        with torch.no_grad():
            weighted = trainer.compute_loss(model, dict(batch))
    finally:
        trainer.answer_offset, trainer.answer_weight = None, 1.0
    assert float(weighted) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(
    ("task", "reasons", "weighted"), [("like", True, True), ("like", False, False), ("rating", True, False)]
)
def test_answer_weight_reaches_only_reasoning_like_students(task, reasons, weighted):
    """TALLRec's completion is all answer (and a rating student's loss is its own): only a
    reasoning like student gets ANSWER_LOSS_WEIGHT."""
    from types import SimpleNamespace

    from rrlib.finetune.sft import _weigh_answer

    cfg = SimpleNamespace(student=SimpleNamespace(answer_loss_weight=10.0))
    data = SimpleNamespace(task=task, reasons=reasons, answer_offset=3)
    trainer = SimpleNamespace(answer_offset=None, answer_weight=1.0)
    _weigh_answer(trainer, data, cfg, "test")
    assert (trainer.answer_offset, trainer.answer_weight) == ((3, 10.0) if weighted else (None, 1.0))
