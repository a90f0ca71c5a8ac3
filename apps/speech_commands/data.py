"""Speech commands sources -> unbatched (float32 waveform [clip_samples] at the model rate, int label).

- embedded: keywords spoken by eSpeak NG (synth.py) with many voices, speeds and pitches: the ten
  digits and the ten Speech Commands core words, plus "unknown" (other words) and "silence".
  Test clips are spoken by voice variants training never hears.
- a folder of WAV files in any layout readers.py knows (Speech Commands, split folders, FSDD, class
  folders).
- tfds:speech_commands, tfds:spoken_digit (or any TFDS dataset with `audio` and `label` features).

Every clip goes through audio.py, the front end the exported endpoints use. Noise, gain and time
shifts (`augment`) are added per training batch and baked once into the val/test clips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.speech_commands import readers, synth
from apps.speech_commands.audio import load_clip, to_model_rate
from apps.speech_commands.readers import DIGITS, SILENCE, UNKNOWN, is_background
from core.data import Source, Splits, load_tfds

CORE_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
KEYWORDS = DIGITS + CORE_WORDS
# Speech Commands' auxiliary words and a few more: what the "unknown" class hears.
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
                 "backward", "forward", "follow", "learn", "visual", "hello", "okay", "wait", "start")
SPLIT_NAMES = ("train", "val", "test")


# ----------------------------------------------------------------------------------------------
# Augmentation: time shift, gain and background noise, vectorised over a batch.

def noise(shape, seed) -> tf.Tensor:
    """Unit-RMS background noise: a random mix of white and brown (integrated, rumbling) noise."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    white = tf.random.stateless_normal(shape, seeds[0])
    brown = tf.cumsum(tf.random.stateless_normal(shape, seeds[1]), axis=-1)
    brown -= tf.reduce_mean(brown, axis=-1, keepdims=True)
    brown /= tf.math.reduce_std(brown, axis=-1, keepdims=True) + 1e-6
    mix = tf.random.stateless_uniform([shape[0], 1], seeds[2])
    mixed = tf.sqrt(mix) * white + tf.sqrt(1.0 - mix) * brown
    return mixed / (tf.math.reduce_std(mixed, axis=-1, keepdims=True) + 1e-6)


def augment(waves: tf.Tensor, seed: tf.Tensor, config) -> tf.Tensor:
    """Random shift, gain and noise for a batch [N, T] (stateless: the same seed gives the same batch).

    Speech gets noise at an SNR in [snr_db_min, snr_db_max]; clips without signal (silence) get noise
    at an absolute level from -80 to -30 dBFS, or none at all one time in five, so that digital
    silence and quiet rooms both mean "silence". A `narrowband` share is then band-limited (band_limit).
    """
    waves = tf.convert_to_tensor(waves, tf.float32)
    seed = tf.cast(seed, tf.int64)
    n, length = tf.shape(waves)[0], tf.shape(waves)[1]
    s = tf.random.experimental.stateless_split(seed, 6)
    max_shift = int(config.shift_ms / 1000.0 * config.sample_rate)
    shift = tf.random.stateless_uniform([n], s[0], -max_shift, max_shift + 1, dtype=tf.int32)
    index = tf.range(length)[None, :] - shift[:, None]
    inside = tf.logical_and(index >= 0, index < length)
    waves = tf.where(inside, tf.gather(waves, tf.clip_by_value(index, 0, length - 1), batch_dims=1), 0.0)
    gain_db = tf.random.stateless_uniform([n, 1], s[1], -config.gain_db, config.gain_db / 3.0)
    waves *= tf.pow(10.0, gain_db / 20.0)
    rms = tf.sqrt(tf.reduce_mean(tf.square(waves), axis=1, keepdims=True))
    snr_db = tf.random.stateless_uniform([n, 1], s[2], config.snr_db_min, config.snr_db_max)
    quiet_db = tf.random.stateless_uniform([n, 1], s[3], -80.0, -30.0)
    quiet = tf.pow(10.0, quiet_db / 20.0) * tf.cast(tf.random.stateless_uniform([n, 1], s[4]) > 0.2, tf.float32)
    level = tf.where(rms > 1e-4, rms * tf.pow(10.0, -snr_db / 20.0), quiet)
    waves = tf.clip_by_value(waves + level * noise(tf.shape(waves), s[5]), -1.0, 1.0)
    if config.narrowband > 0:
        waves = band_limit(waves, tf.random.experimental.stateless_fold_in(seed, 7), config)
    return waves


