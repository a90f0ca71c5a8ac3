"""Folders of WAV files in the layouts people have: which file is which word, in which split.

- Speech Commands: `<word>/<speaker>_nohash_<n>.wav`, validation_list.txt / testing_list.txt,
  `_background_noise_/` recordings (cut into "silence" clips).
- split folders: `train/`, `val/`, `test/`, with class folders or filename labels inside.
- filename-labelled `<label>_<speaker>_<index>.wav` (FSDD); a bare digit label becomes its word.
- any other class-per-folder layout.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.speech_commands.audio import fix_length, resample
from core.data import AUDIO_EXTENSIONS, decode_wav, list_files, stable_split

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SILENCE, UNKNOWN = "silence", "unknown"
SPLIT_FOLDERS = {"train": 0, "training": 0, "val": 1, "valid": 1, "validation": 1, "dev": 1,
                 "test": 2, "testing": 2}


def normalise_label(label: str) -> str:
    label = label.strip().lower()
    if label in ("_silence_", "_background_noise_"):
        return SILENCE
    if label == "_unknown_":
        return UNKNOWN
    return DIGITS[int(label)] if label.isdigit() and len(label) == 1 else label


def speaker_of(path: Path) -> str:
    """Speech Commands names files <speaker>_nohash_<n>: keep each speaker in one split."""
    stem = path.stem
    if "_nohash_" in stem:
        return stem.split("_nohash_")[0].split("_")[-1]
    parts = stem.split("_")
    return parts[1] if len(parts) == 3 and parts[2].isdigit() else stem


def is_background(path: str | Path) -> bool:
    """Long background recordings sit in '_'-folders (Speech Commands' `_background_noise_`)."""
    return Path(path).parent.name.startswith("_")


def describe_folder(root: Path, config) -> tuple[list[str], list[str], list[int], list[str]]:
    """Files, their labels and split ids (0 train, 1 val, 2 test) for every supported layout.

    Returns (paths, labels, splits, notes) where notes say which rules were used.
    """
    files = list_files(root, AUDIO_EXTENSIONS)
    noise_files = [p for p in files if any(part.startswith("_") for part in p.relative_to(root).parts[:-1])]
    files = [p for p in files if p not in set(noise_files)]
    if not files:
        raise FileNotFoundError(f"No WAV files outside '_'-folders under {str(root)!r}")
    rel = [p.relative_to(root) for p in files]
    split_dir = [SPLIT_FOLDERS.get(r.parts[0].lower()) if len(r.parts) > 1 else None for r in rel]
    inner = [r.parts[1:] if s is not None else r.parts for r, s in zip(rel, split_dir)]
    folders = {parts[0] for parts in inner if len(parts) > 1}
    by_filename = len(folders) <= 1
    labels = [normalise_label(re.split(r"[_\-]", parts[-1])[0] if by_filename else parts[0]) for parts in inner]
    notes = [f"labels from {'file names (<label>_...)' if by_filename else 'class folders'}"]
    fractions = (1.0 - config.val_fraction - config.test_fraction, config.val_fraction, config.test_fraction)
    share = config.val_fraction / (1.0 - config.test_fraction)  # of what is not test
    val_list, test_list = root / "validation_list.txt", root / "testing_list.txt"
    splits: list[int]
    if any(s is not None for s in split_dir):
        has_test = 2 in split_dir
        # Without a test folder the held-out folder is the test set; val then comes from train.
        carve_val = not (has_test and 1 in split_dir)
        splits = []
        for p, s in zip(files, split_dir):
            if s == 1 and not has_test:
                splits.append(2)
            elif s in (None, 0):
                splits.append(1 if carve_val and stable_split(speaker_of(p), (1 - share, share)) == 1 else 0)
            else:
                splits.append(s)
        notes.append("splits from train/val/test folders")
    elif val_list.exists() or test_list.exists():
        held = {}
        for name, split in ((val_list, 1), (test_list, 2)):
            if name.exists():
                held.update({line.strip(): split for line in name.read_text().splitlines() if line.strip()})
        splits = [held.get(r.as_posix(), 0) for r in rel]
        notes.append("splits from validation_list.txt / testing_list.txt")
    elif by_filename and all(re.fullmatch(r"[^_]+_[^_]+_\d+", Path(p).stem) for p in files):
        # FSDD convention: the lowest file indices of every speaker and digit are the test set.
        splits = [2 if int(p.stem.split("_")[-1]) < config.test_index_below
                  else stable_split(p.stem, (1 - share, share)) for p in files]
        notes.append(f"test = file index < {config.test_index_below}, val = hash of the rest")
    else:
        splits = [stable_split(speaker_of(p), fractions) for p in files]
        notes.append("splits from a hash of the speaker (file name before _nohash_)")
    paths = [str(p) for p in files]
    for p in noise_files:
        paths.append(str(p))
        labels.append(SILENCE)
        splits.append(stable_split(p.stem, fractions))
    return paths, labels, splits, notes


def map_labels(labels: list[str], config) -> tuple[list[str], list[str]]:
    """Applies `keywords` (other words -> unknown) and returns (mapped labels, class names)."""
    keywords = [normalise_label(w) for w in config.keyword_list()]
    if keywords:
        labels = [w if w in keywords or w == SILENCE else UNKNOWN for w in labels]
        extra = [n for n in (SILENCE, UNKNOWN) if n in labels]
        names = extra + [w for w in keywords if w not in extra]
    else:
        present = sorted(set(labels) - {SILENCE})
        names = ([SILENCE] if SILENCE in labels else []) + present
    if config.add_silence and SILENCE not in names:
        names = [SILENCE] + names
    return labels, names


def noise_segments(path: str, config) -> np.ndarray:
    """A long background recording cut into clip-long segments at the model rate."""
    wave, rate = decode_wav(tf.io.read_file(path), "background noise file")
    seconds = float(tf.shape(wave)[0]) / float(rate)
    count = max(1, int(seconds // config.clip_seconds))
    out = int(config.clip_samples)
    step = int(round(config.clip_seconds * int(rate)))
    segments = [wave[i * step:(i + 1) * step] for i in range(count)]
    return np.stack([resample(s, rate, config.sample_rate, out).numpy() if int(rate) != config.sample_rate
                     else fix_length(s[None], out)[0].numpy() for s in segments])
