"""Spoken translation settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig, at_least, between, one_of, positive


@dataclasses.dataclass
class Config(BaseConfig):
    # Audio the recognizer hears.
    sample_rate: int = positive(8000)  # Hz; every input is resampled to it in the graph (telephone band)
    max_seconds: float = positive(60.0)  # longer inputs are refused
    frame_ms: float = positive(25.0)  # STFT window of the log-mel front end
    hop_ms: float = positive(10.0)  # hop between frames
    n_mels: int = positive(40)  # mel bands
    stack: int = positive(3)  # frames stacked into one model step (a step covers stack * hop_ms)
    # Causal acoustic model: per-frame LayerNorm, causal convolutions, unidirectional GRUs, CTC over characters.
    conv_layers: int = at_least(0, 2)  # causal 1-D convolutions over the stacked frames
    conv_channels: int = positive(128)  # channels of each convolution
    conv_kernel: int = positive(5)  # kernel width in model steps (each sees kernel - 1 past steps)
    gru_layers: int = positive(1)  # unidirectional GRU layers
    gru_units: int = positive(192)  # units of each GRU
    dropout: float = between(0, 1, 0.1, high_open=True)  # between the layers, in training only
    # SpecAugment (training only).
    time_masks: int = at_least(0, 2)  # time masks per clip
    time_mask_frames: int = at_least(0, 8)  # longest time mask, in frames
    freq_masks: int = at_least(0, 2)  # frequency masks per clip
    freq_mask_bins: int = at_least(0, 5)  # widest frequency mask, in mel bins
    # Waveform augmentation of training batches (speech_commands' augment: gain and background noise).
    augment: bool = True  # gain and noise per training batch (val/test clips get theirs once, fixed)
    shift_ms: float = at_least(0, 0.0)  # largest time shift either way (0: none; clips carry their own silence)
    gain_db: float = at_least(0, 9.0)  # gain uniform in [-gain_db, +gain_db / 3]
    snr_db_min: float = 10.0  # lowest signal-to-noise ratio of the added noise
    snr_db_max: float = 40.0  # highest signal-to-noise ratio of the added noise
    narrowband: float = between(0, 1, 0.0)  # share of clips low-passed at 3-4 kHz, as 8 kHz recordings are
    # Decoding.
    beam_width: int = positive(8)  # beams of the `transcribe_beam` signature (no language model)
    # characters per n-gram of the language model serving_default decodes with (0: greedy); at most 12, as
    # longer contexts overflow the int64 context codes
    lm_order: int = between(0, 12, 6)
    lm_min_count: int = at_least(0, 2)  # contexts seen fewer times back off to shorter ones
    lm_text: str = ""  # English text, one sentence a line, that the LM learns beside the training transcripts
    lm_alpha: float = at_least(0, 1.0)  # weight of the LM's log-probability against the acoustic one
    lm_beta: float = 2.0  # bonus per character (the LM otherwise prefers short transcripts)
    lm_beam: int = positive(16)  # prefixes kept by the LM beam search
    # Embedded data: eSpeak NG speaking the built-in sentences (sentences.py).
    sentences: int = at_least(0, 0)  # how many of the built-in sentences to speak (0: all)
    train_voices: int = positive(12)  # training renders of each sentence, each with a fresh voice
    test_voices: int = positive(2)  # val and test renders of each sentence, by voice variants training never hears
    # Real data (folders, TSV, tfds:).
    val_fraction: float = between(0, 1, 0.1)  # share of the sentences held out for validation (split by sentence)
    test_fraction: float = between(0, 1, 0.15)  # share of the sentences held out for testing (split by sentence)
    # folders: longer training/validation clips are skipped (0: max_seconds)
    max_train_seconds: float = at_least(0, 0.0)
    # folders: eSpeak renders of each training sentence added to the training audio
    synthetic_voices: int = at_least(0, 0)
    text_pairs: str = ""  # extra pairs: folder of train.en + train.fr/.es (a path, or a name under CATALOGUE_DATA)
    max_text_pairs: int = at_least(0, 0)  # 0: every extra pair; otherwise the first N of each language
    # Translation model (apps.translation's Translator, one model for both languages: a tag picks the target).
    translation_vocab_size: int = positive(800)  # wordpiece vocabulary per side
    translation_max_length: int = positive(32)  # tokens per side
    translation_dim: int = positive(64)  # width
    translation_heads: int = positive(4)  # attention heads
    translation_ff_dim: int = positive(128)  # feed-forward width
    translation_layers: int = positive(1)  # encoder and decoder blocks each
    translation_dropout: float = between(0, 1, 0.0, high_open=True)  # inside the blocks
    translation_epochs: int = positive(40)  # upper bound of the translation phase
    translation_steps_per_epoch: int = positive(50)  # steps of one translation epoch (the pairs are repeated)
    translation_batch_size: int = positive(32)  # sentence pairs per step
    translation_learning_rate: float = positive(3e-3)  # peak rate after the warmup (inverse square root decay)
    translation_warmup_steps: int = at_least(0, 100)  # linear warmup of the translation phase
    translation_budget_s: float = at_least(0, 0.0)  # wall-clock budget of the translation phase (0: none)
    translation_decode: str = one_of(("greedy", "beam"), "greedy")  # greedy | beam, in serving_default
    translation_beam_size: int = positive(3)  # beams when translation_decode is beam
    target_language: str = "fr"  # what predict() translates into when an input names no language
    speed_clips: int = positive(8)  # test clips timed for the real-time factors and the streaming check
    eval_max_clips: int = at_least(0, 0)  # 0: score every test clip; otherwise the first N

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"epochs": 5, "steps_per_epoch": 40, "batch_size": 16, "learning_rate": 5e-3, "sentences": 8,
                  "train_voices": 12, "conv_channels": 64, "gru_units": 96, "time_masks": 0, "freq_masks": 0,
                  "dropout": 0.0, "translation_epochs": 3, "translation_steps_per_epoch": 40,
                  "translation_vocab_size": 300, "translation_warmup_steps": 30, "speed_clips": 2, "verbose": 0,
                  "early_stopping_patience": 100},
        "demo": {"epochs": 40, "steps_per_epoch": 40, "batch_size": 16, "learning_rate": 5e-3, "sentences": 16,
                 "train_voices": 12,
                 "conv_channels": 64, "gru_units": 128, "time_masks": 1, "freq_masks": 1, "dropout": 0.0,
                 "time_budget_s": 50, "budget_ends_schedule": True, "translation_epochs": 20,
                 "translation_budget_s": 12, "speed_clips": 4, "early_stopping_patience": 100},
        "full": {"epochs": 80, "batch_size": 32, "learning_rate": 2e-3, "train_voices": 40, "test_voices": 4,
                 "gru_layers": 2, "gru_units": 256, "conv_channels": 192, "translation_dim": 128,
                 "translation_ff_dim": 256, "translation_layers": 2, "translation_epochs": 100,
                 "early_stopping_patience": 12, "translation_decode": "beam"},
    }

    @property
    def frame_length(self) -> int:
        return int(round(self.sample_rate * self.frame_ms / 1000.0))

    @property
    def frame_step(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000.0))

    @property
    def step_samples(self) -> int:
        """Samples per model step: clips are padded, and stream chunks cut, to a multiple of it."""
        return self.frame_step * self.stack
