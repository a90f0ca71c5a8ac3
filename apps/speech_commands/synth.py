"""Spoken keywords from eSpeak NG (the library and voices ship in the `espeakng-loader` wheel).

eSpeak NG is driven through ctypes with its C API (speak_lib.h): synchronous synthesis, PCM handed
to a callback, voice = "<accent>+<variant>" (e.g. "en-gb-scotland+f3"), speed and pitch set per
utterance. The library keeps one global synthesizer per process, so every call goes through a lock.
`synthesize` renders a whole vocabulary into train/val/test clips and caches them on disk.

    >>> clips = render_words(["yes", "no"], renders_per_word=4, seed=0)
    >>> clips[0].audio.dtype, clips[0].sample_rate   # (dtype('int16'), 22050)
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import math
import os
import threading
from pathlib import Path

import numpy as np

# Accents of English that eSpeak NG ships (espeak-ng-data/lang/gmw) and voice variants
# (espeak-ng-data/voices/!v): formant sets for men, women, old, whispered and robotic voices.
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt",
            "klatt2", "klatt3", "klatt4", "croak", "whisper", "whisperf", "Andy", "Annie", "anika",
            "belinda", "benjamin", "david", "edward", "grandma", "grandpa", "john", "linda", "max",
            "michel", "norbert", "quincy", "rob", "steph", "travis", "victor", "zac")

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 3, 4
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1

# Part of the cache key: change it when the rendering changes.
CACHE_VERSION = "espeak-v3"

_LOCK = threading.Lock()
_ENGINE: _Engine | None = None


@dataclasses.dataclass
class Voice:
    """How one utterance is spoken.

    Args:
        accent: eSpeak language/accent name (one of ACCENTS).
        variant: eSpeak voice variant (one of VARIANTS).
        rate: speed in words per minute (eSpeak accepts 80..450; 175 is normal).
        pitch: base pitch 0..100 (50 is normal).
        pitch_range: intonation range 0..100 (0 is monotone).
    """

    accent: str
    variant: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}"


@dataclasses.dataclass
class Clip:
    word: str
    voice: Voice
    audio: np.ndarray  # int16 mono at sample_rate
    sample_rate: int


class _Engine:
    """The process-wide eSpeak NG instance (initialised once, on first use)."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as err:  # pragma: no cover - it is a declared dependency
            raise ImportError("The embedded speech data needs eSpeak NG: pip install espeakng-loader") from err
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        data_path = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with the data at {data_path.decode()!r}. "
                               f"Received: return value {rate}")
        self.lib = lib
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                         ctypes.c_void_p)
        # Kept on self: ctypes callbacks are freed (and crash the library) once unreferenced.
        self._callback = callback_type(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples, count, events):
        if samples and count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0  # 0 = go on synthesising

    def speak(self, text: str, voice: Voice) -> np.ndarray:
        lib = self.lib
        if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice.name!r}. Received: accent={voice.accent!r}, "
                             f"variant={voice.variant!r}")
        lib.espeak_SetParameter(_ESPEAK_RATE, int(voice.rate), 0)
        lib.espeak_SetParameter(_ESPEAK_PITCH, int(voice.pitch), 0)
        lib.espeak_SetParameter(_ESPEAK_RANGE, int(voice.pitch_range), 0)
        self._chunks = []
        encoded = text.encode("utf-8") + b"\0"
        status = lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed for {text!r} with voice {voice.name!r}. "
                               f"Received: error code {status}")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


def engine() -> _Engine:
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            _ENGINE = _Engine()
        return _ENGINE


def speak(text: str, voice: Voice) -> Clip:
    """Renders `text` with `voice`: int16 PCM at eSpeak's rate (22,050 Hz), leading/trailing silence trimmed."""
    eng = engine()
    with _LOCK:
        audio = eng.speak(text, voice)
    return Clip(text, voice, trim(audio), eng.sample_rate)


