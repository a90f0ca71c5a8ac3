"""Traffic-sign bench: one model, the classifier scored on held-out GTSRB tracks, the detector on scenes.

The classifier trains on real GTSRB crops (plus drawn ones) and is scored on held-out tracks; the
detector trains on scenes of drawn signs of all 43 classes and is scored on held-out drawn scenes
(mAP, signs named by the classifier). The classifier first trains alone for 60 epochs with lighting
augmentation, then the detector for the 900 s budget.
"""

from __future__ import annotations

import tensorflow as tf

from core.bench import BenchSpec
from core.data import decode_resize_images, read_bytes


def bare_model(pipeline, raw_inputs):
    """serving_default's neural work: the scenes at the served size for the detector, and
    `refine_candidates` sign crops per scene for the classifier (their pixels do not change the cost).
    Decoding, resizing, peak picking, cropping and NMS are the endpoint's overhead."""
    cfg = pipeline.config
    size = cfg.serve_size or cfg.image_size
    scenes = decode_resize_images(tf.constant([read_bytes(x) for x in raw_inputs]), (size, size))
    crops = tf.zeros([len(raw_inputs) * max(cfg.refine_candidates, 1), cfg.crop_size, cfg.crop_size, 3])
    model = pipeline.require_model()
    return (lambda x: model(x, training=False)), {"scenes": scenes, "crops": crops}


BENCH = BenchSpec(
    overrides={"scene_signs": "drawn", "image_size": 128, "crop_size": 48, "train_scenes": 2000,
               "val_scenes": 100, "test_scenes": 300, "drawn_crops_per_class": 40, "crop_batch_size": 128,
               "classifier_epochs": 60, "width": 32, "crop_lighting": 1.0, "epochs": 15, "batch_size": 32,
               "learning_rate": 3e-3, "classify_weight": 1.0, "time_budget_s": 900, "verbose": 2},
    dataset="gtsrb_subset",
    source="GTSRB (https://benchmark.ini.rub.de/; TFDS has no GTSRB): unzip the training set "
           "(GTSRB_Final_Training_Images.zip) and put the class folders of its Final_Training/Images "
           "(<ClassId>/*.ppm with GT-<ClassId>.csv) in gtsrb_subset/; any subset of whole tracks works",
    bars=(("crop_accuracy", ">=", 0.95), ("map_50", ">=", 0.7), ("map_50", ">", "baseline_map_50")),
    # The classifier phase counts epochs, not the time budget: cap it too, and draw fewer scenes.
    quick={"classifier_epochs": 5, "train_scenes": 600, "val_scenes": 50, "test_scenes": 100},
    bare_model=bare_model,
)
