"""Image generation pipeline: digits / folder / TFDS -> judge classifier, then a conditional GAN -> KID and
friends against a per-class PCA-Gaussian baseline -> label + seed in, PNG out."""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from apps.image_generation import data, metrics, pictures, serving
from apps.image_generation import model as model_lib
from apps.image_generation.config import Config
from core import training
from core.data import batched
from core.distribute import is_chief
from core.pipeline import Phase
from core.pipeline import Pipeline as BasePipeline

EVAL_SEED = 1_000_000  # evaluate()'s samples use seeds from here on, apart from the small ones people try
GRID_CLASSES = 20  # rows of a sample grid at most


class Pipeline(BasePipeline):
    """Draws new images of the classes of its training data.

    Example:
        >>> p = Pipeline(Config.preset("smoke"), workdir="runs/gan")
        >>> p.fit(); p.evaluate()["kid"]
        >>> p.predict([{"label": "7", "seed": 3}])  # [{"label": "7", "width": 16, "height": 16, "png_base64": ...}]
    """

    name = "image_generation"
    config_class = Config
    monitor = "val_kid"
    monitor_mode = "min"

    def __init__(self, config: Config | None = None, workdir=None):
        super().__init__(config, workdir)
        self._generate, self._generate_for = {}, None  # traced samplers by candidates, the model they sample

    def load_data(self):
        cfg = self.config
        splits = data.load(cfg.data, cfg.image_size, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.conditional)
        self.state = {"class_names": list(splits.info["class_names"])}
        return splits

    def make_model(self):
        return model_lib.build_model(self.config, len(self.state["class_names"]))

    def compile_model(self, model):
        cfg = self.config
        adam = lambda: keras.optimizers.Adam(self.learning_rate, beta_1=cfg.beta_1, beta_2=0.99)  # noqa: E731
        model.compile(adam(), adam(), jit_compile=cfg.jit_compile)

    def training_data(self, splits):
        scale = lambda x, y: (x / 127.5 - 1.0, y)  # noqa: E731 - the GAN works in [-1, 1]
        b = self.global_batch_size
        train = batched(splits.train, b, shuffle=True, seed=self.config.seed, map_fn=scale, drop_remainder=True)
        # Large validation batches: KID is estimated per batch, and small ones make it noisy.
        val = batched(splits.val, 4 * b, map_fn=scale)
        return train, val

    def phases(self):
        return [Phase("judge", prepare=lambda model: None, run=self._train_judge), Phase("train")]

    def _train_judge(self, model, splits, workdir):
        """The metric classifier: image_classification's compact CNN, on the training split only, taught the
        classes, or (unconditional) k-means clusters of the training images."""
        cfg = self.config
        judge = model.judge
        judge.trainable = True
        judge.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        train_split, val_split = splits.train, splits.val
        if not cfg.conditional:
            (train_x, _), (val_x, _) = arrays(train_split), arrays(val_split)
            train_y, val_y = metrics.pseudo_classes(train_x, [val_x], model_lib.CLUSTERS, seed=cfg.seed)
            train_split = tf.data.Dataset.from_tensor_slices((train_x, train_y))
            val_split = tf.data.Dataset.from_tensor_slices((val_x, val_y))
        train = batched(train_split, self.global_batch_size, shuffle=True, seed=cfg.seed)
        val = batched(val_split, self.global_batch_size)
        stop = keras.callbacks.EarlyStopping("val_accuracy", mode="max", patience=3, restore_best_weights=True)
        training.build_for_training(judge, train)
        history = judge.fit(train, validation_data=val, epochs=cfg.judge_epochs, callbacks=[stop],
                            verbose=2 if cfg.verbose else 0)
        judge.trainable = False
        return {"epochs_run": len(history.epoch), "val_accuracy": float(max(history.history["val_accuracy"]))}

    def extra_callbacks(self):
        return [SampleGrids(self)] if is_chief() else []

    # ------------------------------------------------------------------------------------------
    # Sampling.

    def generate(self, labels: np.ndarray, seeds: np.ndarray, batch: int = 256, candidates: int | None = None
                 ) -> np.ndarray:
        """Class ids and seeds -> images [N, S, S, 3], float32 0..255 rounded as served; `candidates`
        overrides the config's (1: each seed's first draw)."""
        fn = self._generate_fn(self.config.candidates if candidates is None else candidates)
        out = [fn(tf.constant(labels[i:i + batch], tf.int32), tf.constant(seeds[i:i + batch], tf.int64)).numpy()
               for i in range(0, len(labels), batch)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0,), np.float32)

    def _generate_fn(self, candidates: int):
        model = self.require_model()
        if self._generate_for is not model:
            self._generate, self._generate_for = {}, model
        if candidates not in self._generate:
            sample, _ = serving.make_sampler(model.ema_generator, self.config.latent_dim, **self._chooser(candidates))
            self._generate[candidates] = tf.function(lambda ids, seeds: serving.to_uint8(sample(ids, seeds)))
        return self._generate[candidates]

    def _chooser(self, candidates: int | None = None) -> dict:
        """The discriminator and candidates per seed, where its class head was trained to choose with."""
        model = self.require_model()
        return {"discriminator": model.discriminator if model.class_weight else None,
                "candidates": self.config.candidates if candidates is None else candidates}

    def sample_grid(self, samples_per_class: int | None = None) -> np.ndarray:
        """uint8 picture: one row per class (the first 20), the same seeds 0..k-1 in every row."""
        k = samples_per_class or self.config.samples_per_class
        rows = self.grid_rows()
        ids = np.repeat(np.arange(rows), k) if self.config.conditional else np.zeros(rows * k, np.int64)
        seeds = np.tile(np.arange(k), rows) if self.config.conditional else np.arange(rows * k)
        images = self.generate(ids, seeds)
        return pictures.tile(images, rows, zoom=pictures.zoom_for(self.config.image_size))

    def grid_rows(self) -> int:
        """Rows of a sample grid: one per class (the first 20), or 4 of an unconditional model's samples."""
        return min(len(self.state["class_names"]), GRID_CLASSES) if self.config.conditional else 4

    # ------------------------------------------------------------------------------------------
    # Evaluation.

    def compute_metrics(self, test):
        cfg = self.config
        names = self.state["class_names"]
        train_x, train_y = arrays(self.datasets().train)
        test_x, test_y = arrays(test)
        n = max(len(test_y), 500)  # more samples than test images: steadier KID and accuracy
        labels = test_y[np.arange(n) % len(test_y)]
        generated = self.generate(labels, EVAL_SEED + np.arange(n))
        baseline = metrics.PcaGaussian(train_x, train_y, len(names), seed=cfg.seed).sample(labels)

        judge_fn = tf.function(lambda x: self.require_model().judge_outputs(x / 127.5 - 1.0), reduce_retracing=True)

        def judged(images):
            outputs = [judge_fn(tf.constant(images[i:i + 512])) for i in range(0, len(images), 512)]
            features = np.concatenate([f.numpy() for f, _ in outputs])
            return features, np.argmax(np.concatenate([p.numpy() for _, p in outputs]), axis=-1)

        real_f, real_pred = judged(test_x)
        val_x, _ = arrays(self.datasets().val)
        result = {"real_class_accuracy": float(np.mean(real_pred == test_y)),
                  "real_nn_distance_median": float(np.median(metrics.nearest_distances(test_x, train_x)))}
        samples = {"": generated, "baseline_": baseline}
        if self._chooser()["discriminator"] is not None and cfg.candidates > 1:  # what choosing adds
            samples["first_draw_"] = self.generate(labels, EVAL_SEED + np.arange(n), candidates=1)
        # Validation photos (unseen, but model selection read them) as queries: the test's own control.
        for prefix, queries in (("real_", val_x), *samples.items()):
            if not len(queries):  # a source without validation photos has no control
                continue
            nearest = metrics.training_nearest_fraction(queries, train_x, test_x)
            result.update({f"{prefix}nn_train_fraction": nearest["fraction"], f"{prefix}nn_train_z": nearest["z"],
                           "nn_train_chance": nearest["chance"]})
        for prefix, images in samples.items():
            features, predicted = judged(images)
            result[f"{prefix}kid"] = metrics.kid(real_f, features)
            result[f"{prefix}fid"] = metrics.fid(real_f, features)
            result[f"{prefix}class_accuracy"] = float(np.mean(predicted == labels))
            result[f"{prefix}two_sample_accuracy"] = metrics.two_sample_accuracy(real_f, features[:len(test_y)],
                                                                                 seed=cfg.seed)
            result[f"{prefix}nn_distance_median"] = float(np.median(
                metrics.nearest_distances(images[:len(test_y)], train_x)))
        for prefix in samples.keys() - {"baseline_"}:
            result[f"{prefix}kid_over_baseline"] = result[f"{prefix}kid"] / max(result["baseline_kid"], 1e-12)
        if not cfg.conditional:  # the judge's classes are clusters, not what a sample was asked to be
            result = {k: v for k, v in result.items() if not k.endswith("class_accuracy")}
        if is_chief():
            self._write_final_pictures(test_x, test_y, baseline, labels, result)
        return result

    def _write_final_pictures(self, test_x, test_y, baseline, labels, result):
        names = self.state["class_names"]
        k, rows = self.config.samples_per_class, self.grid_rows()
        zoom = pictures.zoom_for(self.config.image_size)
        conditional = self.config.conditional

        def per_class(images, image_labels):
            picked = []
            for c in range(rows):
                mine = images[image_labels == c][:k] if conditional else images[c * k:(c + 1) * k]
                blank = np.full((k - len(mine), *images.shape[1:]), 128, np.float32)
                picked.append(np.concatenate([mine, blank]))
            return pictures.tile(np.concatenate(picked), rows, zoom=zoom)

        pictures.panels_png(
            [self.sample_grid(), per_class(test_x, test_y), per_class(baseline, labels)],
            [f"generated (KID {result['kid']:.3g}"
             + (f", class acc. {result['class_accuracy']:.2f})" if conditional else ")"),
             "real held-out" + (f" (class acc. {result['real_class_accuracy']:.2f})" if conditional else ""),
             f"PCA-Gaussian baseline (KID {result['baseline_kid']:.3g})"],
            self.workdir / "samples_vs_real.png",
            title=f"{self.name}: " + (f"one row per class ({', '.join(names[:rows])})" if conditional
                                       else "unconditional samples, real images, baseline"))
        pictures.curves_png(pictures.read_history(self.workdir / "logs" / "history.csv"),
                            self.workdir / "training_curves.png", result["baseline_kid"], title=self.name)

    # ------------------------------------------------------------------------------------------
    # Serving.

    def make_endpoints(self):
        cfg = self.config
        return serving.make_endpoints(self.require_model().ema_generator, self.state["class_names"],
                                      cfg.latent_dim, cfg.image_size, **self._chooser())

    def encode_request(self, raw_inputs: Sequence[Any]):
        """Each raw input: {"label": name or "", "seed": int}, a (label, seed) pair, "label:seed" (what the
        command line passes, e.g. "7:42" or ":42" for a random class), or a label alone (seed 0)."""
        labels, seeds = [], []
        for item in raw_inputs:
            if isinstance(item, Mapping):
                label, seed = item.get("label", ""), item.get("seed", 0)
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                label, seed = item
            elif isinstance(item, (str, bytes)):
                text = item.decode() if isinstance(item, bytes) else item
                head, sep, tail = text.rpartition(":")
                label, seed = (head, int(tail)) if sep and tail.lstrip("-").isdigit() else (text, 0)
            else:
                raise TypeError("Each input is {'label': str, 'seed': int}, a (label, seed) pair or a label. "
                                f"Received: {item!r}")
            labels.append(label.encode() if isinstance(label, str) else bytes(label))
            seeds.append(int(seed))
        return {"label": tf.constant(labels, tf.string, shape=[len(labels)]),
                "seed": tf.constant(seeds, tf.int64, shape=[len(seeds)])}

    def decode_response(self, outputs: Mapping[str, np.ndarray]):
        answers = []
        for label, png in zip(outputs["label"], outputs["image_png_bytes"]):
            width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
            answers.append({"label": label.decode(), "width": width, "height": height,
                            "png_base64": base64.b64encode(png).decode("ascii")})
        return answers

    def sample_inputs(self, n: int = 4):
        """Class names of test images with seeds 0..n-1, and a random class ("") for the last."""
        names = self.state["class_names"] if self.state else self.datasets().info["class_names"]
        inputs = [{"label": names[int(y)], "seed": i} for i, (_, y) in enumerate(self.datasets().test.take(n))]
        if len(inputs) > 1:
            inputs[-1]["label"] = ""
        return inputs

    def example_requests(self):
        request = self.encode_request(self.sample_inputs(4))
        rows = int(request["seed"].shape[0])
        return {"serving_default": request, "generate_images": request,
                "interpolate": {"label": request["label"], "seed_from": request["seed"],
                                "seed_to": request["seed"] + 100, "steps": tf.fill([rows], tf.constant(5, tf.int64))}}


