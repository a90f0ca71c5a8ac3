"""Text generation sources -> one UTF-8 string per split, then windows of character ids.

- embedded: the docstrings of part of Python's standard library, gathered at run time (see
  `stdlib_docstrings`): about 480,000 characters of real English technical prose with code examples,
  present on every machine that has Python, with no download.
- a path: one UTF-8 text file, or a folder: every file with a TEXT_EXTENSIONS suffix under it,
  recursively, in sorted path order, joined by blank lines.
- tfds:tiny_shakespeare (or any TFDS dataset with a `text` feature): its train/validation/test splits.

Files and folders are split by position, not at random, so that held-out text is text the model has
never seen any part of: the first part trains, then comes validation, and the tail is the test split.
"""

from __future__ import annotations

import collections
import importlib
import inspect
from pathlib import Path

import numpy as np
import tensorflow as tf

from core.data import Source, list_files, load_tfds

TEXT_EXTENSIONS = (".txt", ".text", ".md", ".rst")

# Standard-library modules whose docstrings form the embedded corpus, in this order. Only modules that
# import without side effects on every platform; packages contribute their top-level namespace only.
STDLIB_MODULES = (
    "abc", "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "cmd", "codecs", "collections",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email",
    "enum", "fnmatch", "fractions", "ftplib", "functools", "getopt", "gettext", "glob", "gzip", "hashlib",
    "heapq", "hmac", "html", "http", "imaplib", "inspect", "io", "ipaddress", "itertools", "json", "locale",
    "logging", "mailbox", "math", "mimetypes", "numbers", "operator", "optparse", "os", "pathlib", "pickle",
    "pkgutil", "platform", "poplib", "pprint", "queue", "random", "re", "sched", "secrets", "selectors",
    "shelve", "shlex", "shutil", "signal", "smtplib", "socket", "socketserver", "sqlite3", "ssl",
    "statistics", "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading",
    "timeit", "tokenize", "trace", "traceback", "types", "typing", "unittest", "urllib", "uuid", "warnings",
    "wave", "weakref", "xml", "zipfile", "zoneinfo",
)


def stdlib_docstrings(modules=STDLIB_MODULES) -> str:
    """The embedded corpus: docstrings of Python's standard library, in a fixed order.

    For each module of `modules` in order: the module's docstring, then for each public name defined
    in that module (sorted by name) the docstring of that class or function, and for a class the
    docstrings of its public methods (sorted by name). `inspect.getdoc` removes the indentation;
    a docstring already seen (inherited or repeated) is skipped; docstrings are joined by blank lines.
    The text is the same on every run of one Python version (docstrings change a little between
    Python versions, so splits and vocabularies may too).
    """
    parts, seen = [], set()

    def add(obj):
        doc = inspect.getdoc(obj)
        if doc and doc not in seen:
            seen.add(doc)
            parts.append(doc.strip())

    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:  # e.g. a Python built without sqlite3 or ssl
            continue
        add(module)
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                add(obj)
            if inspect.isclass(obj):
                for method_name, method in sorted(vars(obj).items()):
                    if not method_name.startswith("_") and inspect.isfunction(method):
                        add(method)
    return "\n\n".join(parts) + "\n"


def read_text_files(path: str | Path) -> tuple[str, list[str]]:
    """A UTF-8 file, or every TEXT_EXTENSIONS file under a folder (sorted), joined by blank lines."""
    path = Path(path)
    files = [path] if path.is_file() else list_files(path, TEXT_EXTENSIONS)
    texts = []
    for f in files:
        try:
            texts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise ValueError(f"Text files must be UTF-8. Received: {str(f)!r} ({err})") from None
    return "\n\n".join(texts), [str(f) for f in files]


def split_text(text: str, val_fraction: float, test_fraction: float) -> tuple[str, str, str]:
    """Head for training, then validation, then the test tail, cut at line starts where possible."""
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction and test_fraction must be in (0, 1) with a sum below 1. Received: "
                         f"val_fraction={val_fraction}, test_fraction={test_fraction}")
    n = len(text)

    def cut(fraction):
        at = int(n * fraction)
        newline = text.find("\n", at, at + 2000)  # the next line start, if one is near
        return at if newline < 0 else newline + 1

    a, b = cut(1 - val_fraction - test_fraction), cut(1 - test_fraction)
    return text[:a], text[a:b], text[b:]


