"""Text generation settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig, at_least, between, positive


@dataclasses.dataclass
class Config(BaseConfig):
    arch: str = "gpt"  # gpt: decoder-only Transformer | gru: recurrent alternative
    seq_len: int = positive(128)  # characters per training window; also the GPT's context length
    # GPT
    dim: int = positive(128)  # GPT width
    num_layers: int = positive(4)  # GPT decoder blocks
    num_heads: int = positive(4)  # GPT attention heads
    ff_dim: int = positive(512)  # GPT feed-forward width
    dropout: float = between(0, 1, 0.1, high_open=True)  # in the GPT's blocks; between the GRU's layers
    # GRU (arch=gru)
    embedding_dim: int = positive(256)  # GRU input embedding width
    rnn_units: int = positive(1024)  # GRU width
    rnn_layers: int = positive(1)  # stacked GRUs
    # Optimisation
    weight_decay: float = at_least(0, 0.1)  # AdamW's, on weight matrices only
    warmup_steps: int = at_least(0, 100)  # linear warmup before the cosine
    # the cosine ends here (a fraction of learning_rate), with the run or its budget
    min_lr_fraction: float = between(0, 1, 0.1)
    clipnorm: float = at_least(0, 1.0)  # 0: no gradient clipping
    # Data
    max_vocab: int = positive(256)  # most frequent characters of the training text; rarer ones map to [UNK]
    max_chars: int = at_least(0, 0)  # 0: the whole corpus; otherwise its first max_chars characters
    # held-out scoring: windows every N chars, each scores its last N (0: seq_len // 2)
    eval_stride: int = at_least(0, 0)
    train_stride: int = at_least(0, 0)  # distance between training windows (0: seq_len); each epoch jitters them
    val_fraction: float = between(0, 1, 0.05)  # taken from the end of the text, before the test tail
    test_fraction: float = between(0, 1, 0.05)  # the tail of the text
    # Generation (defaults of the `complete` endpoint and predict(); serving_default's top_p)
    max_new_tokens: int = positive(200)  # characters generated per prompt by default
    max_generate: int = positive(2000)  # hard bound of the in-graph decoding loop
    temperature: float = at_least(0, 0.8)  # 0: greedy decoding
    top_k: int = at_least(0, 0)  # 0: no top-k filtering
    top_p: float = between(0, 1, 1.0)  # 1.0: no nucleus filtering
    sample_seed: int = at_least(0, 0)  # default seed of sampling
    sample_prompts: tuple[str, ...] = ("The ", "Return the ", "If ")  # of the per-epoch samples and checks
    sample_tokens: int = positive(200)  # length of the samples written to workdir/samples each epoch

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

