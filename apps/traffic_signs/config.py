"""Traffic-sign detection settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig
from core.data import SHARED_DATASETS


@dataclasses.dataclass
class Config(BaseConfig):
    # Data.
    classes: str = ""  # comma-separated GTSRB ClassIds to use; "" = all 43 (or all present in the data)
    image_size: int = 192  # square scene side the detector trains on (a multiple of 16)
    serve_size: int = 0  # side the exported endpoint resizes photos to; 0 = image_size
    crop_size: int = 48  # side of the sign crops the classification head sees (a multiple of 16)
    train_scenes: int = 3000
    val_scenes: int = 200
    test_scenes: int = 300
    crops_per_class: int = 60  # embedded data: drawn training crops per class
    max_signs: int = 5  # per scene (and the padded number of ground-truth boxes)
    min_sign: int = 14  # sign sizes in scene pixels, drawn log-uniformly
    max_sign: int = 64
    empty_fraction: float = 0.1  # scenes without any sign
    occlusion: float = 0.2  # chance that a pasted sign is partly covered
    backgrounds: str = ""  # "" = sample photos shipped with scikit-image/scikit-learn, or a folder of photos
    val_fraction: float = 0.1  # real data: fractions of GTSRB tracks / GTSDB scenes
    test_fraction: float = 0.15
    drawn_crops_per_class: int = 0  # real GTSRB data: add this many drawn training crops per class
    scene_signs: str = "data"  # GTSRB data: compose scenes from its crops ("data") or from drawn signs ("drawn")
    eval_crops: str = ""  # optional GTSRB folder: also report classification accuracy on these real crops

    # Model.
    width: int = 24  # channels of the first stage; deeper stages widen it
    head_width: int = 48
    dropout: float = 0.2
    augment: bool = True
    # >0: half the classifier's training crops are shrunk to a random fraction of their side between
    # this and 1, then resized back (GTSRB's far signs are 15-30 px photos upscaled to crop_size).
    crop_rescale: float = 0.0
    # >0: the classifier's training crops also get random gamma, colour casts and uneven light
    # (model.RandomLighting; 1.0 = gamma in [1/2, 2], gains +-15%, a +-60% ramp across the crop).
    crop_lighting: float = 0.0
    # >0: the classifier trains on MixUp blends of its crops (this is the Beta distribution's alpha).
    crop_mixup: float = 0.0
    # Classifier ensemble: this many crop branches (own backbone, head and augmentation draws), trained
    # side by side with a loss each, their probabilities averaged. Costs that many times the classifier.
    crop_members: int = 1

    # Loss.
    size_weight: float = 0.5
    offset_weight: float = 1.0
    classify_weight: float = 0.5
    label_smoothing: float = 0.05
    crop_batch_size: int = 64
    # Epochs over the training crops for the classifier alone, before joint training: the classifier
    # needs many more steps than the joint schedule gives it (one crop batch per scene batch).
    classifier_epochs: int = 0

    # Decoding and serving.
    score_threshold: float = 0.3  # default of the endpoint's optional input
    max_detections: int = 20  # default of the endpoint's optional input
    candidates: int = 100  # heatmap peaks considered before NMS
    nms_iou: float = 0.5
    # >0: the crop classifier names the strongest class-agnostic peaks (this many per image) instead of
    # the heatmap's own class channels; 0: the heatmap's classes. Measured on the demo preset (one
    # trained model): mAP@0.5 0.662 with the heatmap's classes, 0.767 with 10 or 20 refined peaks.
    refine_candidates: int = 20
    top_k: int = 3  # classify_crops answers
    # classify_crops (and crop_accuracy) average the classifier over this many views of each crop: the
    # crop, then 90% crops of its centre and corners (at most 6). The detector's naming of its peaks
    # stays at one view (20 peaks x 6 views would cost several times the detector itself).
    crop_views: int = 6

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # Five visually distinct classes on 128 px scenes: trains in well under a minute on 2 cores.
        "smoke": {"classes": "2,12,13,14,17", "image_size": 128, "crop_size": 32, "train_scenes": 512,
                  "val_scenes": 48, "test_scenes": 64, "crops_per_class": 40, "max_signs": 3, "min_sign": 16,
                  "max_sign": 48, "width": 12, "head_width": 24, "epochs": 6, "batch_size": 32,
                  "learning_rate": 4e-3, "augment": False, "classifier_epochs": 15, "verbose": 0},
        # Ten common classes of all four shapes: fit + evaluate + export in about 100 s on 2 cores.
        "demo": {"classes": "1,2,4,12,13,14,17,25,35,38", "image_size": 128, "crop_size": 32, "train_scenes": 960,
                 "val_scenes": 64, "test_scenes": 128, "crops_per_class": 60, "max_signs": 4, "max_sign": 56,
                 "width": 16, "head_width": 32, "epochs": 6, "batch_size": 32, "learning_rate": 4e-3,
                 "time_budget_s": 150},
        # make bench, both of the bars from one model: the classifier trains on real GTSRB crops
        # (plus drawn ones) and is scored on held-out tracks; the detector trains on scenes of drawn signs
        # of all 43 classes and is scored on held-out drawn scenes (mAP, signs named by the classifier).
        # The classifier first trains alone for 60 epochs (measured: held-out tracks 0.77 after 30 epochs
        # at width 24, 0.87 after 60 at width 32), then 900 s of joint training. Lighting augmentation:
        # held-out validation tracks 0.966 -> 0.983 (6 views; apps/traffic_signs/README.md).
        "bench": {"data": str(SHARED_DATASETS / "gtsrb_subset"), "scene_signs": "drawn", "image_size": 128,
                  "crop_size": 48, "train_scenes": 2000, "val_scenes": 100, "test_scenes": 300,
                  "drawn_crops_per_class": 40, "crop_batch_size": 128, "classifier_epochs": 60, "width": 32,
                  "crop_lighting": 1.0,
                  "epochs": 15, "batch_size": 32, "learning_rate": 3e-3, "classify_weight": 1.0,
                  "time_budget_s": 900, "verbose": 2},
        "full": {"epochs": 40, "batch_size": 32, "train_scenes": 8000, "val_scenes": 400, "test_scenes": 500,
                 "crops_per_class": 150, "width": 32, "head_width": 64, "early_stopping_patience": 8},
    }