def arrays(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """An unbatched (image, label) split as numpy arrays."""
    images, labels = [], []
    for x, y in batched(ds, 512, cache=False):
        images.append(x.numpy())
        labels.append(y.numpy())
    if not images:
        return np.zeros((0, *ds.element_spec[0].shape), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(images).astype(np.float32), np.concatenate(labels).astype(np.int64)


class SampleGrids(keras.callbacks.Callback):
    """After every epoch, workdir/samples/epoch_NNN.png: one row per class, the same seeds each epoch, so
    the grids show how the samples of one seed evolve. At the end, progress.png puts a few side by side."""

    def __init__(self, pipeline: Pipeline):
        super().__init__()
        self.pipeline = pipeline
        self.folder = pipeline.workdir / "samples"

    def on_epoch_end(self, epoch, logs=None):
        pictures.write_png(self.pipeline.sample_grid(), self.folder / f"epoch_{epoch + 1:03d}.png")

    def on_train_end(self, logs=None):
        files = sorted(self.folder.glob("epoch_*.png"))
        if not files:
            return
        picks = sorted({files[int(round(i))] for i in np.linspace(0, len(files) - 1, min(len(files), 5))})
        grids = [tf.io.decode_png(p.read_bytes()).numpy() for p in picks]
        pictures.panels_png(grids, [f"epoch {int(p.stem.split('_')[1])}" for p in picks],
                            self.pipeline.workdir / "progress.png",
                            title=f"{self.pipeline.name}: samples of fixed seeds through training")
