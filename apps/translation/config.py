"""Translation settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig, at_least, between, positive


@dataclasses.dataclass
class Config(BaseConfig):
    source_language: str = "en"  # CLDR locale for the embedded data; file suffix for folders; TFDS feature
    target_language: str = "es"  # the language translated into (same forms as source_language)
    val_fraction: float = between(0, 1, 0.1)  # of the pairs, for validation when the data has no split of its own
    test_fraction: float = between(0, 1, 0.1)  # of the pairs, for the test when the data has no split of its own
    max_examples: int = at_least(0, 0)  # 0: every training pair; otherwise the first N (smoke runs)
    held_out: int = at_least(0, 0)  # folders without a val split: pairs cut from train for validation (0: val_fraction)
    # Tokenization (in the graph; see tokenizer.py)
    tokenizer: str = "wordpiece"  # wordpiece (subwords) | word (whole words, unknown -> [UNK])
    vocab_size: int = positive(8000)  # per language, reserved tokens included
    shared_vocab: bool = False  # one vocabulary and one embedding table for both languages
    min_frequency: int = at_least(0, 2)  # subword merges rarer than this are not learned
    lowercase: bool = False  # lowercase both sides before tokenizing
    strip_punctuation: bool = False  # drop punctuation and symbols from both sides
    max_length: int = positive(48)  # tokens per side; longer inputs are truncated
    # Model
    dim: int = positive(256)  # model width
    num_heads: int = positive(4)  # attention heads
    ff_dim: int = positive(1024)  # feed-forward width
    encoder_layers: int = positive(3)  # encoder blocks
    decoder_layers: int = positive(3)  # decoder blocks
    dropout: float = between(0, 1, 0.1, high_open=True)  # in every block
    tie_output: bool = True  # output projection = target embedding table
    # Training
    label_smoothing: float = between(0, 1, 0.1)  # of the training loss
    # After a linear warmup: inverse_sqrt keeps the rate high (best in short runs: smoke, demo); cosine
    # anneals to zero by the run's end (best in long runs: bench, full).
    schedule: str = "inverse_sqrt"
    warmup_steps: int = at_least(0, 1000)  # steps of the linear warmup
    # steps of the cosine after the warmup (0: epochs x steps of an epoch, less the warmup)
    decay_steps: int = at_least(0, 0)
    clipnorm: float = at_least(0, 1.0)  # 0: no gradient clipping
    # Decoding and evaluation
    decode: str = "beam"  # what serving_default does: beam | greedy
    beam_size: int = positive(4)  # beams of beam search
    length_penalty: float = at_least(0, 0.6)  # beam search's GNMT length penalty alpha (0: none)
    eval_batch_size: int = positive(128)  # sentences per call when scoring the test split
    eval_max_examples: int = at_least(0, 0)  # 0: the whole test split

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"epochs": 5, "batch_size": 64, "learning_rate": 2e-3, "max_examples": 2500, "vocab_size": 600,
                  "max_length": 24, "dim": 64, "num_heads": 4, "ff_dim": 128, "encoder_layers": 1,
                  "decoder_layers": 1, "dropout": 0.0, "warmup_steps": 50, "eval_max_examples": 200,
                  "beam_size": 3, "verbose": 0},
        "demo": {"epochs": 6, "batch_size": 64, "learning_rate": 2e-3, "vocab_size": 1000, "max_length": 32,
                 "dim": 64, "num_heads": 4, "ff_dim": 128, "encoder_layers": 1, "decoder_layers": 1,
                 "dropout": 0.0, "warmup_steps": 100, "time_budget_s": 150, "eval_max_examples": 300},
        "full": {"epochs": 40, "batch_size": 64, "learning_rate": 1e-3, "early_stopping_patience": 8,
                 "schedule": "cosine"},
    }
