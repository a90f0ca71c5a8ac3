"""Text generation settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig


@dataclasses.dataclass
class Config(BaseConfig):
    arch: str = "gpt"  # gpt: decoder-only Transformer | gru: recurrent alternative
    seq_len: int = 128  # characters per training window; also the GPT's context length
    # GPT
    dim: int = 128  # GPT width
    num_layers: int = 4  # GPT decoder blocks
    num_heads: int = 4  # GPT attention heads
    ff_dim: int = 512  # GPT feed-forward width
    dropout: float = 0.1  # in the GPT's blocks; between the GRU's layers
    # GRU (arch=gru)
    embedding_dim: int = 256  # GRU input embedding width
    rnn_units: int = 1024  # GRU width
    rnn_layers: int = 1  # stacked GRUs
    # Optimisation
    weight_decay: float = 0.1  # AdamW's, on weight matrices only
    warmup_steps: int = 100  # linear warmup before the cosine
    min_lr_fraction: float = 0.1  # the cosine ends here (a fraction of learning_rate), with the run or its budget
    clipnorm: float = 1.0  # 0: no gradient clipping
    # Data
    max_vocab: int = 256  # most frequent characters of the training text; rarer ones map to [UNK]
    max_chars: int = 0  # 0: the whole corpus; otherwise its first max_chars characters
    eval_stride: int = 0  # held-out scoring: windows every N chars, each scores its last N (0: seq_len // 2)
    train_stride: int = 0  # distance between training windows (0: seq_len); each epoch jitters them
    val_fraction: float = 0.05  # taken from the end of the text, before the test tail
    test_fraction: float = 0.05  # the tail of the text
    # Generation (defaults of the `complete` endpoint and predict(); serving_default's top_p)
    max_new_tokens: int = 200  # characters generated per prompt by default
    max_generate: int = 2000  # hard bound of the in-graph decoding loop
    temperature: float = 0.8  # 0: greedy decoding
    top_k: int = 0  # 0: no top-k filtering
    top_p: float = 1.0  # 1.0: no nucleus filtering
    sample_seed: int = 0  # default seed of sampling
    sample_prompts: tuple[str, ...] = ("The ", "Return the ", "If ")  # of the per-epoch samples and checks
    sample_tokens: int = 200  # length of the samples written to workdir/samples each epoch

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
    }

