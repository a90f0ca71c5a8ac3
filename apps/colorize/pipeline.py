"""Colourization pipeline: photos -> (L, ab) -> U-Net over ab bins -> PSNR/SSIM/colourfulness -> PNG endpoint."""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from apps.colorize import color, data, serving
from apps.colorize import model as model_lib
from apps.colorize.config import Config
from core.data import batched, read_bytes
from core.pipeline import Pipeline as BasePipeline
from core.plots import image_grid_png

GRID_FILE = "colorized_test_photos.png"
MIN_CROP = 0.7


class Pipeline(BasePipeline):
    """Colourizes black-and-white photos.

    Example:
        >>> p = Pipeline(Config.preset("smoke"), workdir="runs/colorize")
        >>> p.fit(); p.evaluate()  # {"psnr": ..., "colorfulness_fraction": ..., "gray_psnr": ...}
        >>> p.predict([open("old_photo.jpg", "rb").read()])  # [{"width", "height", "png_base64"}]
    """

    name = "colorize"
    config_class = Config

    @property
    def centers(self) -> np.ndarray | None:
        """ab bin centres of the classifier head (None for the l2 regression baseline)."""
        return color.ab_bin_centers(self.config.bin_size) if self.config.loss == "bins" else None

    def load_data(self):
        cfg = self.config
        splits = data.load(cfg.data, cfg.image_size, cfg.crops_per_photo, cfg.val_fraction,
                           cfg.test_fraction, cfg.seed)
        self.state = {"num_bins": len(color.ab_bin_centers(cfg.bin_size))}
        if cfg.loss == "bins":
            self.state["bin_prior"] = self._bin_prior(splits.train)
        return splits

    def _bin_prior(self, train: tf.data.Dataset) -> list[float]:
        """How often each ab bin occurs in (up to prior_images of) the training images."""
        centers = tf.constant(self.centers)
        counts = np.zeros(len(self.centers))
        for rgb in batched(train.take(self.config.prior_images), 256, cache=False):
            _, ab = lab_targets(rgb)
            _, nearest = color.soft_encode(ab, centers, self.config.soft_sigma)
            counts += np.bincount(nearest.numpy().ravel(), minlength=len(counts))
        return [round(float(p), 8) for p in counts / max(counts.sum(), 1.0)]

    def make_model(self):
        return model_lib.build_model(self.config, self.state["num_bins"])

    def compile_model(self, model):
        cfg = self.config
        weights = None
        if cfg.loss == "bins":
            weights = color.rebalancing_weights(np.asarray(self.state["bin_prior"]), self.centers,
                                                cfg.rebalance, cfg.soft_sigma)
        model.compile(optimizer=keras.optimizers.AdamW(self.learning_rate, weight_decay=1e-4),
                      loss=model_lib.make_loss(cfg, self.centers, weights), jit_compile=cfg.jit_compile)

    def training_data(self, splits):
        augment = self.config.augment

        def train_example(rgb):
            return lab_targets(random_crops_and_flips(rgb) if augment else rgb)

        b = self.global_batch_size
        train = batched(splits.train, b, shuffle=True, seed=self.config.seed, map_fn=train_example)
        val = batched(splits.val, b, map_fn=lab_targets)
        return train, val

    def extra_callbacks(self):
        # Small photo sets plateau early at a high learning rate; halving it keeps the loss falling.
        return [keras.callbacks.ReduceLROnPlateau(self.monitor, factor=0.5, patience=3, min_lr=1e-5)]

    def compute_metrics(self, test):
        cfg = self.config
        colorize = tf.function(serving.make_colorizer(self.require_model(), cfg.image_size, self.centers,
                                                      cfg.temperature))
        originals, outputs, grays = [], [], []
        for rgb in batched(test, 64, cache=False):
            rgb = rgb / 255.0
            # Rounded to 8 bits, as the served PNG is.
            outputs.append(np.round(colorize(rgb).numpy() * 255.0))
            grays.append(np.round(color.gray_rgb(color.lightness(rgb)).numpy() * 255.0))
            originals.append(np.round(rgb.numpy() * 255.0))
        originals, outputs, grays = (np.concatenate(x).astype(np.float32) for x in (originals, outputs, grays))
        reference = color.colorfulness(originals).mean()
        metrics = {"original_colorfulness": float(reference)}
        for prefix, images in (("", outputs), ("gray_", grays)):
            metrics[f"{prefix}psnr"] = float(tf.reduce_mean(tf.image.psnr(images, originals, 255.0)))
            metrics[f"{prefix}ssim"] = float(tf.reduce_mean(tf.image.ssim(images, originals, 255.0)))
            metrics[f"{prefix}colorfulness_fraction"] = float(color.colorfulness(images).mean()
                                                              / max(reference, 1e-6))
        picks = np.unique(np.linspace(0, len(originals) - 1, min(8, len(originals))).round().astype(int))
        image_grid_png([[grays[i].astype(np.uint8), outputs[i].astype(np.uint8), originals[i].astype(np.uint8)]
                        for i in picks], self.workdir / GRID_FILE,
                       titles=("input (L only)", "colorized", "original"))
        return metrics

    def make_endpoints(self):
        cfg = self.config
        return serving.make_endpoints(self.require_model(), cfg.image_size, self.centers, cfg.temperature)

    def encode_request(self, raw_inputs: Sequence[Any]):
        return {"image_bytes": tf.constant([read_bytes(x) for x in raw_inputs], tf.string)}

    def decode_response(self, outputs: Mapping[str, np.ndarray]):
        answers = []
        for png in outputs["colorized_png_bytes"]:
            width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
            answers.append({"width": width, "height": height,
                            "png_base64": base64.b64encode(png).decode("ascii")})
        return answers

    def sample_inputs(self, n: int = 4):
        """Black-and-white PNGs of test photos: what a user of this app has."""
        images = [x for x in self.datasets().test.take(n)]
        return [tf.io.encode_png(tf.cast(tf.round(tf.image.rgb_to_grayscale(x)), tf.uint8)).numpy()
                for x in images]

    def example_requests(self):
        images = tf.stack([x for x in self.datasets().test.take(3)])
        return {"serving_default": self.encode_request(self.sample_inputs(4)),
                "colorize_images": {"images": images}}


def random_crops_and_flips(rgb: tf.Tensor) -> tf.Tensor:
    """Each image of a batch [N, S, S, 3]: a random square of MIN_CROP..1 of its side, half mirrored."""
    n = tf.shape(rgb)[0]
    side = tf.random.uniform([n], MIN_CROP, 1.0)
    top = tf.random.uniform([n]) * (1.0 - side)
    left = tf.random.uniform([n]) * (1.0 - side)
    # crop_and_resize mirrors a box whose x1 > x2: flips come free with the crop.
    mirrored = tf.random.uniform([n]) < 0.5
    x1 = tf.where(mirrored, left + side, left)
    x2 = tf.where(mirrored, left, left + side)
    boxes = tf.stack([top, x1, top + side, x2], axis=1)
    return tf.image.crop_and_resize(rgb, boxes, tf.range(n), rgb.shape[1:3])


def lab_targets(rgb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """RGB batch in 0..255 -> (L [N, S, S, 1], ab [N, S/2, S/2, 2] at the model's output resolution)."""
    lab = color.rgb_to_lab(rgb / 255.0)
    stride = model_lib.OUTPUT_STRIDE
    return lab[..., :1], tf.nn.avg_pool2d(lab[..., 1:], stride, stride, "VALID")
