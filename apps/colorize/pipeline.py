"""Colourization pipeline: photos -> (L, ab) -> U-Net over ab bins -> PSNR/SSIM/colourfulness -> PNG endpoint."""

from __future__ import annotations

import base64
import json
import shutil
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from apps.colorize import color, data, serving
from apps.colorize import model as model_lib
from apps.colorize.config import Config
from core import training
from core.data import batched, read_bytes
from core.pipeline import Pipeline as BasePipeline
from core.plots import image_grid_png

GRID_FILE = "colorized_test_photos.png"
HINTS_GRID_FILE = "colorized_test_photos_hinted.png"
WORST_GRID_FILE = "colorized_test_photos_worst.png"  # where colour cost the most PSNR against gray
MIN_CROP = 0.7
# Training photos are loaded at this multiple of image_size: zoomed crops are cut from detail, not upsampled.
TRAIN_SCALE = 2
# Simulated user clicks while training: half the examples get none (what serving_default sees), the
# others 1..MAX_HINTS at random pixels, each the true colour averaged over its 3 x 3 neighbourhood.
HINTED_FRACTION = 0.5
MAX_HINTS = 10
EVAL_HINTS = (1, 5)  # about this many clicks per test photo for the hints{k}_psnr metrics
# Annealed-mean candidates tried on the validation split: below 0.5 the choice fit 60 photos' noise (pooled
# over runs, 0.2-0.38 scored lower at the same colourfulness).
TEMPERATURES = (0.5, 0.7, 1.0)
SATURATIONS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5)  # and the ab gains tried with each
MEMBER_SEED_STEP = 7919  # ensemble member i starts from seed + i * this: other weights, other crops


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
    def temperature(self) -> float:
        """The annealed-mean temperature: the config's, else the one chosen on validation after fit()."""
        return self.config.temperature or self.state.get("temperature", 0.38)

    @property
    def saturation(self) -> float:
        """The ab gain after the annealed mean: the config's, else the one chosen on validation after fit()."""
        return self.config.saturation or self.state.get("saturation", 1.0)

    @property
    def centers(self) -> np.ndarray:
        """ab bin centres of the classifier head."""
        return color.ab_bin_centers(self.config.bin_size)

    def load_data(self):
        cfg = self.config
        splits = data.load(cfg.data, cfg.image_size, cfg.crops_per_photo, cfg.val_fraction,
                           cfg.test_fraction, cfg.seed, train_size=TRAIN_SCALE * cfg.image_size)
        # update, not replace: a pipeline loaded from its workdir keeps the temperature fit() chose.
        self.state.update(num_bins=len(self.centers), bin_prior=self._bin_prior(splits.train))
        return splits

    def _bin_prior(self, train: tf.data.Dataset) -> list[float]:
        """How often each ab bin occurs in (up to prior_images of) the training images."""
        centers = tf.constant(self.centers)
        counts = np.zeros(len(self.centers))
        for rgb in batched(train.take(self.config.prior_images), 256, cache=False):
            _, ab = examples(rgb)
            _, nearest = color.soft_encode(ab, centers, self.config.soft_sigma)
            counts += np.bincount(nearest.numpy().ravel(), minlength=len(counts))
        return [round(float(p), 8) for p in counts / max(counts.sum(), 1.0)]

    def make_model(self):
        return model_lib.build_model(self.config, self.state["num_bins"])

    def compile_model(self, model):
        cfg = self.config
        weights = color.rebalancing_weights(np.asarray(self.state["bin_prior"]), self.centers, cfg.rebalance,
                                            cfg.soft_sigma)
        model.compile(optimizer=keras.optimizers.AdamW(self.learning_rate, weight_decay=1e-4),
                      loss=model_lib.make_loss(cfg, self.centers, weights), jit_compile=cfg.jit_compile)

    def training_data(self, splits):
        size = self.config.image_size

        def train_example(rgb):
            if self.config.augment:
                rgb = random_crops_and_flips(rgb, size)
            else:
                rgb = tf.image.resize(rgb, (size, size), antialias=True)
            return examples(rgb, simulate_hints=True)

        b = self.global_batch_size
        train = batched(splits.train, b, shuffle=True, seed=self.config.seed, map_fn=train_example)
        val = batched(splits.val, b, map_fn=examples)
        return train, val

    def fit(self) -> dict:
        result = self._fit_members() if self.config.members > 1 else super().fit()
        if not (self.config.temperature and self.config.saturation):
            result["decoding_choice"] = self.choose_decoding()
            self.save()
            training.update_json(self.workdir / "metrics.json", fit=result)
        return result

    def _fit_members(self) -> dict:
        """Trains the ensemble's U-Nets one after another on the same split, each from its own random start
        with an equal share of the time budget, in workdir/members/<i> (a restarted run keeps the finished
        ones), then joins them into one model."""
        cfg = self.config
        model = self.build_model()
        results = []
        for i in range(cfg.members):
            member = _Member(cfg.replace(members=1, time_budget_s=cfg.time_budget_s / cfg.members),
                             self.workdir / "members" / str(i), i)
            member._splits, member.state = self.datasets(), dict(self.state)
            done = member.workdir / "member.json"
            if done.exists():
                member.model = member.make_model()
                member.model.load_weights(str(member.workdir / "model.weights.h5"))
                results.append(json.loads(done.read_text()))
            else:
                results.append(member.fit())
                done.write_text(json.dumps(results[-1], default=str))
            model.get_layer(f"colorizer_{i}").set_weights(member.model.get_weights())
        self.model, self.strategy, self._endpoints = model, member.strategy, None
        self.save()
        shutil.rmtree(self.workdir / "members")  # the run is complete: a new fit() starts afresh
        # The last member's history and data stand for the run; epochs and seconds add up.
        result = dict(results[-1], epochs_run=sum(r["epochs_run"] for r in results),
                      train_seconds=sum(r["train_seconds"] for r in results),
                      members=[{k: r.get(k) for k in ("epochs_run", "train_seconds", "stopped_by_time_budget")}
                               for r in results])
        training.update_json(self.workdir / "metrics.json", fit=result)
        return result

    def choose_decoding(self) -> dict:
        """Sets the annealed-mean temperature and saturation (those the config leaves at 0) that
        pick_decoding prefers on the validation split."""
        cfg = self.config
        batches = list(batched(self.datasets().val, 256, cache=False))
        if not batches:  # no validation photos: the defaults stay
            return {}
        rgb = tf.concat(batches, axis=0) / 255.0
        lightness = serving.model_input(rgb, cfg.image_size)
        scores = {}
        for temperature in (cfg.temperature,) if cfg.temperature else TEMPERATURES:
            # The model runs once per temperature; without hints the gain is a plain product, as in predict_ab.
            ab = serving.make_ab_predictor(self.require_model(), self.centers, temperature)(lightness)
            for saturation in (cfg.saturation,) if cfg.saturation else SATURATIONS:
                scores[temperature, saturation] = quality(serving.recombine(rgb, ab * saturation), rgb)
        best = pick_decoding(scores, cfg.min_colorfulness)
        self.state.update(temperature=best[0], saturation=best[1])
        return {"temperature": best[0], "saturation": best[1],
                "validation": {f"temperature {t}, saturation {s}": v for (t, s), v in scores.items()}}

    def extra_callbacks(self):
        # Small photo sets plateau early at a high learning rate; halving it keeps the loss falling.
        return [keras.callbacks.ReduceLROnPlateau(self.monitor, factor=0.5, patience=3, min_lr=1e-5)]

    def compute_metrics(self, test):
        cfg = self.config
        colorize = tf.function(serving.make_colorizer(self.require_model(), cfg.image_size, self.centers,
                                                      self.temperature, self.saturation))
        rgb = tf.concat(list(batched(test, 256, cache=False)), axis=0) / 255.0
        gray = color.gray_rgb(color.lightness(rgb))
        outputs = {"": colorize(rgb), "gray_": gray}
        for k in EVAL_HINTS:
            outputs[f"hints{k}_"] = colorize(rgb, simulated_hints(rgb, k, seed=k))
        metrics = {"original_colorfulness": float(tf.reduce_mean(color.colorfulness(to_8bit(rgb))))}
        for prefix, images in outputs.items():
            metrics.update({f"{prefix}{k}": v for k, v in quality(images, rgb).items()})
        metrics["psnr_over_gray"] = metrics["psnr"] - metrics["gray_psnr"]
        metrics["ssim_over_gray"] = metrics["ssim"] - metrics["gray_ssim"]
        # The mean gain hides its spread: a nearly colourless original loses several dB to any colour.
        gains = psnr_gains(outputs[""], gray, rgb)
        metrics["psnr_over_gray_median"] = float(np.median(gains))
        # How far another draw of as many test photos could move the mean gain (90 flowers: about +-0.6 dB).
        metrics["psnr_over_gray_low"], metrics["psnr_over_gray_high"] = mean_interval(gains)
        metrics["photos_closer_than_gray"] = float(np.mean(gains > 0))
        picks = np.unique(np.linspace(0, len(rgb) - 1, min(8, len(rgb))).round().astype(int))
        worst = np.argsort(gains, kind="stable")[:8]
        for path, key, title, rows in (
                (GRID_FILE, "", "colorized", picks),
                (HINTS_GRID_FILE, f"hints{EVAL_HINTS[0]}_", f"{EVAL_HINTS[0]} hint (true colour)", picks),
                (WORST_GRID_FILE, "", "colorized: most PSNR lost", worst)):
            columns = [to_8bit(image).astype(np.uint8) for image in (gray, outputs[key], rgb)]
            image_grid_png([[column[i] for column in columns] for i in rows], self.workdir / path,
                           titles=("input (L only)", title, "original"))
        return metrics

    def make_endpoints(self):
        cfg = self.config
        return serving.make_endpoints(self.require_model(), cfg.image_size, self.centers, self.temperature,
                                      self.saturation)

    def encode_request(self, raw_inputs: Sequence[Any]):
        return {"image_bytes": tf.constant([read_bytes(x) for x in raw_inputs], tf.string)}

    def decode_response(self, outputs: Mapping[str, np.ndarray]):
        answers = []
        for png in outputs["colorized_png_bytes"]:
            width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
            answers.append({"width": width, "height": height,
                            "png_base64": base64.b64encode(png).decode("ascii")})
        return answers

    def predict_with_hints(self, raw_inputs: Sequence[Any], hints) -> list[Any]:
        """Like predict(), with colour hints [N, K, 4]: K clicks (x, y, a, b) per input, x and y in its
        pixels, a and b in Lab units; rows outside the image (x = -1) are padding."""
        inputs = dict(self.encode_request(list(raw_inputs)), hints=tf.constant(hints, tf.float32))
        outputs = self.endpoints["colorize_with_hints"](**inputs)
        return self.decode_response({k: v.numpy() for k, v in outputs.items()})

    def sample_inputs(self, n: int = 4):
        """Black-and-white PNGs of test photos: what a user of this app has."""
        images = [x for x in self.datasets().test.take(n)]
        return [tf.io.encode_png(tf.cast(tf.round(tf.image.rgb_to_grayscale(x)), tf.uint8)).numpy()
                for x in images]

    def example_requests(self):
        images = tf.stack([x for x in self.datasets().test.take(3)])
        # Two red clicks per photo, and a padding row.
        hints = tf.constant([[[4.0, 5.0, 60.0, 40.0], [10.0, 3.0, 55.0, 30.0], [-1.0, -1.0, 0.0, 0.0]]] * 4)
        return {"serving_default": self.encode_request(self.sample_inputs(4)),
                "colorize_with_hints": dict(self.encode_request(self.sample_inputs(4)), hints=hints),
                "colorize_images": {"images": images}}


