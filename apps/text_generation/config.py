"""Text generation settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig
from core.data import SHARED_DATASETS

SHAKESPEARE = SHARED_DATASETS / "tiny_shakespeare" / "input.txt"  # the bench corpus (absent on user machines)
# The TF text-generation tutorial's model and batch shape, shared by the bench preset and its anchor.
TUTORIAL_SHAPE: dict[str, Any] = {"arch": "gru", "embedding_dim": 256, "rnn_units": 1024, "rnn_layers": 1,
                                  "seq_len": 100, "batch_size": 64, "dropout": 0.0}


@dataclasses.dataclass
class Config(BaseConfig):
    arch: str = "gpt"  # gpt: decoder-only Transformer | gru: recurrent alternative
    seq_len: int = 128  # characters per training window; also the GPT's context length
    # GPT
    dim: int = 128
    num_layers: int = 4
    num_heads: int = 4
    ff_dim: int = 512
    dropout: float = 0.1
    # GRU (arch=gru)
    embedding_dim: int = 256
    rnn_units: int = 1024
    rnn_layers: int = 1
    # Optimisation
    weight_decay: float = 0.1
    warmup_steps: int = 100
    min_lr_fraction: float = 0.1  # the cosine ends here (a fraction of learning_rate), with the run or its budget
    clipnorm: float = 1.0
    # Data
    max_vocab: int = 256  # most frequent characters of the training text; rarer ones map to [UNK]
    max_chars: int = 0  # 0: the whole corpus; otherwise its first max_chars characters
    eval_stride: int = 0  # held-out scoring: windows every N chars, each scores its last N (0: seq_len // 2)
    train_stride: int = 0  # distance between training windows (0: seq_len); each epoch jitters them
    val_fraction: float = 0.05  # taken from the end of the text, before the test tail
    test_fraction: float = 0.05  # the tail of the text
    # Generation (defaults of the `complete` endpoint and predict(); serving_default's top_p)
    max_new_tokens: int = 200
    max_generate: int = 2000  # hard bound of the in-graph decoding loop
    temperature: float = 0.8
    top_k: int = 0  # 0: no top-k filtering
    top_p: float = 1.0  # 1.0: no nucleus filtering
    sample_seed: int = 0
    sample_prompts: tuple[str, ...] = ("The ", "Return the ", "If ")
    sample_tokens: int = 200  # length of the samples written to workdir/samples each epoch
    # After fitting, also train the TF tutorial's GRU shape (ANCHOR_SHAPE) on the same data under the same
    # time budget and report its held-out loss beside ours (the bench's side-by-side baseline).
    anchor_baseline: bool = False

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"epochs": 2, "steps_per_epoch": 60, "batch_size": 32, "seq_len": 64, "dim": 64,
                  "num_layers": 2, "num_heads": 2, "ff_dim": 256, "dropout": 0.0, "learning_rate": 3e-3,
                  "warmup_steps": 10, "embedding_dim": 32, "rnn_units": 64, "max_new_tokens": 24,
                  "sample_tokens": 24, "verbose": 0},
        "demo": {"epochs": 5, "steps_per_epoch": 60, "batch_size": 32, "seq_len": 96, "dim": 96,
                 "num_layers": 2, "num_heads": 4, "ff_dim": 384, "dropout": 0.0, "learning_rate": 3e-3,
                 "warmup_steps": 20, "max_new_tokens": 160, "sample_tokens": 120, "time_budget_s": 240},
        "full": {"epochs": 60, "steps_per_epoch": 400, "batch_size": 64, "seq_len": 256, "dim": 256,
                 "num_layers": 6, "num_heads": 8, "ff_dim": 1024, "dropout": 0.1, "learning_rate": 1e-3,
                 "warmup_steps": 200, "early_stopping_patience": 8},
        # make bench: tiny_shakespeare with its own held-out tail, 15 minutes of training, then the
        # tutorial-shaped GRU for the same 15 minutes. Ours is the GRU of the tutorial's shape (embedding
        # 256, GRU 1024, sequences of 100, batch 64: the same speed, so the same steps in the budget) with
        # this app's recipe: AdamW (weight decay 0.1 on the matrices), gradient clipping, a warmup and a
        # peak of 2e-3, and a cosine counted to step 1,000, about what 900 s buy on the Intel machine the
        # bar was set on. Measured step-matched to those steps (README, 2026-12-03): tail 1.507 /
        # validation 1.340 against the tutorial recipe's 1.550 / 1.378 and the GPT's 1.578 / 1.383 after
        # 3,800 steps. The GPT (4 x 128, context 128, batch 32, peak 3e-3, 19 x 200 steps) fits the
        # training plays more closely and the unseen play of the tail less well.
        # Counted in steps, not ended by the budget: on a machine 3-4x slower (~240 steps in 900 s) a
        # cosine ending with the budget annealed too early and lost to the anchor in one bench (tail
        # 1.956 against 1.905), where at step 200 the step-counted cosine was at validation 1.786 against
        # the anchor's 1.991. On a faster machine ours stops at step 1,000 and the anchor trains on to the
        # end of the budget: that favours the anchor, not ours.
        "bench": {"data": str(SHAKESPEARE), **TUTORIAL_SHAPE, "learning_rate": 2e-3, "warmup_steps": 100,
                  "epochs": 5, "steps_per_epoch": 200, "budget_ends_schedule": False,
                  "time_budget_s": 900, "early_stopping_patience": 100, "anchor_baseline": True,
                  "sample_prompts": ("ROMEO:", "First Citizen:\n"), "max_new_tokens": 100, "verbose": 2},
    }


# The TF text-generation tutorial's model and training recipe (its shape, plain Adam at a constant 1e-3),
# trained as the anchor baseline when anchor_baseline is set.
ANCHOR_SHAPE: dict[str, Any] = {
    **TUTORIAL_SHAPE, "learning_rate": 1e-3, "weight_decay": 0.0, "warmup_steps": 0, "min_lr_fraction": 1.0,
    "clipnorm": 0.0, "budget_ends_schedule": False, "epochs": 1000, "anchor_baseline": False,
}
