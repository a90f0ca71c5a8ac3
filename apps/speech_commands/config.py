"""Speech commands settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig, at_least, between, positive


@dataclasses.dataclass
class Config(BaseConfig):
    # Audio the model sees.
    sample_rate: int = positive(16000)  # Hz; every input is resampled to it in the graph
    clip_seconds: float = positive(1.0)  # inputs are cut or padded to this around their energy centre
    max_seconds: float = positive(30.0)  # longer inputs are refused
    # Log-mel front end (inside the model).
    frame_ms: float = positive(25.0)  # STFT window
    hop_ms: float = positive(10.0)  # hop between frames
    n_mels: int = positive(40)  # mel bands
    # "" for the log-mel CNN below, or hub:<URL-or-path>[#<output>] of an audio-embedding module taking
    # waveforms at sample_rate (16 kHz for TF Hub's), batched or one clip at a time (YAMNet: #1), frozen.
    encoder: str = ""
    # Compact CNN.
    width: int = positive(32)  # channels of the first stage; each later stage doubles them
    depth: int = positive(3)  # residual stages
    embed: int = positive(128)  # per-frame features after the convolutions, max-pooled over time
    dropout: float = between(0, 1, 0.2, high_open=True)  # before the classifier
    label_smoothing: float = between(0, 1, 0.05)  # of the cross-entropy targets
    # Waveform augmentation (training only).
    augment: bool = True  # time shift, gain and background noise per training batch
    shift_ms: float = at_least(0, 100.0)  # largest time shift either way
    gain_db: float = at_least(0, 9.0)  # gain uniform in [-gain_db, +gain_db / 3]
    snr_db_min: float = 5.0  # lowest signal-to-noise ratio of the added noise
    snr_db_max: float = 40.0  # highest signal-to-noise ratio of the added noise
    narrowband: float = between(0, 1, 0.0)  # share of clips low-passed at 3-4 kHz, as 8 kHz recordings are
    # SpecAugment (training only).
    spec_augment: bool = True  # masks over time frames and mel bins inside the model
    time_masks: int = at_least(0, 2)  # time masks per clip
    time_mask_frames: int = at_least(0, 10)  # longest time mask, in frames
    freq_masks: int = at_least(0, 2)  # frequency masks per clip
    freq_mask_bins: int = at_least(0, 6)  # widest frequency mask, in mel bins
    # Data.
    renders_per_word: int = positive(80)  # embedded: eSpeak renders of each keyword (unknown/silence get as many)
    keywords: str = ""  # real data: comma-separated words to keep; other words become "unknown"
    add_silence: bool = True  # add a "silence" class (zeros + noise) when the source has none
    test_index_below: int = at_least(0, 10)  # <label>_<speaker>_<index>.wav files (FSDD): index below it -> test
    val_fraction: float = between(0, 1, 0.1)  # share of a folder held out for validation (by speaker)
    test_fraction: float = between(0, 1, 0.1)  # share of a folder held out for testing (by speaker)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"epochs": 8, "batch_size": 32, "width": 16, "depth": 2, "embed": 64,
                  "learning_rate": 6e-3, "renders_per_word": 24, "spec_augment": False, "verbose": 0},
        "demo": {"epochs": 14, "batch_size": 64, "width": 24, "depth": 3, "learning_rate": 3e-3,
                 "renders_per_word": 60, "time_budget_s": 75},
        "full": {"epochs": 60, "batch_size": 64, "width": 48, "depth": 3, "learning_rate": 2e-3,
                 "renders_per_word": 200, "early_stopping_patience": 12},
    }

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    def keyword_list(self) -> list[str]:
        return [w.strip() for w in self.keywords.split(",") if w.strip()]
