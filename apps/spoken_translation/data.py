"""Spoken translation sources -> unbatched {"waveform": float32 [T] at the model rate, "text": transcript,
"fr": French, "es": Spanish} (translations "" where the source has none), split by sentence or voice.

- embedded: eSpeak NG (speech_commands' synthesizer) speaking the built-in sentences (sentences.py)
  with many accents, voice variants, speeds and pitches; val and test clips are spoken by voice
  variants training never hears. Gain and noise are added per training batch and baked once into
  the val/test clips.
- a folder with `transcripts.tsv` (columns id, wav, en[, es, fr]; the Asterisk prompts' layout) or
  Common Voice's `*.tsv` (path, sentence), or LibriSpeech-style `*.trans.txt` files (`<id> <text>` a
  line, `<id>.wav` beside them). Audio must be WAV (TF decodes no FLAC or MP3): convert first.
  Split by sentence: the same sentence never sits in two splits.
- tfds:NAME: a TFDS speech set with `speech` and `text` features (librispeech), its own splits.

With `synthetic_voices`, eSpeak renders of every training sentence join a folder's training split
(`load(config, real_training_audio=False)`: they replace it, the bench's synthetic-only anchor).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import wave
from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.speech_commands import synth
from apps.speech_commands.data import augment
from apps.spoken_translation.audio import load_waveform, normalize_text
from apps.spoken_translation.sentences import SENTENCES
from core.data import Source, Splits, data_root, load_tfds

SPLIT_NAMES = ("train", "val", "test")
CACHE_VERSION = "spoken-v1"
LANGUAGES = ("fr", "es")
ELEMENT_SPEC = {"waveform": tf.TensorSpec([None], tf.float32), "text": tf.TensorSpec([], tf.string),
                "fr": tf.TensorSpec([], tf.string), "es": tf.TensorSpec([], tf.string)}


def to_dataset(rows: list[dict]) -> tf.data.Dataset:
    """In-memory rows -> a dataset of ELEMENT_SPEC elements."""
    def generate():
        for r in rows:
            yield {"waveform": r["waveform"], "text": r["text"], "fr": r.get("fr", ""), "es": r.get("es", "")}

    return tf.data.Dataset.from_generator(generate, output_signature=ELEMENT_SPEC)


# ----------------------------------------------------------------------------------------------
# Synthetic speech.

def voice_variants(split: int) -> list[str]:
    """Every tenth eSpeak variant is kept for validation, another tenth for the test."""
    return [v for i, v in enumerate(synth.VARIANTS) if (1 if i % 10 == 4 else 2 if i % 10 == 9 else 0) == split]


def cache_path(kind: str, key) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    digest = hashlib.sha1(repr((CACHE_VERSION, key)).encode()).hexdigest()[:12]
    return Path(root) / "dl_catalogue" / "spoken_translation" / f"{kind}-{digest}.npz"


def speak_all(texts: list[str], renders: int, split: int, sample_rate: int, seed: int) -> list[np.ndarray]:
    """Each text spoken `renders` times by fresh random voices of the split's variants, at sample_rate,
    with 0.1-0.3 s of silence either side (cached on disk)."""
    path = cache_path("espeak", (texts, renders, split, sample_rate, seed, synth.ACCENTS, synth.VARIANTS))
    if path.exists():
        with np.load(path) as cached:
            audio, offsets = cached["audio"], cached["offsets"]
        return [audio[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    from scipy.signal import resample_poly

    rng = np.random.default_rng((seed, split, 77))
    clips = []
    for k, text in enumerate(texts):
        for clip in synth.render_words([text], renders, seed=(seed, split, k), variants=voice_variants(split)):
            g = math.gcd(sample_rate, clip.sample_rate)
            wave = resample_poly(clip.audio.astype(np.float32) / 32768.0, sample_rate // g, clip.sample_rate // g)
            before, after = (rng.uniform(0.1, 0.3, 2) * sample_rate).astype(int)
            clips.append(np.concatenate([np.zeros(before), wave, np.zeros(after)]).astype(np.float32))
    lengths = [len(c) for c in clips]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, audio=np.concatenate(clips) if clips else np.zeros(0, np.float32),
             offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    os.replace(tmp, path)
    return clips


def bake_noise(rows: list[dict], config, seed: int) -> list[dict]:
    """Gain and background noise, once, with a fixed seed (val/test clips stay the same across runs)."""
    out = []
    for i, row in enumerate(rows):
        wave = augment(row["waveform"][None], tf.constant([seed, i], tf.int64), config)[0].numpy()
        out.append({**row, "waveform": wave})
    return out


def spoken_rows(triples, renders: int, split: int, config) -> list[dict]:
    """(text, fr, es) triples -> rows of eSpeak renders of `text`."""
    texts = [t for t, _, _ in triples]
    waves = speak_all(texts, renders, split, config.sample_rate, config.seed)
    rows = []
    for k, (text, fr, es) in enumerate(triples):
        for clip in waves[k * renders:(k + 1) * renders]:
            rows.append({"waveform": clip, "text": normalize_text(text), "fr": fr, "es": es})
    return rows


def embedded(config) -> Splits:
    chosen = SENTENCES[:config.sentences] if config.sentences else SENTENCES
    parts, sizes = [], {}
    rng = np.random.default_rng(config.seed)
    for split, name in enumerate(SPLIT_NAMES):
        rows = spoken_rows(chosen, config.train_voices if split == 0 else config.test_voices, split, config)
        rows = [rows[i] for i in rng.permutation(len(rows))]  # mixed sentences in every batch and sample
        if split:
            rows = bake_noise(rows, config, seed=config.seed * 10 + split)
        parts.append(to_dataset(rows))
        sizes[name] = len(rows)
    info = {"source": f"embedded: eSpeak NG speaking {len(chosen)} built-in sentences ({config.train_voices} "
                      f"training voices each; val/test by {config.test_voices} voices of unseen variants)",
            "sizes": sizes, "sentences": len(chosen), "split_by": "voice"}
    return Splits(*parts, info)


# ----------------------------------------------------------------------------------------------
# Folders of real speech.

def read_manifest(root: Path) -> list[dict]:
    """[{"path", "text", "fr", "es"}] from transcripts.tsv, a Common Voice TSV or LibriSpeech .trans.txt."""
    items = []
    tsv = root / "transcripts.tsv"
    tsvs = [tsv] if tsv.exists() else sorted(root.glob("*.tsv"))
    for path in tsvs:
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                audio = row.get("wav") or row.get("path") or ""
                text = row.get("en") or row.get("sentence") or row.get("text") or ""
                candidates = [root / audio, root / "en_wav" / audio, root / "clips" / audio]
                found = next((c for c in candidates if audio and c.is_file()), None)
                if found is not None and text:
                    items.append({"path": str(found), "text": text, "fr": row.get("fr") or "",
                                  "es": row.get("es") or ""})
    for trans in sorted(root.rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            key, _, text = line.partition(" ")
            wav = trans.parent / f"{key}.wav"
            if wav.is_file() and text.strip():
                items.append({"path": str(wav), "text": text.strip(), "fr": "", "es": ""})
    if not items:
        raise FileNotFoundError(f"No speech with transcripts in {str(root)!r}: expected transcripts.tsv "
                                f"(id, wav, en[, es, fr]), a Common Voice TSV (path, sentence) or LibriSpeech "
                                f"*.trans.txt with WAV files. Found: {sorted(p.name for p in root.iterdir())[:10]}")
    return items


def sentence_split(text: str, config) -> int:
    """0 train, 1 val, 2 test from a hash of the normalized sentence (stable, seed-dependent)."""
    digest = hashlib.sha1(f"{config.seed}:{text}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    return 2 if u < config.test_fraction else 1 if u < config.test_fraction + config.val_fraction else 0


def read_waves(paths: list[str], config, root) -> list[np.ndarray]:
    fn = tf.function(lambda data: load_waveform(data, config.sample_rate, config.max_seconds,
                                                input_name=f"WAV file under {root}"),
                     input_signature=[tf.TensorSpec([], tf.string)])
    return [fn(tf.io.read_file(p)).numpy() for p in paths]


def wav_seconds(path: str) -> float:
    """Duration from the WAV header (0 when Python's wave module cannot read it: the graph will say why)."""
    try:
        with wave.open(path, "rb") as f:
            return f.getnframes() / float(f.getframerate())
    except (wave.Error, EOFError, OSError):
        return 0.0


def folder(root: str, config, real_training_audio: bool = True) -> Splits:
    """Train / val / test of a folder, split by sentence; real_training_audio=False keeps only the eSpeak
    renders (`synthetic_voices`) in train and val, while test stays the real recordings."""
    items, too_long = [], 0
    for item in read_manifest(Path(root)):
        text = normalize_text(item["text"])
        # Bracketed entries describe tones, not speech ("[ascending tones]").
        if not text or item["text"].lstrip().startswith(("[", "(")):
            continue
        seconds, split = wav_seconds(item["path"]), sentence_split(text, config)
        # Tests keep every clip the endpoint takes; training skips the long ones, which cost most per step.
        if seconds > (config.max_seconds if split == 2 else config.max_train_seconds or config.max_seconds):
            too_long += 1
            continue
        items.append({**item, "text": text, "split": split})
    parts, sizes = [], {}
    for split, name in enumerate(SPLIT_NAMES):
        chosen = [it for it in items if it["split"] == split]
        if not chosen:
            raise ValueError(f"The {name} split of {root!r} is empty. Received: {len(items)} transcribed clips")
        rows = []
        if split == 2 or real_training_audio:
            waves = read_waves([it["path"] for it in chosen], config, root)
            rows = [{"waveform": w, "text": it["text"], "fr": it["fr"], "es": it["es"]} for w, it in zip(waves, chosen)]
        if split < 2 and config.synthetic_voices:
            triples = sorted({(it["text"], it["fr"], it["es"]) for it in chosen})
            spoken = spoken_rows(triples, config.synthetic_voices, split, config)
            rows += bake_noise(spoken, config, config.seed * 10 + split) if split else spoken
        rng = np.random.default_rng(config.seed + split)
        rows = [rows[i] for i in rng.permutation(len(rows))]
        parts.append(to_dataset(rows))
        sizes[name] = len(rows)
    audio = "real" if real_training_audio else "eSpeak renders of the training sentences only"
    if config.synthetic_voices and real_training_audio:
        audio += f", plus {config.synthetic_voices} eSpeak voices per sentence"
    info = {"source": f"folder: {root} (split by sentence; training audio: {audio})", "sizes": sizes,
            "split_by": "sentence", "skipped_too_long": too_long}
    return Splits(*parts, info)


def resolve_data_path(name: str, key: str) -> Path:
    """A path as given, or a name under CATALOGUE_DATA (what the bench passes)."""
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = data_root() / path
    if not path.exists():
        raise FileNotFoundError(f"{key} names no file or folder. Received: {key}={name!r} (looked at {path})")
    return path


def tfds_source(name: str, config) -> Splits:
    """A TFDS speech set with `speech` (int16 PCM) and `text` features; splits chosen by name."""
    base = name.split(":")[0]
    _, builder_info = load_tfds(base, split=None, with_info=True)
    available = list(builder_info.splits)
    pick = [next((s for s in available if any(k in s for k in keys)), None)
            for keys in (("train",), ("dev", "validation"), ("test",))]
    if None in pick:
        raise ValueError(f"TFDS dataset {base!r} needs train, dev/validation and test splits. Received: {available}")
    rate = int(getattr(builder_info.features["speech"], "sample_rate", 16000) or 16000)

    def convert(example):
        from apps.speech_commands.audio import resample

        wave = tf.cast(example["speech"], tf.float32) / 32768.0
        if rate != config.sample_rate:
            out = tf.cast(tf.math.ceil(tf.cast(tf.shape(wave)[0], tf.float32) * config.sample_rate / rate), tf.int32)
            wave = resample(wave, rate, config.sample_rate, out)
        text = tf.strings.regex_replace(tf.strings.lower(example["text"]), r"[^a-z' ]+", " ")
        text = tf.strings.strip(tf.strings.regex_replace(text, " +", " "))
        return {"waveform": wave, "text": text, "fr": tf.constant(""), "es": tf.constant("")}

    parts = [load_tfds(base, split=s, shuffle_files=False).map(convert, num_parallel_calls=tf.data.AUTOTUNE)
             for s in pick]
    return Splits(*parts, {"source": f"tfds: {base}", "splits": pick, "split_by": "the data set's splits"})


def load(config, real_training_audio: bool = True) -> Splits:
    """The splits of `config.data`; real_training_audio only matters for folders (see folder)."""
    return Source.load(config.data, embedded=lambda: embedded(config),
                       tfds=lambda name: tfds_source(name, config),
                       path=lambda path: folder(path, config, real_training_audio))


# ----------------------------------------------------------------------------------------------
# Text pairs for the translation model.

def extra_pairs(config) -> dict[str, list[tuple[str, str]]]:
    """English -> fr / es pairs from `text_pairs` (train.en with train.fr and/or train.es), normalized source."""
    if not config.text_pairs:
        return {lang: [] for lang in LANGUAGES}
    root = resolve_data_path(config.text_pairs, "text_pairs")
    english = root / "train.en"
    if not english.exists():
        raise FileNotFoundError(f"text_pairs needs {english}. Received: text_pairs={config.text_pairs!r}")
    sources = english.read_text(encoding="utf-8").splitlines()
    out = {}
    for lang in LANGUAGES:
        path = root / f"train.{lang}"
        targets = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        pairs = [(normalize_text(s), t.strip()) for s, t in zip(sources, targets) if s.strip() and t.strip()]
        out[lang] = pairs[:config.max_text_pairs] if config.max_text_pairs else pairs
    return out
