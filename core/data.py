"""tf.data helpers shared by the apps: sources, deterministic splits, decoding, batching."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
# Where bench presets and real-data tests read local copies of public data sets: CATALOGUE_DATA, else
# ../shared/datasets beside the checkout when that exists (the project's own machines).
SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
AUDIO_EXTENSIONS = (".wav",)


def data_root() -> Path:
    """The folder holding local copies of real data sets (CATALOGUE_DATA, default ../shared/datasets)."""
    configured = os.environ.get("CATALOGUE_DATA")
    if configured:
        return Path(configured).expanduser()
    return SHARED_DATASETS if SHARED_DATASETS.exists() else Path.home() / "catalogue_data"


@dataclasses.dataclass
class Splits:
    """Unbatched train / val / test datasets plus what describes them (for the model card)."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Source:
    """Where data comes from: `embedded`, `tfds:NAME[/CONFIG][:SPLIT]`, or a local path."""

    kind: str  # embedded | tfds | path
    value: str = ""

    @classmethod
    def parse(cls, spec: str | None) -> Source:
        spec = (spec or "embedded").strip()
        if spec in ("", "embedded", "default"):
            return cls("embedded")
        if spec.startswith("tfds:"):
            name = spec[len("tfds:"):]
            if not name:
                raise ValueError(f"tfds source needs a dataset name, e.g. tfds:tf_flowers. Received: {spec!r}")
            return cls("tfds", name)
        path = Path(spec).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"Data source {spec!r} is neither 'embedded', 'tfds:NAME' nor an existing path."
            )
        return cls("path", str(path))

    @classmethod
    def load(cls, spec: str | None, *, embedded: Callable[[], Splits], tfds: Callable[[str], Splits],
             path: Callable[[str], Splits]) -> Splits:
        """Parses `spec` and calls the loader for its kind: embedded(), tfds(name) or path(path)."""
        source = cls.parse(spec)
        if source.kind == "embedded":
            return embedded()
        return tfds(source.value) if source.kind == "tfds" else path(source.value)


def percent_cuts(split: str, fractions: Sequence[float]) -> list[str]:
    """TFDS split strings cutting one split into train/val/test by percentage, e.g. train[:80%]."""
    train = int(round(fractions[0] * 100))
    val = train + int(round(fractions[1] * 100))
    return [f"{split}[:{train}%]", f"{split}[{train}%:{val}%]", f"{split}[{val}%:]"]


def split_indices(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0):
    """Deterministic shuffled index split: the same seed always gives the same train/val/test."""
    if n < len(fractions):
        raise ValueError(f"Need at least {len(fractions)} examples to split. Received: n={n}")
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    parts = np.split(order, bounds)
    return [np.sort(p) for p in parts]