def trim(audio: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Cuts the silence eSpeak leaves around a word (samples below `threshold` of the peak)."""
    if audio.size == 0:
        return audio
    loud = np.nonzero(np.abs(audio.astype(np.float32)) > threshold * max(1.0, float(np.abs(audio).max())))[0]
    return audio[loud[0]:loud[-1] + 1] if loud.size else audio[:0]


def random_voice(rng: np.random.Generator, variants=VARIANTS) -> Voice:
    """A voice drawn from every accent, the given variants, speeds 110..260 wpm and pitches 15..85."""
    return Voice(accent=str(rng.choice(ACCENTS)), variant=str(rng.choice(variants)),
                 rate=int(rng.integers(110, 261)), pitch=int(rng.integers(15, 86)),
                 pitch_range=int(rng.integers(10, 91)))


def render_words(words, renders_per_word: int, seed=0, variants=VARIANTS) -> list[Clip]:
    """Each word spoken `renders_per_word` times, each time with a fresh random voice.

    `seed` is anything numpy's default_rng takes (an int or a tuple of ints).
    """
    if renders_per_word <= 0:
        raise ValueError(f"renders_per_word must be positive. Received: renders_per_word={renders_per_word}")
    rng = np.random.default_rng(seed)
    return [speak(word, random_voice(rng, variants)) for word in words for _ in range(renders_per_word)]


def split_counts(renders_per_word: int) -> list[int]:
    """Renders of each word in the train, val and test splits."""
    val = max(2, round(renders_per_word * 0.1))
    test = max(2, round(renders_per_word * 0.1))
    return [max(2, renders_per_word - val - test), val, test]


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "dl_catalogue" / "speech_commands"


def synthesize(keywords: tuple[str, ...], unknown_words: tuple[str, ...], renders_per_word: int,
               sample_rate: int, seed: int = 0) -> dict[str, np.ndarray]:
    """eSpeak renders of every keyword and unknown word, resampled to `sample_rate`, cached on disk.

    Each keyword gets `split_counts(renders_per_word)` renders per split; the unknown words share as
    many, cycling through them. Returns arrays: audio (int16, all clips end to end), offsets [n + 1],
    words [n], splits [n] (0 train, 1 val, 2 test: val and test clips use voice variants that
    training never hears).
    """
    key = hashlib.sha1(repr((CACHE_VERSION, renders_per_word, sample_rate, seed, keywords, unknown_words,
                             ACCENTS, VARIANTS)).encode()).hexdigest()[:12]
    path = cache_dir() / f"espeak-{renders_per_word}-{sample_rate}-{key}.npz"
    if path.exists():
        with np.load(path) as cached:
            return {k: cached[k] for k in cached.files}
    from scipy.signal import resample_poly

    variants = {0: [], 1: [], 2: []}
    for i, v in enumerate(VARIANTS):  # every tenth variant for val, another tenth for test
        variants[1 if i % 10 == 4 else 2 if i % 10 == 9 else 0].append(v)
    chunks, words, splits = [], [], []
    for split, count in enumerate(split_counts(renders_per_word)):
        unknown = [unknown_words[(split * 7 + k) % len(unknown_words)] for k in range(count)]
        plan = [(w, count) for w in keywords] + [(w, unknown.count(w)) for w in unknown_words if w in unknown]
        for k, (word, n) in enumerate(plan):
            for clip in render_words([word], n, seed=(seed, split, k), variants=variants[split]):
                audio = clip.audio.astype(np.float32)
                rate = clip.sample_rate
                if len(words) % 4 == 3:
                    # Every fourth clip passes through 8 kHz, as telephone-band recordings (FSDD) have.
                    audio, rate = resample_poly(audio, 320, 882), 8000
                g = math.gcd(sample_rate, rate)
                audio = resample_poly(audio, sample_rate // g, rate // g)
                chunks.append(np.clip(np.round(audio), -32768, 32767).astype(np.int16))
                words.append(word)
                splits.append(split)
    lengths = np.array([len(c) for c in chunks])
    arrays = {"audio": np.concatenate(chunks), "offsets": np.concatenate([[0], np.cumsum(lengths)]),
              "words": np.array(words), "splits": np.array(splits, np.int8)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return arrays
