"""Pictures of training: sample grids (one row per class), samples beside real images, loss/KID curves."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.plots import _pyplot
from core.plots import _save as save_figure


def tile(images: np.ndarray, rows: int, gap: int = 1, zoom: int = 1) -> np.ndarray:
    """uint8 images [rows * cols, S, S, C] -> one uint8 picture, row-major, with a grey gap between."""
    images = np.asarray(images, np.uint8)
    if zoom > 1:
        images = images.repeat(zoom, axis=1).repeat(zoom, axis=2)
    n, height, width, channels = images.shape
    cols = -(-n // rows)
    out = np.full((rows * (height + gap) - gap, cols * (width + gap) - gap, channels), 128, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (height + gap): r * (height + gap) + height, c * (width + gap): c * (width + gap) + width] = image
    return out


def zoom_for(size: int) -> int:
    """Small images are shown enlarged (nearest neighbour) so a grid stays legible."""
    return max(1, 48 // size)


def _save(fig, path: str | Path) -> Path:
    return save_figure(fig, path, dpi=110)


def write_png(picture: np.ndarray, path: str | Path) -> Path:
    import tensorflow as tf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(np.asarray(picture, np.uint8)).numpy())
    return path


def panels_png(pictures: Sequence[np.ndarray], titles: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Pictures side by side, each under its title (e.g. generated / real / baseline grids)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(pictures), figsize=(3.6 * len(pictures), 3.9), squeeze=False)
    for ax, picture, name in zip(axes[0], pictures, titles):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def read_history(csv_path: str | Path) -> dict[str, list[float]]:
    """The CSV log of every epoch (including those before a resume) as columns."""
    path = Path(csv_path)
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                columns.setdefault(key, []).append(float("nan"))
    return columns


def curves_png(history: dict[str, list[float]], path: str | Path, baseline_kid: float | None = None,
               title: str = "") -> Path:
    """Discriminator/generator losses, R1, and the validation KID and class accuracy of samples per epoch."""
    plt = _pyplot()
    panels = [("losses", ["d_loss", "g_loss"]), ("R1 penalty", ["r1"]), ("validation KID (judge features)",
              ["val_kid"]), ("class accuracy of samples (val)", ["val_class_accuracy"])]
    panels = [(name, [k for k in keys if k in history]) for name, keys in panels]
    panels = [(name, keys) for name, keys in panels if keys]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4 * max(len(panels), 1), 3), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels):
        for key in keys:
            epochs = np.arange(1, len(history[key]) + 1)
            ax.plot(epochs, history[key], label=key)
        if name.startswith("validation KID"):
            ax.set_yscale("symlog", linthresh=1e-3)  # the unbiased KID can dip below zero
            if baseline_kid is not None and baseline_kid > 0:
                ax.axhline(baseline_kid, color="grey", linestyle="--", label="PCA-Gaussian baseline (test)")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