def stable_split(key: str, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> int:
    """Split id for one item from a hash of its key: stable when files are added or removed."""
    h = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    edge = 0.0
    for i, f in enumerate(fractions):
        edge += f
        if h < edge:
            return i
    return len(fractions) - 1


def batched(ds: tf.data.Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
            cache: bool = True, map_fn: Callable | None = None, drop_remainder: bool = False,
            shuffle_buffer: int = 4096) -> tf.data.Dataset:
    """cache -> shuffle -> batch -> map (vectorized, parallel) -> prefetch, in the order that is fast.

    Caching before shuffling keeps decoding out of later epochs; mapping after batching lets per-batch
    work (augmentation, tokenization) run vectorized.
    """
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if map_fn is not None:
        ds = ds.map(map_fn, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(AUTOTUNE)


def with_known_length(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds`, with its length made known to tf.data when a filter (or a generator) hid it.

    Keras reads an unknown length as a shortage: it warns "Your input ran out of data; interrupting
    training" when the first validation pass ends. Counting takes one pass, which also fills a cache.
    """
    if ds.cardinality() != tf.data.UNKNOWN_CARDINALITY:
        return ds
    count = ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)
    return ds.apply(tf.data.experimental.assert_cardinality(count))


def list_files(root: str | Path, extensions: Sequence[str]) -> list[Path]:
    """All files under `root` (recursively) with one of `extensions`, sorted for determinism."""
    root = Path(root)
    exts = tuple(e.lower() for e in extensions)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise FileNotFoundError(f"No files with extensions {list(exts)} under {str(root)!r}")
    return files


def class_folders(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS):
    """Class-per-folder layout: `root/<class>/**/<file>`. Returns (paths, labels, class_names).

    A single extra level such as `train/` (as in `flowers_128/train/<class>/`) is looked through.
    """
    root = Path(root)
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(subdirs) == 1:
        return class_folders(subdirs[0], extensions)
    if len(subdirs) < 2:
        raise ValueError(f"Expected one sub-folder per class under {str(root)!r}. Received: {len(subdirs)}")
    paths, labels = [], []
    for label, d in enumerate(subdirs):
        files = [p for p in sorted(d.rglob("*")) if p.suffix.lower() in extensions]
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    if not paths:
        raise FileNotFoundError(f"No {list(extensions)} files in the class folders of {str(root)!r}")
    return paths, np.asarray(labels, np.int32), [d.name for d in subdirs]


def load_tfds(name: str, split: str | None = None, **kwargs):
    """tfds.load with a clear error when the data cannot be fetched (offline machines)."""
    import tensorflow_datasets as tfds

    spec, _, split_from_name = name.partition(":")
    try:
        return tfds.load(spec, split=split or split_from_name or None, **kwargs)
    except Exception as err:  # noqa: BLE001 - TFDS raises many types for network and missing data
        data_dir = os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
        raise RuntimeError(
            f"Could not load TFDS dataset {name!r} ({type(err).__name__}: {err}). TFDS downloads on "
            f"first use; on an offline machine, prepare it elsewhere and copy it to {data_dir}."
        ) from err


# ----------------------------------------------------------------------------------------------
# In-graph decoding with errors that name the input (used by pipelines and exported endpoints).

_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_PIXELS_ENV = "CATALOGUE_MAX_IMAGE_PIXELS"
# Images of one request decode side by side: four at the per-image limit take about 2 GB decoded.
DEFAULT_REQUEST_IMAGES_AT_LIMIT = 4
MAX_REQUEST_PIXELS_ENV = "CATALOGUE_MAX_REQUEST_PIXELS"


def _pixels_from_env(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a positive number of pixels. Received: {name}={raw!r}")
    return value


def max_image_pixels() -> int:
    """The pixel limit per image that decoding graphs embed when traced (so exports carry it):
    CATALOGUE_MAX_IMAGE_PIXELS when set at export time, else DEFAULT_MAX_IMAGE_PIXELS."""
    return _pixels_from_env(MAX_IMAGE_PIXELS_ENV) or DEFAULT_MAX_IMAGE_PIXELS


def max_request_pixels() -> int:
    """The limit on the pixels of all images of one request, embedded like max_image_pixels():
    CATALOGUE_MAX_REQUEST_PIXELS when set at export time, else DEFAULT_REQUEST_IMAGES_AT_LIMIT
    images at the per-image limit."""
    return _pixels_from_env(MAX_REQUEST_PIXELS_ENV) or DEFAULT_REQUEST_IMAGES_AT_LIMIT * max_image_pixels()


def printable(data: tf.Tensor, length: int = 16) -> tf.Tensor:
    """The first `length` bytes of a string, with invalid UTF-8 replaced: error messages must stay
    decodable whatever a client sent (TF raises UnicodeDecodeError on a message that is not UTF-8)."""
    return tf.strings.unicode_transcode(tf.strings.substr(data, 0, length), "UTF-8", "UTF-8", errors="replace")


def is_image_bytes(data: tf.Tensor) -> tf.Tensor:
    """True where a scalar string starts like a JPEG, PNG, GIF or BMP file."""
    checks = [tf.strings.substr(data, 0, len(m)) == m for m in _IMAGE_MAGIC]
    return tf.reduce_any(tf.stack(checks))


def image_header_size(data: tf.Tensor, max_pixels: int | None = None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(height, width, frames) that one encoded image declares, as int64 scalars, read without
    decoding; 0 x 0 when the header is not readable (the decoder then says why).

    TF decodes every frame of a GIF at the full screen size, even when asked for one image, so a
    GIF's frames count: an upper bound from the pairs 00 2C (every image descriptor after the first
    block follows a block terminator), and, only when that bound would exceed `max_pixels`, the
    exact count from walking the GIF's blocks (stopping once over the limit).
    """
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    padded = tf.strings.join([data, tf.constant(b"\0" * 32)])  # substr past the end would raise
    head = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, 32), tf.uint8), tf.int64)

    def big_endian(at, size):
        return sum(head[at + i] * 256 ** (size - 1 - i) for i in range(size))

    def little_endian(at, size):
        return sum(head[at + i] * 256 ** i for i in range(size))

    def signed32(value):
        return tf.where(value >= 2 ** 31, value - 2 ** 32, value)

    def starts(magic):
        return tf.strings.substr(data, 0, len(magic)) == magic

    def jpeg_size():
        return tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)

    is_png = starts(b"\x89PNG") & (tf.strings.substr(padded, 12, 4) == b"IHDR")
    is_gif, is_bmp = starts(b"GIF8"), starts(b"BM")
    jpeg = tf.cond(starts(b"\xff\xd8\xff"), jpeg_size, lambda: tf.zeros([2], tf.int64))
    height = tf.where(is_png, big_endian(20, 4), tf.where(
        is_gif, little_endian(8, 2), tf.where(is_bmp, tf.abs(signed32(little_endian(22, 4))), jpeg[0])))
    width = tf.where(is_png, big_endian(16, 4), tf.where(
        is_gif, little_endian(6, 2), tf.where(is_bmp, tf.abs(signed32(little_endian(18, 4))), jpeg[1])))
    screen = height * width
    one = tf.constant(1, tf.int64)
    frames = tf.cond(is_gif & (screen > 0) & (screen <= limit),
                     lambda: _gif_frames(data, head, screen, limit), lambda: one)
    return height, width, frames


def _gif_frames(data: tf.Tensor, head: tf.Tensor, screen: tf.Tensor, limit: int) -> tf.Tensor:
    """Frames of a GIF: an upper bound, or the exact count when the bound would be over the limit."""
    length = tf.cast(tf.strings.length(data), tf.int64)
    raw = tf.cast(tf.io.decode_raw(tf.strings.join([data, tf.constant(b"\0" * 800)]), tf.uint8), tf.int64)

    def colour_table(flags):  # flag 0x80: a table of 2^(n + 1) RGB entries follows (n: the low 3 bits)
        return tf.where(flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), flags % 8), 0)

    first = 13 + colour_table(head[10])
    bound = tf.reduce_sum(tf.cast((raw[:-1] == 0) & (raw[1:] == 0x2C), tf.int64)) + tf.cast(
        (raw[first] == 0x2C) & (raw[first - 1] != 0), tf.int64)

    def walk():
        # One step per block or sub-block: 0x21 extension (introducer, label, sub-blocks), 0x2C image
        # (10-byte descriptor, local colour table, LZW code size, sub-blocks), anything else ends.
        def body(pos, frames, in_blocks, stop):
            byte = raw[pos]
            is_image = tf.logical_not(in_blocks) & (byte == 0x2C)
            block_end = tf.where(byte == 0x21, pos + 2, pos + 11 + colour_table(raw[pos + 9]))
            next_pos = tf.where(in_blocks, pos + 1 + byte, block_end)
            ends = tf.logical_not(in_blocks) & (byte != 0x21) & (byte != 0x2C)
            return next_pos, frames + tf.cast(is_image, tf.int64), tf.logical_not(in_blocks) | (byte != 0), ends

        def cond(pos, frames, in_blocks, stop):
            return tf.logical_not(stop) & (pos < length) & (frames * screen <= limit)

        start = (first, tf.constant(0, tf.int64), tf.constant(False), tf.constant(False))
        return tf.while_loop(cond, body, start)[1]

    return tf.maximum(tf.cond(bound * screen > limit, walk, lambda: bound), 1)


def check_image_size(data: tf.Tensor, input_name: str = "image_bytes", max_pixels: int | None = None) -> tf.Operation:
    """Refuses (InvalidArgument naming the size and the limit) one encoded image whose header declares
    more than `max_pixels` pixels (default: max_image_pixels()), before any decoding: a small PNG
    can declare 16000 x 16000 pixels and take gigabytes to decode."""
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    height, width, frames = image_header_size(data, limit)
    pixels = height * width * frames
    in_frames = tf.where(frames > 1, tf.strings.format(" in {} frames or more", frames), "")
    message = tf.strings.join([
        tf.strings.format(f"Image too large in {input_name}: {{}}x{{}} pixels", [width, height]), in_frames,
        tf.strings.format(f" ({{}} pixels) is more than the limit of {limit} pixels per image "
                          f"({MAX_IMAGE_PIXELS_ENV} when exporting)", pixels)])
    return tf.debugging.Assert(pixels <= limit, [message])


def decode_image(data: tf.Tensor, channels: int = 3, input_name: str = "image_bytes",
                 max_pixels: int | None = None) -> tf.Tensor:
    """Decodes one encoded JPEG/PNG/GIF/BMP to uint8 [H, W, channels], or fails naming the input.

    The magic-number check turns TF's generic decode error into one that says which input was bad
    and what it started with; the header's size is checked against `max_pixels` (default:
    max_image_pixels()) before decoding; decode errors for truncated files still surface as
    InvalidArgument.
    """
    ok = is_image_bytes(data)
    assert_op = tf.debugging.Assert(
        ok,
        [f"Invalid {input_name}: expected encoded JPEG, PNG, GIF or BMP bytes; received bytes starting with",
         printable(data), "of length", tf.strings.length(data)],
        summarize=16,
    )
    with tf.control_dependencies([assert_op]):
        size_op = check_image_size(data, input_name, max_pixels)
    with tf.control_dependencies([size_op]):
        image = tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, channels])
    return image


def resize_square(image: tf.Tensor, size: int) -> tf.Tensor:
    """uint8 or float [H, W, C] (or a batch) -> float32 [size, size, C] in 0..255, antialiased.

    The one resize that training data and exported endpoints share, so both see the same pixels.
    """
    return tf.image.resize(tf.cast(image, tf.float32), (size, size), antialias=True)


def image_folder(root: str | Path, size: int, fractions: Sequence[float], seed: int,
                 train_size: int | None = None) -> Splits:
    """Every image under `root`, at any depth and size, as unlabeled float32 [size, size, 3] squares in
    0..255, split per file by `fractions` (train, val, test) with `seed`; the training images at
    train_size (default: size), for augmentations that cut crops from them."""
    paths = np.asarray([str(p) for p in list_files(root, IMAGE_EXTENSIONS)])
    parts = split_indices(len(paths), fractions, seed)

    def make(idx, side):
        ds = tf.data.Dataset.from_tensor_slices(paths[idx])
        return ds.map(lambda p: resize_square(decode_image(tf.io.read_file(p), 3, "image file"), side),
                      num_parallel_calls=tf.data.AUTOTUNE)

    info = {"source": f"folder: {root}",
            "sizes": {k: int(len(p)) for k, p in zip(("train", "val", "test"), parts)}}
    return Splits(make(parts[0], train_size or size), make(parts[1], size), make(parts[2], size), info)


def check_request_size(batch: tf.Tensor, input_name: str = "image_bytes", max_pixels: int | None = None,
                       max_total_pixels: int | None = None) -> tf.Operation:
    """Refuses (InvalidArgument naming the total and the limit) a batch of encoded images whose headers
    declare more than `max_total_pixels` pixels in all (default: max_request_pixels()), before any
    decoding: images decode side by side, so each being under the per-image limit is not enough."""
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    request_limit = max_request_pixels() if max_total_pixels is None else int(max_total_pixels)

    def pixels(data):
        height, width, frames = image_header_size(data, limit)
        return height * width * frames

    each = tf.map_fn(pixels, tf.reshape(batch, [-1]), fn_output_signature=tf.int64)
    # An image over its own limit is refused by name when it is decoded; the total counts the others.
    total = tf.reduce_sum(tf.where(each <= limit, each, 0))
    message = tf.strings.format(
        f"Request too large in {input_name}: {{}} images declare {{}} pixels in all, more than the limit "
        f"of {request_limit} pixels per request ({MAX_REQUEST_PIXELS_ENV} when exporting)", [tf.size(each), total])
    return tf.debugging.Assert(total <= request_limit, [message])


def decode_resize_images(batch: tf.Tensor, size: Sequence[int], channels: int = 3,
                         input_name: str = "image_bytes", max_pixels: int | None = None,
                         max_total_pixels: int | None = None) -> tf.Tensor:
    """Batch of encoded images of any sizes -> float32 [N, size[0], size[1], channels] in [0, 255].

    The headers' pixels are checked per image (`max_pixels`) and for the batch (`max_total_pixels`)
    before anything is decoded."""

    def one(data):
        # Resized from uint8 (the same pixels as from float32): no float copy of the full-size image.
        return tf.image.resize(decode_image(data, channels, input_name, max_pixels), size, antialias=True)

    with tf.control_dependencies([check_request_size(batch, input_name, max_pixels, max_total_pixels)]):
        batch = tf.identity(batch)
    # Images decode independently: let the graph run several at once (batch 32 was decode-bound).
    return tf.map_fn(one, batch, fn_output_signature=tf.TensorSpec([*size, channels], tf.float32),
                     parallel_iterations=16)


def check_utf8(text: tf.Tensor, input_name: str) -> tf.Tensor:
    """`text` after checking that every string is valid UTF-8, or InvalidArgument naming the input
    and the rows: tokenizers would otherwise turn bad bytes into made-up words."""
    # Replacing invalid sequences changes a string exactly when it is not valid UTF-8.
    valid = tf.reshape(tf.equal(tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace"), text), [-1])
    check = tf.debugging.Assert(tf.reduce_all(valid), [
        f"Invalid {input_name}: expected UTF-8 text; received invalid UTF-8 bytes in {input_name} rows",
        tf.where(tf.logical_not(valid))[:, 0]], summarize=8)
    with tf.control_dependencies([check]):
        return tf.identity(text)


def check_text_length(text: tf.Tensor, input_name: str, max_chars: int) -> tf.Tensor:
    """`text` after checking that no string holds more than `max_chars` UTF-8 characters, or
    InvalidArgument naming the input, the rows and the limit: for inputs whose cost grows with their
    length and that nothing truncates. Check UTF-8 first (check_utf8): lengths count characters."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive. Received: max_chars={max_chars}")
    lengths = tf.reshape(tf.strings.length(text, unit="UTF8_CHAR"), [-1])
    over = lengths > max_chars
    message = tf.strings.format(
        f"Text too long in {input_name}: rows {{}} hold {{}} characters, more than the limit of {max_chars} "
        f"characters per {input_name}", [tf.where(over)[:, 0], tf.boolean_mask(lengths, over)], summarize=8)
    check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(over)), [message])
    with tf.control_dependencies([check]):
        return tf.identity(text)


def read_bytes(item) -> bytes:
    """Raw input for predict(): bytes as they are, a path's file content otherwise."""
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    path = Path(item)
    if not path.is_file():
        raise FileNotFoundError(f"Input file not found: {str(item)!r}")
    return path.read_bytes()


# ----------------------------------------------------------------------------------------------
# Audio.

def decode_wav(data: tf.Tensor, input_name: str = "audio_wav_bytes") -> tuple[tf.Tensor, tf.Tensor]:
    """One encoded 16-bit PCM WAV -> (float32 mono waveform [T] in [-1, 1], int32 sample rate).

    Non-WAV bytes and files cut short fail with an InvalidArgument error that names the input and
    says what was received (TF's own decoder only says "Data too short").
    """
    length = tf.strings.length(data)
    padded = tf.strings.join([data, tf.constant(b"\0" * 12)])  # substr past the end would raise
    is_wav = tf.logical_and(tf.strings.substr(padded, 0, 4) == b"RIFF",
                            tf.strings.substr(padded, 8, 4) == b"WAVE")
    not_wav = tf.debugging.Assert(
        is_wav,
        [f"Invalid {input_name}: expected a WAV file (RIFF/WAVE header); received bytes starting with",
         printable(data), "of length", length], summarize=16)
    size_bytes = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 4, 4), tf.uint8), tf.int64)
    riff_size = tf.reduce_sum(size_bytes * tf.constant([1, 256, 65536, 16777216], tf.int64))
    # Streaming writers leave the size 0 or 0xFFFFFFFF: only a real size can reveal a truncation.
    size_known = tf.logical_and(riff_size > 0, riff_size < 0xFFFFFFFF)
    complete = tf.logical_and(length >= 44, tf.logical_or(tf.logical_not(size_known),
                                                          tf.cast(length, tf.int64) >= riff_size + 8))
    with tf.control_dependencies([not_wav]):
        truncated = tf.debugging.Assert(
            complete,
            [f"Truncated {input_name}: the WAV header announces", riff_size + 8,
             "bytes but only", length, "were received"])
    with tf.control_dependencies([truncated]):
        audio, rate = tf.audio.decode_wav(data)
    return tf.reduce_mean(audio, axis=-1), rate
