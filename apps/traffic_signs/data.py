"""Traffic-sign sources -> train/val/test scenes with ground-truth boxes, and sign crops for the classifier.

Sources (`Config.data`):
- embedded (default, offline): signs drawn procedurally for the chosen GTSRB classes (signs.py) and
  pasted onto real photos shipped in pip wheels (scenes.py).
- a GTSRB classification folder (readers.py). Crops are split by sign track (frames of one track are
  near duplicates); scenes are composed by pasting the real crops onto the background photos, or drawn
  signs with `scene_signs=drawn`.
- a GTSDB detection folder (readers.py). Scenes are split by file and cut into `image_size` tiles at
  native resolution (signs stay their real size); the ground-truth boxes also give real crops.

Everything is materialised as numpy arrays first (the data is small), then wrapped in tf.data. Labels
are indices into `class_ids` (GTSRB ClassIds), which the pipeline keeps in its state.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from apps.traffic_signs import readers, scenes, signs
from core.data import Source, Splits, stable_split

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class DetectionSplits(Splits):
    """Splits whose train/val/test are scenes, plus `crops[split]` and the arrays behind both."""

    scenes: dict = dataclasses.field(default_factory=dict)  # split -> SceneSet
    crops: dict = dataclasses.field(default_factory=dict)  # split -> CropSet


def parse_class_list(spec: str) -> list[int]:
    """'' -> all 43 GTSRB ids; '14,13,12' -> [12, 13, 14] (sorted, checked)."""
    if not spec.strip():
        return list(range(signs.NUM_CLASSES))
    try:
        ids = sorted({int(s) for s in re.split(r"[,\s]+", spec.strip()) if s})
    except ValueError:
        raise ValueError(f"classes must be comma-separated GTSRB ClassIds. Received: classes={spec!r}") from None
    for c in ids:
        signs.check_class_id(c)
    if len(ids) < 2:
        raise ValueError(f"classes needs at least two ids. Received: classes={spec!r}")
    return ids


def backgrounds(cfg) -> tuple[np.ndarray, ...]:
    return scenes.sample_backgrounds() if not cfg.backgrounds else readers.folder_backgrounds(cfg.backgrounds)


def scene_spec(cfg) -> scenes.SceneSpec:
    return scenes.SceneSpec(size=cfg.image_size, max_signs=cfg.max_signs, min_sign=cfg.min_sign,
                     max_sign=cfg.max_sign, empty_fraction=cfg.empty_fraction, occlusion=cfg.occlusion)


def split_fractions(cfg) -> tuple[float, float, float]:
    return 1.0 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction


def make_splits(scene_sets: dict, crops: dict, class_ids: list[int], info: dict) -> DetectionSplits:
    info = {**info, "class_ids": [int(c) for c in class_ids],
            "class_names": [signs.CLASS_NAMES[c] for c in class_ids],
            "scenes": {k: len(v) for k, v in scene_sets.items()},
            "objects": {k: v.objects() for k, v in scene_sets.items()},
            "crops": {k: len(v) for k, v in crops.items()}}
    return DetectionSplits(scene_sets["train"].dataset(), scene_sets["val"].dataset(),
                           scene_sets["test"].dataset(), info, scenes=scene_sets, crops=crops)


def embedded(cfg, seed: int) -> DetectionSplits:
    class_ids = parse_class_list(cfg.classes)
    photos = backgrounds(cfg)
    spec = scene_spec(cfg)
    maker = scenes.drawn_sign_maker(class_ids)
    counts = {"train": cfg.train_scenes, "val": cfg.val_scenes, "test": cfg.test_scenes}
    # Distinct seeds per split: held-out scenes are new draws of backgrounds, signs and placements.
    scene_sets = {k: scenes.generate_scenes(n, spec, maker, seed * 1000 + i, photos)
                  for i, (k, n) in enumerate(counts.items())}
    per_class = {"train": cfg.crops_per_class, "val": max(2, cfg.crops_per_class // 5),
                 "test": max(4, cfg.crops_per_class // 3)}
    crops = {k: scenes.generate_crops(n, class_ids, cfg.crop_size, seed * 1000 + 10 + i, photos)
             for i, (k, n) in enumerate(per_class.items())}
    info = {"source": f"embedded: procedurally drawn GTSRB signs ({len(class_ids)} classes) pasted on "
                      f"{len(photos)} scikit-image / scikit-learn sample photos"}
    return make_splits(scene_sets, crops, class_ids, info)


def gtsrb(root: str, cfg, seed: int) -> DetectionSplits:
    if cfg.scene_signs not in ("data", "drawn"):
        raise ValueError(f"scene_signs must be 'data' or 'drawn'. Received: scene_signs={cfg.scene_signs!r}")
    records = readers.read_gtsrb(root)
    wanted = set(parse_class_list(cfg.classes)) if cfg.classes else None
    if wanted is not None:
        records = [r for r in records if r.class_id in wanted]
    class_ids = sorted({r.class_id for r in records})
    class_index = {c: i for i, c in enumerate(class_ids)}
    parts = readers.split_by_track(records, split_fractions(cfg), seed)
    photos = backgrounds(cfg)
    spec = scene_spec(cfg)
    counts = {"train": cfg.train_scenes, "val": cfg.val_scenes, "test": cfg.test_scenes}
    scene_sets, crops = {}, {}
    for i, (k, n) in enumerate(counts.items()):
        crops[k] = readers.gtsrb_crop_set(parts[k], class_index, cfg.crop_size)
        # A split without crops of its own (tiny data) borrows none: its scenes are left empty.
        if cfg.scene_signs == "drawn":
            maker = scenes.drawn_sign_maker(class_ids)
        else:
            maker = readers.gtsrb_sign_maker(parts[k], class_index) if parts[k] else None
        scene_sets[k] = (scenes.generate_scenes(n, spec, maker, seed * 1000 + i, photos) if maker
                         else scenes.to_scene_set([], spec.size, spec.max_signs))
    if cfg.drawn_crops_per_class > 0:
        # Drawn signs teach each class's design, which helps classes with only a few real tracks.
        drawn = scenes.generate_crops(cfg.drawn_crops_per_class, class_ids, cfg.crop_size, seed * 1000 + 20,
                                      photos)
        crops["train"] = scenes.CropSet(np.concatenate([crops["train"].images, drawn.images]),
                                 np.concatenate([crops["train"].labels, drawn.labels]))
    tracks = {k: len({r.track for r in v}) for k, v in parts.items()}
    pasted = "drawn signs" if cfg.scene_signs == "drawn" else "the real crops"
    info = {"source": f"gtsrb: {root} ({len(records)} crops; split by track: {tracks}); scenes composed "
                      f"from {pasted} on sample photos"}
    return make_splits(scene_sets, crops, class_ids, info)


def gtsdb(root: str, cfg, seed: int) -> DetectionSplits:
    annotated = readers.read_gtsdb(root)
    wanted = set(parse_class_list(cfg.classes)) if cfg.classes else None
    present = sorted({o[4] for objs in annotated.values() for o in objs})
    class_ids = [c for c in present if wanted is None or c in wanted]
    class_index = {c: i for i, c in enumerate(class_ids)}
    by_split = {k: {} for k in SPLITS}
    for path, objects in annotated.items():
        by_split[SPLITS[stable_split(Path(path).name, split_fractions(cfg))]][path] = objects
    scene_sets, crops = {}, {}
    for i, k in enumerate(SPLITS):
        items = readers.gtsdb_tiles(by_split[k], class_index, cfg.image_size, seed * 1000 + i)
        max_objects = max([cfg.max_signs] + [len(o) for _, o in items])
        scene_sets[k] = scenes.to_scene_set(items, cfg.image_size, max_objects)
        crops[k] = readers.gtsdb_crop_set(by_split[k], class_index, cfg.crop_size)
    info = {"source": f"gtsdb: {root} ({len(annotated)} scenes, {cfg.image_size}px tiles at native scale)"}
    return make_splits(scene_sets, crops, class_ids, info)


def load(cfg, seed: int) -> DetectionSplits:
    source = Source.parse(cfg.data)
    if source.kind == "embedded":
        return embedded(cfg, seed)
    if source.kind == "tfds":
        raise ValueError("traffic_signs reads GTSRB/GTSDB folders, not TFDS (TFDS has no GTSRB build). "
                         f"Received: data={cfg.data!r}")
    root = Path(source.value)
    if next(iter(root.rglob("gt.txt")), None) is not None:
        return gtsdb(str(root), cfg, seed)
    return gtsrb(str(root), cfg, seed)
