"""Image classification pipeline: digits / folder / TFDS -> CNN -> top-1 accuracy -> image_bytes endpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from apps.image_classification import data, serving
from apps.image_classification import model as model_lib
from apps.image_classification.config import Config
from core import backbones, hub
from core.data import batched, read_bytes
from core.pipeline import Phase
from core.pipeline import Pipeline as BasePipeline
from core.plots import confusion_matrix_png

COMPACT_SIZE = 32  # image_size=0 without a backbone


class Pipeline(BasePipeline):
    """Classifies photos into the classes of its training data.

    Example:
        >>> p = Pipeline(Config.preset("smoke"), workdir="runs/ic")
        >>> p.fit(); p.evaluate()["accuracy"]
        >>> p.predict([open("digit.png", "rb").read()])  # [{"classes": [...], "scores": [...]}]
    """

    name = "image_classification"
    config_class = Config
    monitor = "val_accuracy"
    monitor_mode = "max"

    def __init__(self, config: Config | None = None, workdir=None):
        super().__init__(config, workdir)
        cfg = self.config
        self.config = cfg.replace(image_size=backbones.image_size(cfg.backbone, cfg.image_size, COMPACT_SIZE))

    def load_data(self):
        cfg = self.config
        splits = data.load(cfg.data, cfg.image_size, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        self.state = {"class_names": list(splits.info["class_names"])}
        return splits

    def make_model(self):
        return model_lib.build_model(self.config, len(self.state["class_names"]))

    def compile_model(self, model, learning_rate=None):
        """AdamW (on a cosine schedule unless given a rate) with label-smoothed cross-entropy."""
        model.compile(
            optimizer=keras.optimizers.AdamW(learning_rate or self.cosine_learning_rate(), weight_decay=1e-4),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=self.config.label_smoothing),
            metrics=["accuracy"], jit_compile=self.config.jit_compile)

    def training_data(self, splits):
        n = len(self.state["class_names"])
        one_hot = lambda x, y: (x, tf.one_hot(y, n))  # noqa: E731 - label smoothing needs one-hot
        b = self.global_batch_size
        train = batched(splits.train, b, shuffle=True, seed=self.config.seed, map_fn=one_hot)
        val = batched(splits.val, b, map_fn=one_hot)
        return train, val

    def phases(self):
        cfg = self.config
        if not (cfg.backbone and cfg.fine_tune_epochs > 0):
            return [Phase()]
        return [Phase("train"), Phase("fine_tune", prepare=self._unfreeze, epochs=cfg.fine_tune_epochs)]

    def _unfreeze(self, model):
        """The backbone's `fine_tune_blocks` (or top `fine_tune_layers`) trainable, BatchNorm frozen, on
        the same cosine schedule and weight decay at a tenth of the peak rate."""
        cfg = self.config
        backbones.unfreeze(model.get_layer("features").get_layer("backbone"), cfg.fine_tune_layers,
                           cfg.fine_tune_blocks)
        self.compile_model(model, self.cosine_learning_rate(scale=0.1, epochs=cfg.fine_tune_epochs))

    def compute_metrics(self, test):
        names = self.state["class_names"]
        model = self.require_model()
        labels, predicted = [], []
        for x, y in batched(test, 256, cache=False):
            predicted.append(np.argmax(model(x, training=False), axis=-1))
            labels.append(y.numpy())
        labels, predicted = np.concatenate(labels), np.concatenate(predicted)
        matrix = tf.math.confusion_matrix(labels, predicted, num_classes=len(names)).numpy()
        per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
        confusion_matrix_png(matrix, names, self.workdir / "confusion_matrix.png",
                             title=f"{self.name}: test accuracy {np.mean(labels == predicted):.3f}")
        metrics = {"accuracy": float(np.mean(labels == predicted)),
                   "chance": float(np.max(np.bincount(labels, minlength=len(names))) / len(labels))}
        metrics.update({f"accuracy/{n}": float(a) for n, a in zip(names, per_class)})
        return metrics

    def encoders(self):
        features = self.require_model().get_layer("features")
        size = self.config.image_size
        return {"backbone": hub.Encoder(
            features, tf.TensorSpec([None, size, size, 3], tf.float32),
            f"Image feature vector: float32 RGB images [N, {size}, {size}, 3] in [0, 1] -> "
            f"[N, {features.output.shape[-1]}] features, from an image classifier of "
            f"{len(self.state['class_names'])} classes ({', '.join(self.state['class_names'][:10])}).",
            preprocess=lambda images: images * 255.0)}

    def make_endpoints(self):
        return serving.make_endpoints(self.require_model(), self.state["class_names"],
                                      self.config.image_size, self.config.top_k)

    def encode_request(self, raw_inputs: Sequence[Any]):
        return {"image_bytes": tf.constant([read_bytes(x) for x in raw_inputs], tf.string)}

    def decode_response(self, outputs: Mapping[str, np.ndarray]):
        return [{"classes": [c.decode() for c in classes], "scores": [round(float(s), 4) for s in scores]}
                for classes, scores in zip(outputs["classes"], outputs["scores"])]

    def sample_inputs(self, n: int = 4):
        images = [x for x, _ in self.datasets().test.take(n)]
        return [tf.io.encode_png(tf.cast(tf.round(x), tf.uint8)).numpy() for x in images]

    def example_requests(self):
        request = self.encode_request(self.sample_inputs(4))
        images = tf.stack([tf.cast(tf.io.decode_png(b, 3), tf.float32) for b in request["image_bytes"]])
        return {"serving_default": request, "predict_images": {"images": images}}