def band_limit(waves: tf.Tensor, seed: tf.Tensor, config) -> tf.Tensor:
    """A `narrowband` share of the clips [N, T] loses everything above a cutoff drawn in 3-4 kHz."""
    n, length = tf.shape(waves)[0], tf.shape(waves)[1]
    s = tf.random.experimental.stateless_split(seed, 2)
    chosen = tf.random.stateless_uniform([n, 1], s[0]) < config.narrowband
    cutoff = tf.random.stateless_uniform([n, 1], s[1], 3000.0, 4000.0)
    spectrum = tf.signal.rfft(waves)
    hz = tf.range(tf.shape(spectrum)[1], dtype=tf.float32)[None, :] * (config.sample_rate / tf.cast(length, tf.float32))
    keep = tf.logical_or(tf.logical_not(chosen), hz <= cutoff)
    return tf.signal.irfft(spectrum * tf.cast(keep, spectrum.dtype), fft_length=[length])


def bake(waves: np.ndarray, config, seed: int, batch: int = 256) -> np.ndarray:
    """Applies `augment` once with a fixed seed (val/test clips then stay the same across runs)."""
    out = []
    for i in range(0, len(waves), batch):
        out.append(augment(waves[i:i + batch], tf.constant([seed, i], tf.int64), config).numpy())
    return np.concatenate(out) if out else waves


def silence_clips(count: int, samples: int) -> np.ndarray:
    """Digital silence; the noise comes from `augment` (training) or `bake` (val/test)."""
    return np.zeros((count, samples), np.float32)


# ----------------------------------------------------------------------------------------------
# Sources.

def centred(clip: np.ndarray, samples: int) -> np.ndarray:
    """A word in the middle of a `samples`-long canvas (cut around its middle if longer)."""
    out = np.zeros(samples, np.float32)
    clip = clip[:samples] if len(clip) <= samples else clip[(len(clip) - samples) // 2:][:samples]
    start = (samples - len(clip)) // 2
    out[start:start + len(clip)] = clip
    return out


def embedded(config) -> Splits:
    data = synth.synthesize(KEYWORDS, UNKNOWN_WORDS, config.renders_per_word, config.sample_rate, config.seed)
    samples = config.clip_samples
    names = [SILENCE, UNKNOWN, *KEYWORDS]
    ids = {w: (names.index(w) if w in names else names.index(UNKNOWN)) for w in set(data["words"].tolist())}
    offsets = data["offsets"]
    waves = np.stack([centred(data["audio"][offsets[i]:offsets[i + 1]].astype(np.float32) / 32768.0, samples)
                      for i in range(len(data["words"]))]) if len(data["words"]) else np.zeros((0, samples))
    labels = np.array([ids[w] for w in data["words"].tolist()], np.int32)
    counts = synth.split_counts(config.renders_per_word)
    parts, sizes = [], {}
    rng = np.random.default_rng(config.seed)
    for split, split_name in enumerate(SPLIT_NAMES):
        keep = data["splits"] == split
        x = np.concatenate([waves[keep], silence_clips(counts[split], samples)])
        y = np.concatenate([labels[keep], np.full(counts[split], names.index(SILENCE), np.int32)])
        order = rng.permutation(len(y))  # mixed classes, so the first test clips are not all one word
        x, y = x[order], y[order]
        if split > 0:
            x = bake(x, config, seed=config.seed * 10 + split)
        parts.append(tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y)))
        sizes[split_name] = int(len(y))
    info = {"source": f"embedded: eSpeak NG keywords ({config.renders_per_word} renders per word, "
                      f"{len(names)} classes; val/test voices unseen in training)",
            "class_names": names, "sizes": sizes}
    return Splits(*parts, info)


