"""Traffic-sign sources -> scenes with ground-truth boxes, and sign crops for the classifier.

Sources (`Config.data`):
- embedded (default, offline): signs drawn procedurally for the chosen GTSRB classes (signs.py),
  warped in perspective, blurred, lit, partly occluded and pasted at varied scales onto real photos
  shipped in pip wheels (scikit-image's sample images, scikit-learn's china/flower).
- a GTSRB classification folder: `Final_Training/Images/<class>/GT-<class>.csv` (semicolon CSVs with
  Roi.X1..Roi.Y2 and ClassId), any folder of GT-*.csv files, or class-per-folder (`<ClassId>/*.ppm|jpg`,
  as in ../shared/datasets/gtsrb_subset). Crops are split by sign track (frames of one track are near
  duplicates), and scenes are composed by pasting the real crops onto the background photos.
- a GTSDB detection folder: `gt.txt` (`file;x1;y1;x2;y2;ClassId`) beside the .ppm scenes. Scenes are
  split by file and cut into `image_size` tiles at native resolution (signs stay their real size);
  the ground-truth boxes also give real crops for the classifier.

Everything is materialised as numpy arrays first (the data is small), then wrapped in tf.data:

    scenes: (image uint8 [S, S, 3], boxes float32 [M, 4] pixel y1,x1,y2,x2, classes int32 [M], -1 = none)
    crops:  (crop uint8 [K, K, 3], label int32)

Labels are indices into `class_ids` (GTSRB ClassIds), which the pipeline keeps in its state.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import re
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from apps.traffic_signs import signs
from core.data import Source, Splits, stable_split

GTSRB_IMAGE_EXTENSIONS = (".ppm", ".png", ".jpg", ".jpeg", ".bmp")

# scikit-image sample photos that ship inside its wheel (others need a download at run time).
SKIMAGE_BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "grass", "gravel",
                       "coins", "moon", "text", "page", "hubble_deep_field", "immunohistochemistry", "clock")


@dataclasses.dataclass
class SceneSet:
    """Scenes of one split as arrays."""

    images: np.ndarray  # uint8 [N, S, S, 3]
    boxes: np.ndarray  # float32 [N, M, 4], pixels, y1 x1 y2 x2
    classes: np.ndarray  # int32 [N, M], -1 where no object

    def __len__(self):
        return len(self.images)

    def dataset(self) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((self.images, self.boxes, self.classes))

    def objects(self) -> int:
        return int(np.sum(self.classes >= 0))


@dataclasses.dataclass
class CropSet:
    """Sign crops of one split (for the classification head)."""

    images: np.ndarray  # uint8 [N, K, K, 3]
    labels: np.ndarray  # int32 [N]

    def __len__(self):
        return len(self.images)

    def dataset(self) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((self.images, self.labels))


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


# ----------------------------------------------------------------------------------------------
# Backgrounds.

@functools.lru_cache(maxsize=1)
def sample_backgrounds() -> tuple[np.ndarray, ...]:
    """Real photos from pip wheels, as uint8 RGB arrays (grey ones repeated to RGB)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = []
    for name in SKIMAGE_BACKGROUNDS:
        try:
            image = np.asarray(getattr(skimage.data, name)())
        except Exception:  # noqa: BLE001 - a sample missing from this skimage version is skipped
            continue
        if image.dtype != np.uint8:
            continue
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        photos.append(np.ascontiguousarray(image[..., :3]))
    photos += [np.asarray(img) for img in load_sample_images().images]
    if not photos:
        raise RuntimeError("No background photos found in scikit-image or scikit-learn.")
    return tuple(_shrink(p) for p in photos)


def _shrink(photo: np.ndarray, longest: int = 512) -> np.ndarray:
    """Scenes are small: cropping and resizing a smaller copy of each photo is several times faster."""
    h, w = photo.shape[:2]
    if max(h, w) <= longest:
        return photo
    scale = longest / max(h, w)
    return np.asarray(Image.fromarray(photo).resize((round(w * scale), round(h * scale)), Image.LANCZOS))


def folder_backgrounds(root: str) -> tuple[np.ndarray, ...]:
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in GTSRB_IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"No background images under {root!r}")
    return tuple(_shrink(np.asarray(Image.open(p).convert("RGB"))) for p in files)


