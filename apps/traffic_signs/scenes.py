"""Scene rendering: drawn or real signs pasted onto photos, with ground-truth boxes and sign crops.

A scene is a random crop of a background photo with up to `max_signs` signs pasted at log-uniform
sizes; each drawn sign (signs.py) is warped in perspective, lit, blurred and sometimes occluded, as
a camera on a road would see it. Crops are signs with a GTSRB-like ~10% border, for the classifier.

    scenes: (image uint8 [S, S, 3], boxes float32 [M, 4] pixel y1,x1,y2,x2, classes int32 [M], -1 = none)
    crops:  (crop uint8 [K, K, 3], label int32)
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from apps.traffic_signs import signs

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
    return tuple(shrink(p) for p in photos)


def shrink(photo: np.ndarray, longest: int = 512) -> np.ndarray:
    """Scenes are small: cropping and resizing a smaller copy of each photo is several times faster."""
    h, w = photo.shape[:2]
    if max(h, w) <= longest:
        return photo
    scale = longest / max(h, w)
    return np.asarray(Image.fromarray(photo).resize((round(w * scale), round(h * scale)), Image.LANCZOS))


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
# Drawn signs: scenes and crops of the embedded source (and of `scene_signs=drawn`).

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

