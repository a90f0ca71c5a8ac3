"""Captioning sources -> unbatched (uint8 image [S, S, 3], string captions [R]) datasets.

Every image keeps all of its reference captions (padded with "" to the source's largest count R),
so that training can draw one per step and evaluation can score against all of them.

- embedded: generated scenes with every paraphrase of their grammar (see scenes.py).
- a COCO caption file (`captions_*.json`) or a folder holding them (directly or in `annotations/`);
  images are looked up in a folder named after the file's split (`train2017/`) beside it or beside
  `annotations/`, or in the folder itself.
- Flickr8k: `Flickr8k.token.txt` (or its folder); images in `Flicker8k_Dataset/`, `Flickr8k_Dataset/`,
  `Images/` or beside the token file.
- a CSV file with `path` and `caption` columns (paths relative to the CSV), one row per caption.
- tfds:coco_captions (Karpathy splits: train + restval, val, test), or another TFDS set with an
  `image` and a `captions/text` feature.

Local sources are pooled and split by image (never by caption), deterministically for a seed.
Images are resized exactly as the exported endpoint resizes them (squashed to S x S, antialiased).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.captioning import scenes
from core.data import Source, Splits, decode_image, load_tfds, split_indices
from core.data import resize_square as resize

TFDS_MAX_CAPTIONS = 7  # COCO has 5 to 7 captions per image


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    # Cached training images stay uint8 (a quarter of float32's memory); serving feeds the float resize.
    return tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)


def pad_captions(caption_lists: list[list[str]], width: int | None = None) -> np.ndarray:
    """Lists of captions -> object array [n, width] padded with ""."""
    width = width or max(len(c) for c in caption_lists)
    out = np.full((len(caption_lists), width), "", dtype=object)
    for i, captions in enumerate(caption_lists):
        out[i, :len(captions)] = captions[:width]
    return out


def _split_sizes(parts) -> dict:
    return {k: int(len(p)) for k, p in zip(("train", "val", "test"), parts)}


def embedded(num_scenes: int, size: int, fractions, seed: int):
    images, captions, _ = scenes.generate(num_scenes, size, seed)
    padded = pad_captions(captions, scenes.MAX_CAPTIONS)
    parts = split_indices(num_scenes, fractions, seed)
    splits = [tf.data.Dataset.from_tensor_slices((images[p], padded[p].astype(str))) for p in parts]
    info = {"source": f"embedded: {num_scenes} generated scenes, {size}x{size}, all grammar paraphrases "
                      "as references", "sizes": _split_sizes(parts)}
    return Splits(*splits, info), [c for i in parts[0] for c in captions[i]]


# ------------------------------------------------------------------------------------------------
# Local files: each reader returns {image path: [captions]}.

def read_coco_json(json_path: Path) -> dict[str, list[str]]:
    data = json.loads(json_path.read_text())
    if "images" not in data or "annotations" not in data:
        raise ValueError(f"{str(json_path)!r} is not a COCO caption file: it needs 'images' and "
                         f"'annotations'. Received keys: {sorted(data)}")
    split = json_path.stem.split("_", 1)[-1]  # captions_train2017 -> train2017
    base = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    folders = [base / split, json_path.parent / split, base / "images" / split, base]
    folder = next((f for f in folders if f.is_dir() and any(f.glob("*.jpg"))), None)
    if folder is None:
        raise FileNotFoundError(f"No image folder for {json_path.name}: looked for *.jpg in "
                                f"{[str(f) for f in folders]}")
    names = {image["id"]: image["file_name"] for image in data["images"]}
    captions = defaultdict(list)
    for annotation in data["annotations"]:
        captions[str(folder / names[annotation["image_id"]])].append(annotation["caption"].strip())
    return dict(captions)


def read_flickr_tokens(token_path: Path) -> dict[str, list[str]]:
    """`<image>.jpg#<n>\\t<caption>` lines (Flickr8k.token.txt, also Flickr30k's results_20130124.token)."""
    base = token_path.parent
    candidates = [base / d for d in ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images", "images")] + [base]
    folder = next((f for f in candidates if f.is_dir() and any(f.glob("*.jpg"))), base)
    captions = defaultdict(list)
    for number, line in enumerate(token_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, caption = line.partition("\t")
        if not sep:
            raise ValueError(f"{token_path.name} line {number}: expected '<image>#<n><TAB><caption>'. "
                             f"Received: {line[:80]!r}")
        captions[str(folder / key.split("#")[0])].append(caption.strip())
    return dict(captions)


def read_csv(csv_path: Path) -> dict[str, list[str]]:
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "caption"} <= set(reader.fieldnames):
            raise ValueError(f"{str(csv_path)!r} needs 'path' and 'caption' columns. "
                             f"Received columns: {reader.fieldnames}")
        captions = defaultdict(list)
        for row in reader:
            captions[str(csv_path.parent / row["path"])].append(row["caption"].strip())
    return dict(captions)


def read_local(path: Path) -> tuple[dict[str, list[str]], str]:
    """Finds the caption format of a file or folder; returns ({image path: captions}, format name)."""
    if path.is_dir():
        found = (sorted(path.glob("captions_*.json")) or sorted(path.glob("annotations/captions_*.json"))
                 or sorted(path.glob("*.token.txt")) or sorted(path.glob("*.csv")))
        if not found:
            raise FileNotFoundError(
                f"No captions in {str(path)!r}: expected captions_*.json (COCO), *.token.txt (Flickr8k) "
                "or a CSV with path,caption columns.")
        files = found if found[0].suffix == ".json" else found[:1]
    else:
        files = [path]
    captions: dict[str, list[str]] = {}
    for file in files:
        if file.suffix == ".json":
            reader, kind = read_coco_json, "COCO captions"
        elif file.name.endswith(".token.txt") or file.suffix == ".token":
            reader, kind = read_flickr_tokens, "Flickr8k tokens"
        elif file.suffix == ".csv":
            reader, kind = read_csv, "CSV"
        else:
            raise ValueError(f"Unknown caption file type: {str(file)!r}. Expected a COCO captions_*.json, "
                             "a Flickr8k *.token.txt or a .csv with path,caption columns.")
        for image, texts in reader(file).items():
            captions.setdefault(image, []).extend(texts)
    return captions, f"{kind}: {', '.join(str(f) for f in files)}"


def local(path: str, size: int, fractions, seed: int):
    captions, description = read_local(Path(path))
    present = {k: v for k, v in sorted(captions.items()) if Path(k).is_file()}
    if len(present) < 3:
        missing = [k for k in captions if k not in present][:3]
        raise FileNotFoundError(f"Only {len(present)} of {len(captions)} captioned images exist "
                                f"(need 3 or more); missing e.g. {missing}")
    paths = np.asarray(list(present))
    padded = pad_captions(list(present.values())).astype(str)
    parts = split_indices(len(paths), fractions, seed)

    def load(image_path, texts):
        return to_uint8(resize(decode_image(tf.io.read_file(image_path), 3, "image file"), size)), texts

    splits = [tf.data.Dataset.from_tensor_slices((paths[p], padded[p])).map(
        load, num_parallel_calls=tf.data.AUTOTUNE) for p in parts]
    info = {"source": description, "images": len(present), "missing_images": len(captions) - len(present),
            "captions": int(sum(len(v) for v in present.values())), "sizes": _split_sizes(parts)}
    train_captions = [c for i in parts[0] for c in present[paths[i]]]
    return Splits(*splits, info), train_captions


# ------------------------------------------------------------------------------------------------
# TFDS.

def tfds_source(name: str, size: int):
    import tensorflow_datasets as tfds

    base = name.split(":")[0]
    cuts = {"train": "train+restval", "val": "val", "test": "test"} if base == "coco_captions" else \
        {"train": "train[:80%]", "val": "train[80%:90%]", "test": "train[90%:]"}

    def example(features):
        texts = features["captions"]["text"][:TFDS_MAX_CAPTIONS]
        texts = tf.pad(texts, [[0, TFDS_MAX_CAPTIONS - tf.shape(texts)[0]]])
        return to_uint8(resize(features["image"], size)), texts

    splits = {key: load_tfds(base, split=cut, shuffle_files=False).map(
        example, num_parallel_calls=tf.data.AUTOTUNE) for key, cut in cuts.items()}
    # Captions only, images left encoded: the vocabulary needs one pass over the training text.
    text_only = load_tfds(base, split=cuts["train"], shuffle_files=False,
                          decoders={"image": tfds.decode.SkipDecoding()})
    train_captions = [t.decode("utf-8") for texts in text_only.map(lambda f: f["captions"]["text"])
                      .as_numpy_iterator() for t in texts]
    info = {"source": f"tfds: {base}", "splits": cuts}
    return Splits(splits["train"], splits["val"], splits["test"], info), train_captions


def load(spec: str, size: int, val_fraction: float, test_fraction: float, seed: int, num_scenes: int):
    """(Splits, the training split's captions as a flat list) for a data source spec."""
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    source = Source.parse(spec)
    if source.kind == "embedded":
        return embedded(num_scenes, size, fractions, seed)
    if source.kind == "tfds":
        return tfds_source(source.value, size)
    return local(source.value, size, fractions, seed)