def folder(root: str, config) -> Splits:
    paths, labels, splits, notes = readers.describe_folder(Path(root), config)
    labels, names = readers.map_labels(labels, config)
    index = {n: i for i, n in enumerate(names)}
    missing = sorted(set(labels) - set(index))
    if missing:
        raise ValueError(f"Labels {missing} have no class. Received: keywords={config.keywords!r}")

    def read(path):
        return load_clip(tf.io.read_file(path), config.sample_rate, config.clip_seconds, config.max_seconds,
                         input_name=f"WAV file under {root}")

    parts, sizes = [], {}
    for split, split_name in enumerate(SPLIT_NAMES):
        chosen = [(p, index[lab]) for p, lab, s in zip(paths, labels, splits)
                  if s == split and not (lab == SILENCE and is_background(p))]
        if not chosen:
            raise ValueError(f"The {split_name} split of {root!r} is empty ({'; '.join(notes)}). Received: "
                             f"{len(paths)} files")
        files = tf.constant([p for p, _ in chosen])
        ids = tf.constant([i for _, i in chosen], tf.int32)
        ds = tf.data.Dataset.from_tensor_slices((files, ids)).map(
            lambda p, y: (read(p), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        extra = [readers.noise_segments(p, config) for p, lab, s in zip(paths, labels, splits)
                 if s == split and lab == SILENCE and is_background(p)]
        if config.add_silence and SILENCE not in set(labels):
            extra.append(silence_clips(max(1, round(len(chosen) / max(1, len(names) - 1))), config.clip_samples))
        n_silence = sum(len(e) for e in extra)
        if extra:
            x = np.concatenate(extra).astype(np.float32)
            if split > 0:
                x = bake(x, config, seed=config.seed * 10 + split)
            silence = tf.data.Dataset.from_tensor_slices((x, np.full(len(x), index[SILENCE], np.int32)))
            ds = ds.concatenate(silence)
        parts.append(ds)
        sizes[split_name] = len(chosen) + n_silence
    info = {"source": f"folder: {root}", "class_names": names, "sizes": sizes, "rules": notes}
    return Splits(*parts, info)


def tfds_source(name: str, config) -> Splits:
    """A TFDS set with `audio` and `label` features; one with only a train split (spoken_digit) is cut
    into val_fraction / test_fraction slices of it."""
    base = name.split(":")[0]
    _, builder_info = load_tfds(base, split="train", with_info=True, shuffle_files=False)
    if {"validation", "test"} <= set(builder_info.splits):
        cuts = ("train", "validation", "test")
    else:
        train_end = round(100 * (1 - config.val_fraction - config.test_fraction))
        val_end = round(100 * (1 - config.test_fraction))
        cuts = (f"train[:{train_end}%]", f"train[{train_end}%:{val_end}%]", f"train[{val_end}%:]")
    audio_feature = builder_info.features["audio"]
    rate = int(getattr(audio_feature, "sample_rate", None) or config.sample_rate)
    scale = 1.0 / 32768.0 if audio_feature.dtype.is_integer else 1.0

    def convert(example):
        wave = tf.cast(example["audio"], tf.float32) * scale
        if wave.shape.rank == 2:
            wave = tf.reduce_mean(wave, axis=-1)
        wave = to_model_rate(wave, rate, config.sample_rate, config.clip_seconds)
        return tf.ensure_shape(wave, [config.clip_samples]), tf.cast(example["label"], tf.int32)

    parts = [load_tfds(base, split=cut, shuffle_files=False).map(convert, num_parallel_calls=tf.data.AUTOTUNE)
             for cut in cuts]
    names = [readers.normalise_label(n) for n in builder_info.features["label"].names]
    return Splits(*parts, {"source": f"tfds: {base}", "class_names": names, "splits": list(cuts)})


def load(config) -> Splits:
    return Source.load(config.data, embedded=lambda: embedded(config),
                       tfds=lambda name: tfds_source(name, config), path=lambda path: folder(path, config))
