"""Step 06: finetuning the students.

* :mod:`~rrlib.finetune.data` — the K-shot prompt/completion pairs (like and rating students) and
  their validation prompts;
* :mod:`~rrlib.finetune.callbacks` — validation before training (epoch 0, the base model) and after
  every epoch, early stopping, curves;
* :mod:`~rrlib.finetune.sft` — LoRA SFT with the completion-only loss (the one place a LoRA config is
  built), resumable, and :func:`train`;
* :mod:`~rrlib.finetune.store` / :mod:`~rrlib.finetune.checkpoints` — the adapter store shared by
  runs and the newest complete checkpoint to resume from;
* :mod:`~rrlib.finetune.rl` — RecPIE's explainer, tuned by its recommender's reward (GRPO).
"""

from rrlib.finetune.data import TrainingData, build_rating_conversations, multitask_pairs, token_split, training_data
from rrlib.finetune.sft import (
    RATING_TRAINING_PARAMS,
    TRAINING_PARAMS,
    check_methods,
    check_run,
    lm_head_in_fp32,
    lora_config,
    train,
    training_config,
)
from rrlib.finetune.store import publish_adapter, reuse_adapter, store_dir

__all__ = [
    "RATING_TRAINING_PARAMS",
    "TRAINING_PARAMS",
    "TrainingData",
    "build_rating_conversations",
    "check_methods",
    "check_run",
    "lm_head_in_fp32",
    "lora_config",
    "multitask_pairs",
    "publish_adapter",
    "reuse_adapter",
    "store_dir",
    "token_split",
    "train",
    "training_config",
    "training_data",
]