def load_texts(spec: str, val_fraction: float, test_fraction: float, max_chars: int = 0):
    """(train, val, test) strings and a description of the source, for one data spec."""
    source = Source.parse(spec)
    if source.kind == "tfds":
        base = source.value.split(":")[0]
        texts = []
        for split in ("train", "validation", "test"):
            ds = load_tfds(base, split=split, shuffle_files=False)
            texts.append("".join(ex["text"].numpy().decode("utf-8") for ex in ds))
        train, val, test = texts
        info = {"source": f"tfds: {base} (its train / validation / test splits)"}
    else:
        if source.kind == "embedded":
            text = stdlib_docstrings()
            info = {"source": f"embedded: docstrings of {len(STDLIB_MODULES)} Python standard-library "
                              "modules"}
        else:
            text, files = read_text_files(source.value)
            info = {"source": f"path: {source.value}", "files": len(files)}
        if max_chars:
            text = text[:max_chars]
        train, val, test = split_text(text, val_fraction, test_fraction)
    if min(len(train), len(val), len(test)) < 2:
        raise ValueError(f"Not enough text to split: {len(train)} / {len(val)} / {len(test)} characters "
                         f"(train / val / test) from {spec!r}.")
    info["chars"] = {"train": len(train), "val": len(val), "test": len(test)}
    return train, val, test, info


def build_vocabulary(text: str, max_vocab: int) -> list[str]:
    """The `max_vocab` most frequent characters of `text`, most frequent first (ties by code point)."""
    counts = collections.Counter(text)
    chars = sorted(counts, key=lambda c: (-counts[c], ord(c)))
    return chars[:max_vocab] if max_vocab > 0 else chars


def encode(text: str, lookup) -> np.ndarray:
    """Character ids of `text` through the same StringLookup the exported model uses."""
    chars = tf.strings.unicode_split(tf.constant(text), "UTF-8")
    return lookup(chars).numpy().astype(np.int32)


def fixed_windows(ids: np.ndarray, length: int) -> tf.data.Dataset:
    """Non-overlapping windows of `length + 1` ids (input and shifted target), for val and test."""
    count = (len(ids) - 1) // length
    if count < 1:
        raise ValueError(f"Held-out text of {len(ids)} characters is shorter than one window of "
                         f"{length + 1}; lower seq_len or raise val_fraction/test_fraction.")
    starts = np.arange(count) * length
    windows = ids[starts[:, None] + np.arange(length + 1)[None]]
    return tf.data.Dataset.from_tensor_slices(windows)


def scored_windows(ids: np.ndarray, length: int, stride: int) -> tf.data.Dataset:
    """Overlapping windows of `length + 1` ids every `stride`, each with the first target it scores.

    Scoring every position of non-overlapping windows averages over contexts of 0..length-1 chars, so
    it overstates the loss of a model that always has the preceding text. Here the first window scores
    all its targets and each later one only the targets the previous one did not: every target of
    `ids` is scored exactly once, with at least `length - stride` characters of context after the
    first window. stride == length gives non-overlapping windows (plus the remainder at the end).
    Yields (window int32 [length + 1], score_from int32).
    """
    targets = len(ids) - 1
    if targets < length:
        raise ValueError(f"Held-out text of {len(ids)} characters is shorter than one window of "
                         f"{length + 1}; lower seq_len or raise val_fraction/test_fraction.")
    if not 0 < stride <= length:
        raise ValueError(f"The evaluation stride must be in 1..seq_len ({length}). Received: {stride}")
    starts = list(range(0, targets - length + 1, stride))
    score_from = [0] + [length - stride] * (len(starts) - 1)
    covered = starts[-1] + length
    if covered < targets:  # the remainder: one more window ending at the last target
        starts.append(targets - length)
        score_from.append(covered - starts[-1])
    windows = ids[np.asarray(starts)[:, None] + np.arange(length + 1)[None]].astype(np.int32)
    return tf.data.Dataset.from_tensor_slices((windows, np.asarray(score_from, np.int32)))


def jittered_windows(ids: np.ndarray, length: int, stride: int, seed: int) -> tf.data.Dataset:
    """Training windows every `stride` ids, each shifted by a fresh random offset in [0, stride) per epoch.

    Fixed offsets would show the model the same cuts every epoch; the jitter makes each epoch a new
    set of windows while an epoch stays one pass over the text. Deterministic for a seed.
    """
    last_start = len(ids) - length - 1
    if last_start < 0:
        raise ValueError(f"Training text of {len(ids)} characters is shorter than one window of "
                         f"{length + 1}; lower seq_len.")
    starts = tf.data.Dataset.range(0, last_start + 1, stride)
    offsets = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    table = tf.constant(ids)

    def window(start, offset):
        start = tf.minimum(start + offset % stride, last_start)
        return table[start:start + length + 1]

    return tf.data.Dataset.zip(starts, offsets).map(window, num_parallel_calls=tf.data.AUTOTUNE)