def random_background(rng: np.random.Generator, photos, size: int) -> Image.Image:
    """A random crop of a random photo, resized to size x size, flipped and colour-jittered."""
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.25, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    image = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    if rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.6, 1.3))
    return ImageEnhance.Color(image).enhance(rng.uniform(0.5, 1.3))


# ----------------------------------------------------------------------------------------------
# One sign instance: the clean template, seen from an angle, lit and blurred.

def _perspective_coeffs(src, dst):
    """PIL's 8 perspective coefficients mapping output (dst) points back to input (src) points."""
    rows = []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.asarray(rows, np.float64), np.asarray(src, np.float64).reshape(8))


@functools.lru_cache(maxsize=4096)
def _template_at(class_id: int, side: int) -> Image.Image:
    rgba = signs.template(class_id)
    return rgba if side >= rgba.size[0] else rgba.resize((side, side), Image.LANCZOS)


def warp_sign(rgba: Image.Image, size: int, rng: np.random.Generator, strength: float = 1.0) -> Image.Image:
    """Perspective-warps, rotates and resizes an RGBA sign so its bounding box is about `size` px."""
    t = rgba.size[0]
    pad = t // 4
    canvas = Image.new("RGBA", (t + 2 * pad, t + 2 * pad), (0, 0, 0, 0))
    canvas.paste(rgba, (pad, pad))
    corners = np.array([[pad, pad], [pad + t, pad], [pad + t, pad + t], [pad, pad + t]], np.float64)
    # Viewed from the side (horizontal squeeze), a little from below, plus a small roll.
    squeeze = 1.0 - strength * rng.uniform(0.0, 0.3)
    tilt = strength * rng.uniform(-0.12, 0.12)
    angle = math.radians(strength * rng.uniform(-8, 8))
    centre = corners.mean(axis=0)
    d = corners - centre
    d[:, 0] *= squeeze
    d[:, 1] *= 1.0 + tilt * np.sign(d[:, 0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    dst = d @ rot.T + centre + strength * rng.normal(0, 0.02 * t, size=(4, 2))
    warped = canvas.transform(canvas.size, Image.PERSPECTIVE, _perspective_coeffs(corners, dst),
                              Image.BILINEAR)
    bbox = warped.getchannel("A").point(lambda a: 255 if a > 64 else 0).getbbox()
    if bbox is not None:
        warped = warped.crop(bbox)
    scale = size / max(warped.size)
    out = (max(2, round(warped.size[0] * scale)), max(2, round(warped.size[1] * scale)))
    return warped.resize(out, Image.LANCZOS)


def light_sign(rgba: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Exposure, colour cast, fading, a shadow gradient and blur, as a camera would see them."""
    rgb = np.asarray(rgba, np.float32)
    alpha = rgb[..., 3:]
    colour = rgb[..., :3]
    colour = colour * rng.uniform(0.35, 1.25) * rng.uniform(0.85, 1.15, size=3)  # exposure, white balance
    if rng.random() < 0.3:  # faded paint: towards grey
        colour = colour + rng.uniform(0.1, 0.4) * (colour.mean(axis=-1, keepdims=True) - colour)
    if rng.random() < 0.3:  # shadow across the sign
        h, w = colour.shape[:2]
        ramp = np.linspace(rng.uniform(0.4, 1.0), 1.0, w if rng.random() < 0.5 else h)
        colour = colour * (ramp[None, :, None] if len(ramp) == w else ramp[:, None, None])
    out = Image.fromarray(np.concatenate([np.clip(colour, 0, 255), alpha], -1).astype(np.uint8), "RGBA")
    radius = float(rng.choice([0.0, 0.0, rng.uniform(0.3, 1.0), rng.uniform(0.5, 1.6)])) * max(out.size) / 32
    return out.filter(ImageFilter.GaussianBlur(radius)) if radius > 0.05 else out


def sign_instance(class_id: int, size: int, rng: np.random.Generator) -> Image.Image:
    """A ready-to-paste RGBA sign of one GTSRB class whose longer side is about `size` px."""
    # Warp at a little over the target size: the cost of the perspective transform grows with area.
    work = min(signs.TEMPLATE_SIZE, max(24, 8 * round(size * 1.5 / 8)))
    return light_sign(warp_sign(_template_at(int(class_id), work), size, rng), rng)


def _occlude(scene: Image.Image, box, rng: np.random.Generator, photos) -> None:
    """Covers part of the sign with a branch-like bar or a patch of another photo."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    draw = ImageDraw.Draw(scene)
    if rng.random() < 0.5:  # a branch or pole crossing the sign
        y = y1 + rng.uniform(0, h)
        colour = tuple(int(c) for c in rng.integers(20, 110, size=3))
        draw.line([(x1 - w * 0.3, y + rng.uniform(-h, h) * 0.3), (x2 + w * 0.3, y)], fill=colour,
                  width=max(1, int(rng.uniform(0.08, 0.2) * h)))
    else:  # something in front covering a corner
        cw, ch = int(w * rng.uniform(0.2, 0.45)), int(h * rng.uniform(0.2, 0.45))
        px = int(x1 if rng.random() < 0.5 else x2 - cw)
        py = int(y1 if rng.random() < 0.5 else y2 - ch)
        patch = random_background(rng, photos, max(cw, ch, 2)).resize((max(cw, 1), max(ch, 1)))
        scene.paste(patch, (px, py))


def _overlaps(box, boxes, limit=0.05) -> bool:
    for b in boxes:
        iw = min(box[2], b[2]) - max(box[0], b[0])
        ih = min(box[3], b[3]) - max(box[1], b[1])
        if iw > 0 and ih > 0 and iw * ih > limit * min((box[2] - box[0]) * (box[3] - box[1]),
                                                          (b[2] - b[0]) * (b[3] - b[1])):
            return True
    return False


@dataclasses.dataclass
class SceneSpec:
    """How scenes are composed (sizes in pixels of the square scene)."""

    size: int = 128
    max_signs: int = 4
    min_sign: int = 14
    max_sign: int = 48
    empty_fraction: float = 0.1
    occlusion: float = 0.2
    noise: float = 4.0


def compose_scene(rng: np.random.Generator, spec: SceneSpec, photos, make_sign) -> tuple[np.ndarray, list]:
    """One scene: background photo plus pasted signs. Returns (uint8 image, [(x1,y1,x2,y2,label)]).

    `make_sign(rng, size)` returns (RGBA sign image whose sign fills it, label, sign box inside it).
    """
    scene = random_background(rng, photos, spec.size).convert("RGB")
    n = 0 if rng.random() < spec.empty_fraction else int(rng.integers(1, spec.max_signs + 1))
    placed = []
    for _ in range(n):
        # Log-uniform sizes: as many small, far-away signs as big, near ones.
        size = int(round(math.exp(rng.uniform(math.log(spec.min_sign), math.log(spec.max_sign)))))
        rgba, label, inner = make_sign(rng, size)
        w, h = rgba.size
        for _try in range(10):
            x = int(rng.integers(0, max(1, spec.size - w + 1)))
            y = int(rng.integers(0, max(1, spec.size - h + 1)))
            box = (x + inner[0], y + inner[1], x + inner[2], y + inner[3])
            if not _overlaps(box, [p[:4] for p in placed]):
                break
        else:
            continue
        if rng.random() < 0.4:  # a post under the sign
            pole_w = max(1, w // 10)
            grey = int(rng.integers(80, 170))
            ImageDraw.Draw(scene).rectangle([x + w // 2 - pole_w // 2, y + h // 2, x + w // 2 + pole_w // 2,
                                             spec.size], fill=(grey, grey, grey))
        scene.paste(rgba, (x, y), rgba)
        if rng.random() < spec.occlusion:
            _occlude(scene, box, rng, photos)
        placed.append((*box, label))
    image = np.asarray(scene, np.float32)
    if spec.noise > 0:
        image = image + rng.normal(0, rng.uniform(0, spec.noise), size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), placed


def to_scene_set(items, size: int, max_objects: int) -> SceneSet:
    n = len(items)
    images = np.zeros((n, size, size, 3), np.uint8)
    boxes = np.zeros((n, max_objects, 4), np.float32)
    classes = np.full((n, max_objects), -1, np.int32)
    for i, (image, objects) in enumerate(items):
        images[i] = image
        for j, (x1, y1, x2, y2, label) in enumerate(objects[:max_objects]):
            boxes[i, j] = (max(0, y1), max(0, x1), min(size, y2), min(size, x2))
            classes[i, j] = label
    return SceneSet(images, boxes, classes)


def crop_around(image: Image.Image, box, out: int, rng: np.random.Generator | None = None,
                border: float = 0.1) -> np.ndarray:
    """The sign in `box` (x1,y1,x2,y2) with a GTSRB-like ~10% border, jittered, as out x out uint8."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    bx, by = max(border * w, 1.0), max(border * h, 1.0)
    if rng is not None:
        jx, jy = rng.uniform(-0.5, 0.5, 2) * np.array([bx, by])
        x1, x2, y1, y2 = x1 + jx, x2 + jx, y1 + jy, y2 + jy
    region = (x1 - bx, y1 - by, x2 + bx, y2 + by)
    return np.asarray(image.crop(tuple(int(round(v)) for v in region)).convert("RGB")
                      .resize((out, out), Image.BILINEAR))


# ----------------------------------------------------------------------------------------------
# The embedded source: procedural signs on sample photos.

def drawn_sign_maker(class_ids: list[int]):
    def make(rng, size):
        label = int(rng.integers(len(class_ids)))
        rgba = sign_instance(class_ids[label], size, rng)
        return rgba, label, (0, 0, rgba.size[0], rgba.size[1])
    return make


def generate_scenes(n: int, spec: SceneSpec, make_sign, seed: int, photos) -> SceneSet:
    rng = np.random.default_rng(seed)
    items = [compose_scene(rng, spec, photos, make_sign) for _ in range(n)]
    return to_scene_set(items, spec.size, spec.max_signs)


def generate_crops(per_class: int, class_ids: list[int], crop_size: int, seed: int, photos) -> CropSet:
    """Drawn signs on photo patches, cropped like GTSRB (sign plus a ~10% border)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, class_id in enumerate(class_ids):
        for _ in range(per_class):
            size = int(rng.integers(16, 64))
            rgba = sign_instance(class_id, size, rng)
            canvas_side = int(max(rgba.size) * 1.6) + 4
            canvas = random_background(rng, photos, canvas_side)
            x, y = (canvas_side - rgba.size[0]) // 2, (canvas_side - rgba.size[1]) // 2
            canvas.paste(rgba, (x, y), rgba)
            if rng.random() < 0.15:
                _occlude(canvas, (x, y, x + rgba.size[0], y + rgba.size[1]), rng, photos)
            images.append(crop_around(canvas, (x, y, x + rgba.size[0], y + rgba.size[1]), crop_size, rng))
            labels.append(label)
    order = rng.permutation(len(labels))
    return CropSet(np.stack(images)[order], np.asarray(labels, np.int32)[order])


def embedded(cfg, seed: int) -> DetectionSplits:
    class_ids = parse_class_list(cfg.classes)
    photos = sample_backgrounds() if not cfg.backgrounds else folder_backgrounds(cfg.backgrounds)
    spec = scene_spec(cfg)
    maker = drawn_sign_maker(class_ids)
    counts = {"train": cfg.train_scenes, "val": cfg.val_scenes, "test": cfg.test_scenes}
    # Distinct seeds per split: held-out scenes are new draws of backgrounds, signs and placements.
    scenes = {k: generate_scenes(n, spec, maker, seed * 1000 + i, photos)
              for i, (k, n) in enumerate(counts.items())}
    per_class = {"train": cfg.crops_per_class, "val": max(2, cfg.crops_per_class // 5),
                 "test": max(4, cfg.crops_per_class // 3)}
    crops = {k: generate_crops(n, class_ids, cfg.crop_size, seed * 1000 + 10 + i, photos)
             for i, (k, n) in enumerate(per_class.items())}
    info = {"source": f"embedded: procedurally drawn GTSRB signs ({len(class_ids)} classes) pasted on "
                      f"{len(photos)} scikit-image / scikit-learn sample photos"}
    return make_splits(scenes, crops, class_ids, info)


def scene_spec(cfg) -> SceneSpec:
    return SceneSpec(size=cfg.image_size, max_signs=cfg.max_signs, min_sign=cfg.min_sign,
                     max_sign=cfg.max_sign, empty_fraction=cfg.empty_fraction, occlusion=cfg.occlusion)


def make_splits(scenes: dict, crops: dict, class_ids: list[int], info: dict) -> DetectionSplits:
    info = {**info, "class_ids": [int(c) for c in class_ids],
            "class_names": [signs.CLASS_NAMES[c] for c in class_ids],
            "scenes": {k: len(v) for k, v in scenes.items()},
            "objects": {k: v.objects() for k, v in scenes.items()},
            "crops": {k: len(v) for k, v in crops.items()}}
    return DetectionSplits(scenes["train"].dataset(), scenes["val"].dataset(), scenes["test"].dataset(),
                           info, scenes=scenes, crops=crops)


# ----------------------------------------------------------------------------------------------
# GTSRB classification folders: real crops, split by track, composed into scenes.

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
            if path.suffix.lower() in GTSRB_IMAGE_EXTENSIONS:
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


def _load_rgb(path: str) -> Image.Image:
    return Image.open(path).convert("RGB")


def gtsrb_crop_set(records, class_index: dict[int, int], crop_size: int) -> CropSet:
    images, labels = [], []
    for r in records:
        image = _load_rgb(r.path)
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
            cache[r.path] = _load_rgb(r.path)
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


def gtsrb(root: str, cfg, seed: int) -> DetectionSplits:
    if cfg.scene_signs not in ("data", "drawn"):
        raise ValueError(f"scene_signs must be 'data' or 'drawn'. Received: scene_signs={cfg.scene_signs!r}")
    records = read_gtsrb(root)
    wanted = set(parse_class_list(cfg.classes)) if cfg.classes else None
    if wanted is not None:
        records = [r for r in records if r.class_id in wanted]
    class_ids = sorted({r.class_id for r in records})
    class_index = {c: i for i, c in enumerate(class_ids)}
    fractions = (1.0 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction)
    parts = split_by_track(records, fractions, seed)
    photos = sample_backgrounds() if not cfg.backgrounds else folder_backgrounds(cfg.backgrounds)
    spec = scene_spec(cfg)
    counts = {"train": cfg.train_scenes, "val": cfg.val_scenes, "test": cfg.test_scenes}
    scenes, crops = {}, {}
    for i, (k, n) in enumerate(counts.items()):
        crops[k] = gtsrb_crop_set(parts[k], class_index, cfg.crop_size)
        # A split without crops of its own (tiny data) borrows none: its scenes are left empty.
        if cfg.scene_signs == "drawn":
            maker = drawn_sign_maker(class_ids)
        else:
            maker = gtsrb_sign_maker(parts[k], class_index) if parts[k] else None
        scenes[k] = (generate_scenes(n, spec, maker, seed * 1000 + i, photos) if maker
                     else to_scene_set([], spec.size, spec.max_signs))
    if cfg.drawn_crops_per_class > 0:
        # Drawn signs teach each class's design, which helps classes with only a few real tracks.
        drawn = generate_crops(cfg.drawn_crops_per_class, class_ids, cfg.crop_size, seed * 1000 + 20, photos)
        crops["train"] = CropSet(np.concatenate([crops["train"].images, drawn.images]),
                                 np.concatenate([crops["train"].labels, drawn.labels]))
    tracks = {k: len({r.track for r in v}) for k, v in parts.items()}
    signs = "drawn signs" if cfg.scene_signs == "drawn" else "the real crops"
    info = {"source": f"gtsrb: {root} ({len(records)} crops; split by track: {tracks}); scenes composed "
                      f"from {signs} on sample photos"}
    return make_splits(scenes, crops, class_ids, info)


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
        image = _load_rgb(path)
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


def gtsdb(root: str, cfg, seed: int) -> DetectionSplits:
    scenes = read_gtsdb(root)
    wanted = set(parse_class_list(cfg.classes)) if cfg.classes else None
    present = sorted({o[4] for objs in scenes.values() for o in objs})
    class_ids = [c for c in present if wanted is None or c in wanted]
    class_index = {c: i for i, c in enumerate(class_ids)}
    fractions = (1.0 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction)
    names = ("train", "val", "test")
    by_split = {k: {} for k in names}
    for path, objects in scenes.items():
        by_split[names[stable_split(Path(path).name, fractions)]][path] = objects
    scene_sets, crops = {}, {}
    for i, k in enumerate(names):
        items = gtsdb_tiles(by_split[k], class_index, cfg.image_size, seed * 1000 + i)
        max_objects = max([cfg.max_signs] + [len(o) for _, o in items])
        scene_sets[k] = to_scene_set(items, cfg.image_size, max_objects)
        images, labels = [], []
        for path, objects in by_split[k].items():
            image = None
            for x1, y1, x2, y2, c in objects:
                if c in class_index:
                    image = image or _load_rgb(path)
                    images.append(crop_around(image, (x1, y1, x2 + 1, y2 + 1), cfg.crop_size))
                    labels.append(class_index[c])
        empty = np.zeros((0, cfg.crop_size, cfg.crop_size, 3), np.uint8)
        crops[k] = CropSet(np.stack(images) if images else empty, np.asarray(labels, np.int32))
    info = {"source": f"gtsdb: {root} ({len(scenes)} scenes, {cfg.image_size}px tiles at native scale)"}
    return make_splits(scene_sets, crops, class_ids, info)


def load(cfg, seed: int) -> DetectionSplits:
    source = Source.parse(cfg.data)
    if source.kind == "embedded":
        return embedded(cfg, seed)
    if source.kind == "tfds":
        raise ValueError("traffic_signs reads GTSRB/GTSDB folders, not TFDS (no TFDS build has GTSRB "
                         f"boxes). Received: data={cfg.data!r}")
    root = Path(source.value)
    if next(iter(root.rglob("gt.txt")), None) is not None:
        return gtsdb(str(root), cfg, seed)
    return gtsrb(str(root), cfg, seed)


# ----------------------------------------------------------------------------------------------
# CenterNet targets, built in the graph per batch.

def centernet_targets(boxes: tf.Tensor, classes: tf.Tensor, image_size: int, stride: int,
                      num_classes: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Ground truth for a batch -> (heatmap [B, G, G, C], regression [B, G, G, 5]).

    The heatmap holds a Gaussian peak of exactly 1 at each object's centre cell, wide in proportion
    to its size. Regression holds, at centre cells only, the sub-cell centre offset (dy, dx), the
    log box size in cells (log h, log w), and a mask channel (1 at centres).
    """
    grid = image_size // stride
    boxes = tf.cast(boxes, tf.float32) / stride
    valid = classes >= 0
    cy = (boxes[..., 0] + boxes[..., 2]) / 2
    cx = (boxes[..., 1] + boxes[..., 3]) / 2
    h = tf.maximum(boxes[..., 2] - boxes[..., 0], 1e-3)
    w = tf.maximum(boxes[..., 3] - boxes[..., 1], 1e-3)
    iy = tf.clip_by_value(tf.floor(cy), 0, grid - 1)
    ix = tf.clip_by_value(tf.floor(cx), 0, grid - 1)
    # Gaussian width: a sixth of the box side (at least half a cell), so 16 px signs stay sharp peaks.
    sy = tf.maximum(h / 6.0, 0.5)
    sx = tf.maximum(w / 6.0, 0.5)
    cells = tf.range(grid, dtype=tf.float32)
    gy = tf.exp(-tf.square(cells[None, None, :] - iy[..., None]) / (2 * tf.square(sy[..., None])))
    gx = tf.exp(-tf.square(cells[None, None, :] - ix[..., None]) / (2 * tf.square(sx[..., None])))
    gauss = gy[..., :, None] * gx[..., None, :]  # [B, M, G, G]
    batch = tf.shape(classes)[0]
    m = tf.shape(classes)[1]
    # Max (not sum) over the objects of one class in one image: overlapping peaks stay at most 1.
    # Segment b * C + class; padding objects go to an extra segment that is dropped.
    segment = tf.where(valid, tf.range(batch)[:, None] * num_classes + classes, batch * num_classes)
    heat = tf.math.unsorted_segment_max(tf.reshape(gauss, [-1, grid, grid]), tf.reshape(segment, [-1]),
                                        batch * num_classes + 1)[:-1]
    heat = tf.maximum(heat, 0.0)  # empty segments come back as the lowest float
    heat = tf.transpose(tf.reshape(heat, [batch, num_classes, grid, grid]), [0, 2, 3, 1])

    b_idx = tf.tile(tf.range(batch)[:, None], [1, m])
    idx = tf.stack([b_idx, tf.cast(iy, tf.int32), tf.cast(ix, tf.int32)], -1)
    values = tf.stack([cy - iy, cx - ix, tf.math.log(h), tf.math.log(w), tf.ones_like(cy)], -1)
    idx = tf.boolean_mask(idx, valid)
    values = tf.boolean_mask(values, valid)
    regression = tf.scatter_nd(idx, values, tf.stack([batch, grid, grid, 5]))
    # Two objects in one cell: scatter_nd adds; keep the mask binary and the values of a mean.
    count = tf.maximum(regression[..., 4:5], 1.0)
    regression = tf.concat([regression[..., :4] / count, tf.minimum(regression[..., 4:5], 1.0)], -1)
    return heat, regression
