"""Speech commands pipeline: eSpeak / WAV folders / TFDS -> log-mel CNN -> accuracy -> audio_wav_bytes endpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from apps.speech_commands import audio, data, serving
from apps.speech_commands import model as model_lib
from apps.speech_commands.config import Config
from core import hub
from core.data import read_bytes
from core.pipeline import Pipeline as BasePipeline
from core.plots import confusion_matrix_png


class Pipeline(BasePipeline):
    """Spots the spoken keyword in a short clip.

    Example:
        >>> p = Pipeline(Config.preset("smoke"), workdir="runs/sc")
        >>> p.fit(); p.evaluate()["accuracy"]
        >>> p.predict(["yes.wav"])  # [{"label": "yes", "scores": {"yes": 0.93, ...}}]
    """

    name = "speech_commands"
    config_class = Config
    monitor = "val_accuracy"
    monitor_mode = "max"

    def load_data(self):
        splits = data.load(self.config)
        self.state = {"class_names": list(splits.info["class_names"])}
        return splits

    def make_model(self):
        return model_lib.build_model(self.config, len(self.state["class_names"]))

    def compile_model(self, model):
        model.compile(
            optimizer=keras.optimizers.AdamW(self.cosine_learning_rate(), weight_decay=1e-4),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=self.config.label_smoothing),
            metrics=["accuracy"], jit_compile=self.config.jit_compile)

    def training_data(self, splits):
        cfg = self.config
        n = len(self.state["class_names"])
        b = self.global_batch_size
        train = splits.train.cache().shuffle(4096, seed=cfg.seed, reshuffle_each_iteration=True).batch(b)
        if cfg.augment:
            # One stateless seed pair per batch, fresh every epoch: augmentation is random yet repeatable.
            seeds = tf.data.Dataset.random(seed=cfg.seed, rerandomize_each_iteration=True).batch(2)
            train = tf.data.Dataset.zip(train, seeds).map(
                lambda xy, seed: (data.augment(xy[0], seed, cfg), tf.one_hot(xy[1], n)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        else:
            train = train.map(lambda x, y: (x, tf.one_hot(y, n)), num_parallel_calls=tf.data.AUTOTUNE)
        val = splits.val.cache().batch(b).map(lambda x, y: (x, tf.one_hot(y, n)), num_parallel_calls=tf.data.AUTOTUNE)
        return train.prefetch(tf.data.AUTOTUNE), val.prefetch(tf.data.AUTOTUNE)

    def compute_metrics(self, test):
        names = self.state["class_names"]
        labels, predicted = self._predict_split(test)
        matrix = tf.math.confusion_matrix(labels, predicted, num_classes=len(names)).numpy()
        per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
        accuracy = float(np.mean(labels == predicted))
        confusion_matrix_png(matrix, names, self.workdir / "confusion_matrix.png",
                             title=f"{self.name}: test accuracy {accuracy:.3f}")
        metrics = {"accuracy": accuracy,
                   "chance": float(np.max(np.bincount(labels, minlength=len(names))) / len(labels)),
                   "examples": float(len(labels))}
        metrics.update({f"accuracy/{n}": float(a) for n, a, c in zip(names, per_class, matrix.sum(axis=1)) if c})
        return metrics

    def _predict_split(self, ds) -> tuple[np.ndarray, np.ndarray]:
        model = self.require_model()
        labels, predicted = [], []
        for x, y in ds.batch(256):
            predicted.append(np.argmax(model(x, training=False), axis=-1))
            labels.append(y.numpy())
        return np.concatenate(labels), np.concatenate(predicted)

    def evaluate_files(self, paths: Sequence[str | Path], truth: Sequence[str], batch: int = 64) -> dict:
        """Accuracy of the serving graph on WAV files (e.g. another data set, without retraining).

        `accuracy` takes the best of all classes; `accuracy_within_truth_classes` only compares the
        scores of the classes that occur in `truth` (e.g. digits only, for a digits data set).
        """
        names = self.state["class_names"]
        missing = sorted(set(truth) - set(names))
        if missing:
            raise ValueError(f"Labels {missing} are not classes of this model ({names}).")
        allowed = np.array([n in set(truth) for n in names])
        correct, correct_within = 0, 0
        fn = self.endpoints["serving_default"]
        for i in range(0, len(paths), batch):
            out = fn(**self.encode_request(list(paths[i:i + batch])))
            scores = out["scores"].numpy()
            want = np.array([names.index(t) for t in truth[i:i + batch]])
            correct += int(np.sum(np.argmax(scores, -1) == want))
            correct_within += int(np.sum(np.argmax(np.where(allowed, scores, -1.0), -1) == want))
        return {"accuracy": correct / len(paths), "accuracy_within_truth_classes": correct_within / len(paths),
                "examples": len(paths)}

    def encoders(self):
        cfg = self.config
        encoder = self.require_model().get_layer("encoder")
        return {"encoder": hub.Encoder(
            encoder, tf.TensorSpec([None, cfg.clip_samples], tf.float32),
            f"Audio embedding: float32 mono waveforms [N, {cfg.clip_samples}] in [-1, 1] at "
            f"{cfg.sample_rate} Hz ({cfg.clip_seconds:g} s, the word centred) -> "
            f"[N, {encoder.output.shape[-1]}] features, from a keyword spotter of "
            f"{len(self.state['class_names'])} classes ({', '.join(self.state['class_names'])}).")}

    def make_endpoints(self):
        return serving.make_endpoints(self.require_model(), self.state["class_names"], self.config)

    def encode_request(self, raw_inputs: Sequence[Any]):
        return {"audio_wav_bytes": tf.constant([read_bytes(x) for x in raw_inputs], tf.string)}

    def decode_response(self, outputs: Mapping[str, np.ndarray]):
        answers = []
        for label, scores, names in zip(outputs["label"], outputs["scores"], outputs["labels"]):
            top = np.argsort(-scores)[:3]
            answers.append({"label": label.decode(),
                            "scores": {names[i].decode(): round(float(scores[i]), 4) for i in top}})
        return answers

    def sample_inputs(self, n: int = 4):
        waves = [x.numpy() for x, _ in self.datasets().test.take(n)]
        return [audio.encode_wav(w, self.config.sample_rate) for w in waves]

    def example_requests(self):
        raw = self.sample_inputs(4)
        return {"serving_default": self.encode_request(raw),
                "predict_waveform": {"waveform": audio.clips(raw, self.config)}}