class _Member(Pipeline):
    """One U-Net of an ensemble: the app's training from a random start of its own, without the decoding choice."""

    fit = BasePipeline.fit

    def __init__(self, config, workdir, index: int):
        super().__init__(config, workdir)
        self.index = index

    def make_model(self):
        training.set_seed(self.config.seed + MEMBER_SEED_STEP * self.index)
        return super().make_model()


def pick_decoding(scores: Mapping[Any, Mapping[str, float]], min_colorfulness: float):
    """The key of the highest PSNR among the scores whose colourfulness fraction is at least
    `min_colorfulness`; if none is, of the most colourful (a dull model's best try at the floor, not its
    greyest output)."""
    allowed = [k for k, s in scores.items() if s["colorfulness_fraction"] >= min_colorfulness]
    if not allowed:
        return max(scores, key=lambda k: scores[k]["colorfulness_fraction"])
    return max(allowed, key=lambda k: scores[k]["psnr"])


def random_crops_and_flips(rgb: tf.Tensor, size: int) -> tf.Tensor:
    """Each image of a batch [N, H, W, 3]: a random square of MIN_CROP..1 of its side, half mirrored,
    resized to size x size."""
    n = tf.shape(rgb)[0]
    side = tf.random.uniform([n], MIN_CROP, 1.0)
    top = tf.random.uniform([n]) * (1.0 - side)
    left = tf.random.uniform([n]) * (1.0 - side)
    # crop_and_resize mirrors a box whose x1 > x2: flips come free with the crop.
    mirrored = tf.random.uniform([n]) < 0.5
    x1 = tf.where(mirrored, left + side, left)
    x2 = tf.where(mirrored, left, left + side)
    boxes = tf.stack([top, x1, top + side, x2], axis=1)
    return tf.image.crop_and_resize(rgb, boxes, tf.range(n), (size, size))


