"""Readers of the real data sets' folders: GTSRB crops (CSVs or class folders), which also become signs
pasted into scenes, and GTSDB scenes.

- GTSRB training set: `Final_Training/Images/<ClassId>/GT-<ClassId>.csv` (semicolon CSVs with
  Roi.X1..Roi.Y2 and ClassId), any folder of GT-*.csv files, or class-per-folder `<ClassId>/*.ppm|jpg`
  (with an optional labels.csv naming each file's track, as in gtsrb_subset).
- GTSDB: `gt.txt` (`file;x1;y1;x2;y2;ClassId`) beside the .ppm scenes.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from apps.traffic_signs import signs
from apps.traffic_signs.scenes import CropSet, crop_around, shrink

IMAGE_EXTENSIONS = (".ppm", ".png", ".jpg", ".jpeg", ".bmp")


def folder_backgrounds(root: str) -> tuple[np.ndarray, ...]:
    """Every photo under `root` (the `backgrounds` setting), shrunk for fast cropping."""
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"No background images under {root!r}")
    return tuple(shrink(np.asarray(Image.open(p).convert("RGB"))) for p in files)


def load_rgb(path: str) -> Image.Image:
    return Image.open(path).convert("RGB")


# ----------------------------------------------------------------------------------------------
# GTSRB classification folders: real crops, split by track.

@dataclasses.dataclass
class GtsrbRecord:
    path: str
    class_id: int
    track: str
    roi: tuple | None  # x1, y1, x2, y2 inside the image (inclusive GTSRB pixel indices)


def _class_from_folder(name: str) -> int | None:
    return int(name) if name.isdigit() and int(name) < signs.NUM_CLASSES else None


def _track_of(path: Path) -> str:
    # GTSRB training files are <track>_<frame>.ppm; files without a track are their own track.
    stem = path.stem
    return stem.split("_")[0] if "_" in stem else stem


def read_gtsrb(root: str | Path) -> list[GtsrbRecord]:
    """GTSRB records from GT-*.csv files (with ROIs) or class-per-folder images (ROI estimated)."""
    root = Path(root)
    records: list[GtsrbRecord] = []
    csvs = sorted(root.rglob("GT-*.csv"))
    for table in csvs:
        with open(table, newline="") as f:
            for row in csv.DictReader(f, delimiter=";"):
                if "ClassId" not in row:
                    raise ValueError(f"{table} has no ClassId column (is it the unlabelled test CSV?)")
                path = table.parent / row["Filename"]
                roi = tuple(int(row[k]) for k in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
                records.append(GtsrbRecord(str(path), int(row["ClassId"]),
                                           f"{row['ClassId']}/{_track_of(path)}", roi))
    if records:
        return records
    labels = root / "labels.csv"
    tracks = {}
    if labels.exists():  # gtsrb_subset: path,class_id,track,...
        with open(labels, newline="") as f:
            tracks = {row["path"]: f"{row['class_id']}/{row['track']}" for row in csv.DictReader(f)}
    for folder in sorted(d for d in root.iterdir() if d.is_dir()):
        class_id = _class_from_folder(folder.name)
        if class_id is None:
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                rel = path.relative_to(root).as_posix()
                records.append(GtsrbRecord(str(path), class_id, tracks.get(rel, f"{class_id}/{_track_of(path)}"),
                                           None))
    if not records:
        raise FileNotFoundError(f"No GTSRB data under {str(root)!r}: expected GT-*.csv files or "
                                f"class folders named by ClassId (00..42) holding images")
    return records


def estimated_roi(width: int, height: int) -> tuple[int, int, int, int]:
    """GTSRB crops keep a 10% border (at least 5 px) around the sign: the sign box inside the crop."""
    bx, by = max(5.0, width / 12.0), max(5.0, height / 12.0)
    bx, by = min(bx, width / 4), min(by, height / 4)
    return int(round(bx)), int(round(by)), int(round(width - bx)) - 1, int(round(height - by)) - 1


def split_by_track(records: list[GtsrbRecord], fractions, seed: int) -> dict[str, list[GtsrbRecord]]:
    """Whole tracks go to one split; every class keeps at least one track for training."""
    by_class: dict[int, list[str]] = {}
    for r in records:
        by_class.setdefault(r.class_id, [])
        if r.track not in by_class[r.class_id]:
            by_class[r.class_id].append(r.track)
    assign = {}
    rng = np.random.default_rng(seed)
    for _class_id, tracks in sorted(by_class.items()):
        order = [tracks[i] for i in rng.permutation(len(tracks))]
        n_test = int(round(fractions[2] * len(order))) if len(order) > 1 else 0
        n_val = int(round(fractions[1] * len(order))) if len(order) - n_test > 1 else 0
        n_test, n_val = min(n_test, len(order) - 1), min(n_val, max(0, len(order) - 1 - n_test))
        for i, t in enumerate(order):
            assign[t] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    out = {"train": [], "val": [], "test": []}
    for r in records:
        out[assign[r.track]].append(r)
    return out


def gtsrb_crop_set(records, class_index: dict[int, int], crop_size: int) -> CropSet:
    images, labels = [], []
    for r in records:
        image = load_rgb(r.path)
        roi = r.roi or estimated_roi(*image.size)
        images.append(crop_around(image, (roi[0], roi[1], roi[2] + 1, roi[3] + 1), crop_size))
        labels.append(class_index[r.class_id])
    return CropSet(np.stack(images), np.asarray(labels, np.int32))


def gtsrb_sign_maker(records, class_index: dict[int, int]):
    """Pastes real GTSRB crops: the crop keeps its own border, feathered into the scene."""
    cache: dict[str, Image.Image] = {}

    def make(rng, size):
        r = records[int(rng.integers(len(records)))]
        if r.path not in cache:
            cache[r.path] = load_rgb(r.path)
        image = cache[r.path]
        roi = r.roi or estimated_roi(*image.size)
        sign_w, sign_h = roi[2] - roi[0] + 1, roi[3] - roi[1] + 1
        scale = size / max(sign_w, sign_h)
        w, h = max(2, round(image.size[0] * scale)), max(2, round(image.size[1] * scale))
        rgba = image.resize((w, h), Image.BILINEAR).convert("RGBA")
        # Fade the crop's border out so the pasted rectangle does not give the sign away.
        alpha = Image.new("L", (w, h), 0)
        inset = max(1, int(0.06 * min(w, h)))
        ImageDraw.Draw(alpha).rectangle([inset, inset, w - 1 - inset, h - 1 - inset], fill=255)
        rgba.putalpha(alpha.filter(ImageFilter.GaussianBlur(max(1, inset))))
        inner = (roi[0] * scale, roi[1] * scale, (roi[2] + 1) * scale, (roi[3] + 1) * scale)
        return rgba, class_index[r.class_id], inner

    return make


# ----------------------------------------------------------------------------------------------
# GTSDB: real road scenes with boxes, cut into tiles at native resolution.

def read_gtsdb(root: str | Path) -> dict[str, list[tuple[int, int, int, int, int]]]:
    """gt.txt lines `00000.ppm;x1;y1;x2;y2;ClassId` -> {image path: [(x1, y1, x2, y2, class_id)]}.

    Scenes in the folder without a line in gt.txt have no signs and are kept as negatives.
    """
    root = Path(root)
    gt = next(iter(sorted(root.rglob("gt.txt"))), None)
    if gt is None:
        raise FileNotFoundError(f"No gt.txt under {str(root)!r}")
    scenes: dict[str, list] = {str(p): [] for p in sorted(gt.parent.glob("*.ppm"))}
    for line_no, line in enumerate(gt.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(";")
        if len(parts) != 6:
            raise ValueError(f"{gt}:{line_no}: expected file;x1;y1;x2;y2;ClassId. Received: {line!r}")
        name, *coords, class_id = parts
        scenes.setdefault(str(gt.parent / name), []).append((*map(int, coords), int(class_id)))
    return scenes


def gtsdb_tiles(scenes: dict, class_index: dict[int, int], size: int, seed: int, per_scene: int = 2):
    """Tiles of size x size at native scale: one around each sign group and random ones elsewhere."""
    rng = np.random.default_rng(seed)
    items = []
    for path, objects in scenes.items():
        image = load_rgb(path)
        w, h = image.size
        anchors = [((o[0] + o[2]) / 2, (o[1] + o[3]) / 2) for o in objects if o[4] in class_index]
        anchors += [(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(per_scene)]
        for cx, cy in anchors:
            x0 = int(np.clip(cx - rng.uniform(0.2, 0.8) * size, 0, max(0, w - size)))
            y0 = int(np.clip(cy - rng.uniform(0.2, 0.8) * size, 0, max(0, h - size)))
            tile = image.crop((x0, y0, x0 + size, y0 + size))
            inside = []
            for x1, y1, x2, y2, c in objects:
                if c not in class_index:
                    continue
                cx1, cy1, cx2, cy2 = max(x1, x0), max(y1, y0), min(x2 + 1, x0 + size), min(y2 + 1, y0 + size)
                # Keep signs mostly inside the tile; drop slivers cut by its edge.
                if cx2 > cx1 and cy2 > cy1 and (cx2 - cx1) * (cy2 - cy1) >= 0.6 * (x2 + 1 - x1) * (y2 + 1 - y1):
                    inside.append((cx1 - x0, cy1 - y0, cx2 - x0, cy2 - y0, class_index[c]))
            items.append((np.asarray(tile), inside))
    return items


def gtsdb_crop_set(scenes: dict, class_index: dict[int, int], crop_size: int) -> CropSet:
    """The classifier's crops: every ground-truth box of a known class, with the GTSRB-like border."""
    images, labels = [], []
    for path, objects in scenes.items():
        image = None
        for x1, y1, x2, y2, c in objects:
            if c in class_index:
                image = image or load_rgb(path)
                images.append(crop_around(image, (x1, y1, x2 + 1, y2 + 1), crop_size))
                labels.append(class_index[c])
    empty = np.zeros((0, crop_size, crop_size, 3), np.uint8)
    return CropSet(np.stack(images) if images else empty, np.asarray(labels, np.int32))
