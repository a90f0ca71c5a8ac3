"""Traffic-sign pipeline: drawn/GTSRB/GTSDB scenes -> CenterNet detector + crop classifier -> COCO mAP
and crop accuracy -> image_bytes endpoint with in-graph NMS."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from apps.traffic_signs import data, readers, serving
from apps.traffic_signs import metrics as metrics_lib
from apps.traffic_signs import model as model_lib
from apps.traffic_signs.config import Config
from apps.traffic_signs.scenes import CropSet, SceneSet
from core import training
from core.data import read_bytes
from core.pipeline import Phase
from core.pipeline import Pipeline as BasePipeline
from core.plots import confusion_matrix_png
from core.schedules import BudgetedCosine

EVAL_THRESHOLD = 0.01  # mAP needs the low-scoring detections too
EVAL_MAX_DETECTIONS = 100  # COCO's maxDets


class Pipeline(BasePipeline):
    """Finds traffic signs in photos and names them (43 GTSRB classes).

    Example:
        >>> p = Pipeline(Config.preset("smoke"), workdir="runs/ts")
        >>> p.fit(); p.evaluate()["map_50"]
        >>> p.predict([open("street.jpg", "rb").read()])
        [{"detections": [{"class": "stop", "class_id": 14, "score": 0.91, "box": [y1, x1, y2, x2]}, ...]}]
    """

    name = "traffic_signs"
    config_class = Config
    monitor = "val_loss"
    monitor_mode = "min"

    # -- data -----------------------------------------------------------------------------------
    def load_data(self):
        splits = data.load(self.config, self.config.seed)
        self.state = {"class_ids": splits.info["class_ids"], "class_names": splits.info["class_names"]}
        return splits

    @property
    def num_classes(self) -> int:
        return len(self.state["class_ids"])

    def make_model(self):
        return model_lib.build_model(self.config, self.num_classes)

    def compile_model(self, model):
        cfg = self.config
        model.compile(
            optimizer=keras.optimizers.AdamW(self.learning_rate, weight_decay=1e-4, clipnorm=5.0),
            loss={"heatmap": model_lib.heatmap_focal_loss,
                  "regression": model_lib.RegressionLoss(cfg.size_weight, cfg.offset_weight),
                  "class_probs": keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)},
            loss_weights={"heatmap": 1.0, "regression": 1.0, "class_probs": cfg.classify_weight},
            metrics={"class_probs": ["accuracy"]}, jit_compile=cfg.jit_compile)

    def _batches(self, scenes: SceneSet, crops: CropSet, *, train: bool) -> tf.data.Dataset:
        cfg = self.config
        n = self.num_classes
        size = cfg.image_size

        def targets(images, boxes, classes):
            heat, reg = model_lib.centernet_targets(boxes, classes, size, model_lib.STRIDE, n)
            return tf.cast(images, tf.float32), heat, reg

        scene_ds = scenes.dataset()
        if train:
            scene_ds = scene_ds.shuffle(len(scenes), seed=cfg.seed, reshuffle_each_iteration=True)
        scene_ds = scene_ds.batch(self.global_batch_size).map(targets, num_parallel_calls=tf.data.AUTOTUNE)
        crop_ds = self._crop_batches(crops, train=train, repeat=True)

        def join(scene_part, crop_part):
            images, heat, reg = scene_part
            crop_images, crop_labels = crop_part
            return ({"scenes": images, "crops": crop_images},
                    {"heatmap": heat, "regression": reg, "class_probs": crop_labels})

        return tf.data.Dataset.zip((scene_ds, crop_ds)).map(join).prefetch(tf.data.AUTOTUNE)

    def _crop_batches(self, crops: CropSet, *, train: bool, repeat: bool = False) -> tf.data.Dataset:
        """(float32 crops, one-hot labels) batches: the classifier's data, alone or beside the scenes."""
        n = self.num_classes
        ds = crops.dataset().repeat() if repeat else crops.dataset()
        if train:
            ds = ds.shuffle(min(len(crops), 8192), seed=self.config.seed, reshuffle_each_iteration=True)
        return ds.batch(self.config.crop_batch_size * self.replicas).map(
            lambda x, y: (tf.cast(x, tf.float32), tf.one_hot(y, n)))

    # -- training -------------------------------------------------------------------------------
    def phases(self):
        """The classifier alone for `classifier_epochs` (it needs many more steps than the joint schedule
        gives it, one crop batch per scene batch), then the joint model with the classifier frozen."""
        if self.config.classifier_epochs <= 0 or not len(self.datasets().crops["train"]):
            return [Phase()]
        return [Phase("classifier", run=self._train_classifier, budgeted=False),
                Phase("train", prepare=self._freeze_classifier)]

    def _train_classifier(self, model, splits, workdir):
        """The crop classifier alone (it shares the joint model's weights), on a step-counted cosine."""
        cfg = self.config
        classify = model_lib.classifier(model)
        steps = cfg.classifier_epochs * -(-len(splits.crops["train"]) // (cfg.crop_batch_size * self.replicas))
        # BudgetedCosine picks warmup or cosine with tf.where; CosineDecay's tf.cond would be traced once
        # per variable by AdamW's weight decay.
        schedule = BudgetedCosine(self.learning_rate, steps, warmup_steps=max(1, steps // 20))
        classify.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                         loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                         metrics=["accuracy"])
        val = self._crop_batches(splits.crops["val"], train=False) if len(splits.crops["val"]) else None
        train = self._crop_batches(splits.crops["train"], train=True).prefetch(tf.data.AUTOTUNE)
        training.build_for_training(classify, train)
        start = time.monotonic()
        history = classify.fit(train, validation_data=val, epochs=cfg.classifier_epochs, verbose=cfg.verbose)
        result = {"classifier_epochs": cfg.classifier_epochs, "seconds": time.monotonic() - start,
                  **{k: float(v[-1]) for k, v in history.history.items()}}
        print(f"[{self.name}] classifier phase: {json.dumps(result)}", flush=True)
        return result

    def _freeze_classifier(self, model):
        """Joint training fits the detector only: at its learning rate the classifier's held-out accuracy
        swings from epoch to epoch, and its best epoch would be chosen by a loss the detector dominates."""
        for layer in model_lib.classifier_layers(model):
            layer.trainable = False
        self.compile_model(model)

    def training_data(self, splits):
        if len(splits.crops["train"]) == 0 or len(splits.scenes["train"]) == 0:
            raise ValueError(f"No training data: {splits.info.get('scenes')} scenes, "
                             f"{splits.info.get('crops')} crops")
        train = self._batches(splits.scenes["train"], splits.crops["train"], train=True)
        val = None
        if len(splits.scenes["val"]) and len(splits.crops["val"]):
            val = self._batches(splits.scenes["val"], splits.crops["val"], train=False)
        return train, val

    # -- evaluation -----------------------------------------------------------------------------
    def detect_arrays(self, images: np.ndarray, score_threshold: float = EVAL_THRESHOLD,
                      max_detections: int = EVAL_MAX_DETECTIONS, batch_size: int = 64):
        """Scenes (uint8/float [N, S, S, 3]) -> per image [(pixel box y1 x1 y2 x2, class index, score)]."""
        fn = self.endpoints["detect_images"]
        out = []
        for start in range(0, len(images), batch_size):
            batch = tf.constant(np.asarray(images[start:start + batch_size], np.float32))
            result = fn(images=batch, score_threshold=tf.constant([score_threshold], tf.float32),
                        max_detections=tf.constant([max_detections], tf.int32))
            height, width = batch.shape[1], batch.shape[2]
            scale = np.array([height, width, height, width], np.float32)
            index = {c: i for i, c in enumerate(self.state["class_ids"])}
            for boxes, ids, scores, count in zip(result["boxes"].numpy(), result["class_ids"].numpy(),
                                                 result["scores"].numpy(), result["num_detections"].numpy()):
                out.append([(tuple(boxes[j] * scale), index[int(ids[j])], float(scores[j]))
                            for j in range(int(count))])
        return out

    def classify_arrays(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Crops (uint8 [N, K, K, 3]) -> predicted class indices, averaged over `crop_views` views."""
        classify = model_lib.classifier(self.require_model(), views=self.config.crop_views)
        predicted = []
        for start in range(0, len(crops), batch_size):
            batch = tf.image.resize(tf.cast(crops[start:start + batch_size], tf.float32),
                                    (self.config.crop_size, self.config.crop_size), antialias=True)
            predicted.append(np.argmax(classify(batch, training=False), axis=-1))
        return np.concatenate(predicted) if predicted else np.zeros([0], np.int64)

    @staticmethod
    def ground_truth(scenes: SceneSet):
        return [[(tuple(b), int(c)) for b, c in zip(boxes, classes) if c >= 0]
                for boxes, classes in zip(scenes.boxes, scenes.classes)]

    def compute_metrics(self, test):
        splits = self.datasets()
        scenes, crops = splits.scenes["test"], splits.crops["test"]
        names = self.state["class_names"]
        found = self.detect_arrays(scenes.images)
        truth = self.ground_truth(scenes)
        result = metrics_lib.coco_map(truth, found, self.num_classes)
        baseline = metrics_lib.blind_baseline(self.ground_truth(splits.scenes["train"]), len(scenes),
                                              self.config.image_size, self.num_classes)
        result["baseline_map_50"] = metrics_lib.coco_map(truth, baseline, self.num_classes)["map_50"]
        per_class = {f"ap_50/{names[int(k.split('/')[1])]}": v for k, v in result.items() if k.startswith("ap_50/")}
        result = {k: v for k, v in result.items() if not k.startswith("ap_50/")}
        # Detections on sign-free scenes at the serving threshold: false alarms a driver would see.
        empty = [f for f, t in zip(found, truth) if not t]
        if empty:
            result["false_alarms_per_empty_scene"] = float(np.mean(
                [sum(s >= self.config.score_threshold for _, _, s in f) for f in empty]))
        if len(crops):
            predicted = self.classify_arrays(crops.images)
            result["crop_accuracy"] = float(np.mean(predicted == crops.labels))
            matrix = tf.math.confusion_matrix(crops.labels, predicted, num_classes=self.num_classes).numpy()
            confusion_matrix_png(matrix, names, self.workdir / "crop_confusion_matrix.png",
                                 title=f"{self.name}: crop accuracy {result['crop_accuracy']:.3f}")
        if self.config.eval_crops:
            result.update(self.real_crop_accuracy(self.config.eval_crops))
        self.draw_detections(scenes, found, self.workdir / "detections.png")
        result.update(per_class)
        return result

    def real_crop_accuracy(self, root: str) -> dict[str, float]:
        """Classification accuracy on every crop of a GTSRB folder whose class the model knows."""
        index = {c: i for i, c in enumerate(self.state["class_ids"])}
        records = [r for r in readers.read_gtsrb(root) if r.class_id in index]
        crops = readers.gtsrb_crop_set(records, index, self.config.crop_size)
        predicted = self.classify_arrays(crops.images)
        return {"real_crop_accuracy": float(np.mean(predicted == crops.labels)), "real_crops": len(records)}

    def draw_detections(self, scenes: SceneSet, found, path: Path, count: int = 12, scale: int = 2):
        """A sheet of test scenes: predicted boxes with names (green), missed signs (red, dashed)."""
        count = min(count, len(scenes))
        if count == 0:
            return None
        size = scenes.images.shape[1] * scale
        columns = min(4, count)
        rows = -(-count // columns)
        sheet = Image.new("RGB", (columns * (size + 6), rows * (size + 6)), (255, 255, 255))
        names = self.state["class_names"]
        for i in range(count):
            image = Image.fromarray(scenes.images[i]).resize((size, size), Image.NEAREST)
            draw = ImageDraw.Draw(image)
            for (y1, x1, y2, x2), _ in self.ground_truth(scenes)[i]:
                draw.rectangle([x1 * scale, y1 * scale, x2 * scale, y2 * scale], outline=(255, 60, 60), width=1)
            for (y1, x1, y2, x2), c, s in found[i]:
                if s < self.config.score_threshold:
                    continue
                draw.rectangle([x1 * scale, y1 * scale, x2 * scale, y2 * scale], outline=(40, 255, 40), width=2)
                label = f"{names[c]} {s:.2f}"
                ty = max(0, y1 * scale - 11)
                draw.rectangle([x1 * scale, ty, x1 * scale + 6 * len(label), ty + 10], fill=(0, 0, 0))
                draw.text((x1 * scale + 1, ty - 1), label, fill=(40, 255, 40))
            sheet.paste(image, ((i % columns) * (size + 6) + 3, (i // columns) * (size + 6) + 3))
        path.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(path)
        return path

    # -- serving --------------------------------------------------------------------------------
    def make_endpoints(self):
        cfg = self.config
        return serving.make_endpoints(
            self.require_model(), self.state["class_ids"], self.state["class_names"],
            serve_size=cfg.serve_size or cfg.image_size, crop_size=cfg.crop_size,
            score_threshold=cfg.score_threshold, max_detections=cfg.max_detections,
            candidates=cfg.candidates, iou_threshold=cfg.nms_iou, top_k=cfg.top_k,
            refine_candidates=cfg.refine_candidates, crop_views=cfg.crop_views)

    def encode_request(self, raw_inputs: Sequence[Any], score_threshold: float | None = None,
                       max_detections: int | None = None):
        cfg = self.config
        return {"image_bytes": tf.constant([read_bytes(x) for x in raw_inputs], tf.string),
                "score_threshold": tf.constant([cfg.score_threshold if score_threshold is None
                                                else score_threshold], tf.float32),
                "max_detections": tf.constant([cfg.max_detections if max_detections is None
                                               else max_detections], tf.int32)}

    def decode_response(self, outputs: Mapping[str, np.ndarray]):
        answers = []
        for boxes, classes, ids, scores, count in zip(outputs["boxes"], outputs["classes"], outputs["class_ids"],
                                                      outputs["scores"], outputs["num_detections"]):
            answers.append({"detections": [
                {"class": classes[j].decode(), "class_id": int(ids[j]), "score": round(float(scores[j]), 4),
                 "box": [round(float(v), 4) for v in boxes[j]]} for j in range(int(count))]})
        return answers

    def sample_inputs(self, n: int = 4):
        scenes = self.datasets().scenes["test"]
        # Scenes with signs first: the demo should show something to find.
        order = sorted(range(len(scenes)), key=lambda i: -int(np.sum(scenes.classes[i] >= 0)))[:n]
        return [tf.io.encode_png(scenes.images[i]).numpy() for i in order]

    def sample_crops(self, n: int = 4) -> list[bytes]:
        crops = self.datasets().crops["test"]
        return [tf.io.encode_png(crops.images[i]).numpy() for i in range(min(n, len(crops)))]

    def example_requests(self):
        request = self.encode_request(self.sample_inputs(4))
        images = tf.stack([tf.cast(tf.io.decode_png(b, 3), tf.float32) for b in request["image_bytes"]])
        return {"serving_default": request,
                "detect_images": {"images": images, "score_threshold": request["score_threshold"],
                                  "max_detections": request["max_detections"]},
                "classify_crops": {"image_bytes": tf.constant(self.sample_crops(4), tf.string)}}

    def classify(self, raw_crops: Sequence[Any]) -> list[dict]:
        """Names pre-cropped signs (the classify_crops endpoint)."""
        out = self.endpoints["classify_crops"](image_bytes=tf.constant([read_bytes(x) for x in raw_crops]))
        return [{"classes": [c.decode() for c in classes], "class_ids": [int(i) for i in ids],
                 "scores": [round(float(s), 4) for s in scores]}
                for classes, ids, scores in zip(out["classes"].numpy(), out["class_ids"].numpy(),
                                                out["scores"].numpy())]

