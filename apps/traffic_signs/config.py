"""Traffic-sign detection settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig, at_least, between, positive


@dataclasses.dataclass
class Config(BaseConfig):
    # Data.
    classes: str = ""  # comma-separated GTSRB ClassIds to use; "" = all 43 (or all present in the data)
    image_size: int = positive(192)  # square scene side the detector trains on (a multiple of 16)
    serve_size: int = at_least(0, 0)  # side the exported endpoint resizes photos to; 0 = image_size
    crop_size: int = positive(48)  # side of the sign crops the classification head sees (a multiple of 16)
    train_scenes: int = positive(3000)  # scenes drawn for training
    val_scenes: int = positive(200)  # scenes drawn for validation
    test_scenes: int = positive(300)  # scenes drawn for the test metrics
    crops_per_class: int = positive(60)  # embedded data: drawn training crops per class
    max_signs: int = positive(5)  # most signs per scene (and the padded number of ground-truth boxes)
    min_sign: int = positive(14)  # smallest sign side in scene pixels (sizes are drawn log-uniformly)
    max_sign: int = positive(64)  # largest sign side in scene pixels
    empty_fraction: float = between(0, 1, 0.1)  # fraction of scenes without any sign
    occlusion: float = between(0, 1, 0.2)  # chance that a pasted sign is partly covered
    backgrounds: str = ""  # "" = sample photos shipped with scikit-image/scikit-learn, or a folder of photos
    val_fraction: float = between(0, 1, 0.1)  # real data: fraction of GTSRB tracks / GTSDB scenes for validation
    test_fraction: float = between(0, 1, 0.15)  # real data: fraction of GTSRB tracks / GTSDB scenes for the test
    drawn_crops_per_class: int = at_least(0, 0)  # real GTSRB data: add this many drawn training crops per class
    scene_signs: str = "data"  # GTSRB data: compose scenes from its crops ("data") or from drawn signs ("drawn")
    eval_crops: str = ""  # optional GTSRB folder: also report classification accuracy on these real crops

    # Model.
    width: int = positive(24)  # channels of the first stage; deeper stages widen it
    head_width: int = positive(48)  # channels of the top-down path and the heads
    dropout: float = between(0, 1, 0.2, high_open=True)  # dropout rate before the classifier's softmax
    augment: bool = True  # shifts, small rotations and zoom of the classifier's training crops
    # >0: also random gamma, colour casts and uneven light on the training crops (model.RandomLighting)
    crop_lighting: float = at_least(0, 0.0)

    # Loss.
    size_weight: float = at_least(0, 0.5)  # weight of the log box size in the regression loss
    offset_weight: float = at_least(0, 1.0)  # weight of the sub-cell centre offset in the regression loss
    classify_weight: float = at_least(0, 0.5)  # weight of the classifier's loss in joint training
    label_smoothing: float = between(0, 1, 0.05)  # label smoothing of the classifier's cross-entropy
    crop_batch_size: int = positive(64)  # classifier crops per step (beside each batch of scenes in joint training)
    # >0: epochs of the classifier alone on the crops, then frozen for joint training ("classifier" phase)
    classifier_epochs: int = at_least(0, 0)

    # Decoding and serving.
    score_threshold: float = between(0, 1, 0.3)  # default of the endpoints' optional score_threshold input
    max_detections: int = positive(20)  # default of the endpoints' optional max_detections input
    candidates: int = positive(100)  # heatmap peaks considered before NMS
    nms_iou: float = between(0, 1, 0.5)  # IoU above which NMS drops the weaker of two boxes of one class
    # >0: the crop classifier names this many strongest class-agnostic peaks; 0: the heatmap's classes
    refine_candidates: int = at_least(0, 20)
    top_k: int = positive(3)  # classes in each classify_crops answer
    # classify_crops and crop_accuracy average the classifier over this many views of each crop (max 6)
    crop_views: int = between(1, 6, 6)

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
        # All 43 classes at 192 px, 8,000 scenes.
        "full": {"epochs": 40, "batch_size": 32, "train_scenes": 8000, "val_scenes": 400, "test_scenes": 500,
                 "crops_per_class": 150, "width": 32, "head_width": 64, "early_stopping_patience": 8},
    }