def examples(rgb: tf.Tensor, simulate_hints: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """RGB batch in 0..255 -> (model input: L and hint maps [N, S, S, 4], ab targets [N, S/2, S/2, 2]
    at the model's output resolution). Hints are simulated from the true colours, or absent."""
    lab = color.rgb_to_lab(rgb / 255.0)
    if simulate_hints:
        n = tf.shape(rgb)[0]
        counts = tf.random.uniform([n], 1, MAX_HINTS + 1, tf.int32)
        counts = tf.where(tf.random.uniform([n]) < HINTED_FRACTION, counts, 0)
        hints = hint_maps_from(lab, counts)
    else:
        hints = serving.no_hints(lab[..., :1])
    stride = model_lib.OUTPUT_STRIDE
    return tf.concat([lab[..., :1], hints], -1), tf.nn.avg_pool2d(lab[..., 1:], stride, stride, "VALID")


def hint_maps_from(lab: tf.Tensor, counts: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Hint maps [N, S, S, 3] of about counts[i] clicks at random pixels of Lab photo i, each the true ab
    averaged over the click's 3 x 3 neighbourhood (a person picks the colour of a region, not a pixel)."""
    size = tf.cast(tf.reduce_prod(tf.shape(lab)[1:3]), tf.float32)
    shape = tf.shape(lab)[:3]
    noise = tf.random.uniform(shape) if seed is None else tf.random.stateless_uniform(shape, seed)
    mask = tf.cast(noise < tf.cast(counts, tf.float32)[:, None, None] / size, tf.float32)[..., None]
    ab = tf.nn.avg_pool2d(lab[..., 1:], 3, 1, "SAME")
    return tf.concat([ab * mask, mask], axis=-1)


def simulated_hints(rgb: tf.Tensor, count: int, seed: int) -> tf.Tensor:
    """Reproducible hint maps: about `count` true-colour clicks per photo of rgb [N, S, S, 3] in 0..1."""
    counts = tf.fill(tf.shape(rgb)[:1], count)
    return hint_maps_from(color.rgb_to_lab(rgb), counts, seed=tf.constant([seed, 0]))


def to_8bit(rgb: tf.Tensor) -> np.ndarray:
    """rgb in 0..1 -> float32 in 0..255 rounded to 8 bits, as the served PNG is."""
    return np.round(np.asarray(rgb) * 255.0).astype(np.float32)


def psnr_gains(outputs: tf.Tensor, gray: tf.Tensor, originals: tf.Tensor) -> np.ndarray:
    """Per photo: PSNR of outputs minus that of gray against originals (rgb [N, S, S, 3] in 0..1, 8-bit)."""
    originals = to_8bit(originals)
    return (tf.image.psnr(to_8bit(outputs), originals, 255.0) - tf.image.psnr(to_8bit(gray), originals, 255.0)).numpy()


def mean_interval(values: np.ndarray, level: float = 0.9, draws: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """The bootstrap interval at `level` of the mean of `values`: the means of `draws` resamples of as many
    values, drawn with replacement (fixed seed, so a report is reproducible)."""
    values = np.asarray(values, np.float64)
    means = np.random.default_rng(seed).choice(values, (draws, len(values))).mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def quality(outputs: tf.Tensor, originals: tf.Tensor) -> dict[str, float]:
    """PSNR, SSIM and colourfulness fraction of outputs against originals, both rgb [N, S, S, 3] in 0..1."""
    outputs, originals = to_8bit(outputs), to_8bit(originals)
    return {"psnr": float(tf.reduce_mean(tf.image.psnr(outputs, originals, 255.0))),
            "ssim": float(tf.reduce_mean(tf.image.ssim(outputs, originals, 255.0))),
            "colorfulness_fraction": float(tf.reduce_mean(color.colorfulness(outputs))
                                           / max(float(tf.reduce_mean(color.colorfulness(originals))), 1e-6))}
