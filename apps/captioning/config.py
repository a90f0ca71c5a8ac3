"""Image captioning settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig, at_least, between, positive


@dataclasses.dataclass
class Config(BaseConfig):
    # Square side the encoder sees (any input size is resized, squashed, to it); 0: the backbone's own
    # (224 for most keras.applications networks, a hub module's fixed size), 48 for the compact CNN.
    image_size: int = at_least(0, 0)
    width: int = positive(16)  # channels of the first encoder stage; later stages double it
    stages: int = positive(3)  # residual stages; the feature map is image_size / 2**stages on a side
    encoder_layers: int = at_least(0, 1)  # Transformer encoder blocks over the image feature tokens
    dim: int = positive(96)  # width of the image tokens and of the decoder
    num_heads: int = positive(4)  # attention heads in every Transformer block
    ff_dim: int = positive(192)  # hidden width of the Transformer blocks' feed-forward layers
    decoder_layers: int = positive(2)  # Transformer decoder blocks (causal self-attention + cross-attention)
    dropout: float = between(0, 1, 0.1, high_open=True)  # in the Transformer blocks and after the word embedding
    max_length: int = positive(24)  # most decoder positions; the training captions may need fewer
    vocabulary_size: int = positive(8000)  # most frequent training words kept (rarer ones become [UNK])
    beam_width: int = positive(3)  # serving_beam's number of hypotheses
    num_scenes: int = positive(8000)  # embedded data: generated scenes (train + val + test)
    val_fraction: float = between(0, 1, 0.1)  # share of the images held out for validation
    test_fraction: float = between(0, 1, 0.1)  # share of the images held out for testing
    # "" for the compact CNN; a keras.applications network (core.backbones: mobilenet_v2, resnet50, ...); or
    # hub:<URL-or-path> of an image module (a feature map gives a token per cell, a vector one token).
    backbone: str = ""
    weights: str = ""  # keras.applications weights: "" (random), "imagenet" or a local .h5/.weights.h5 file
    report_images: int = at_least(0, 8)  # test images drawn with their captions in workdir/captions.png

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"epochs": 6, "batch_size": 64, "num_scenes": 1500, "learning_rate": 2e-3, "encoder_layers": 0,
                  "dim": 64, "num_heads": 2, "ff_dim": 128, "decoder_layers": 1, "verbose": 0},
        "demo": {"epochs": 12, "batch_size": 64, "num_scenes": 6000, "learning_rate": 2e-3,
                 "time_budget_s": 60},
        # Real photos (COCO, Flickr8k) need more pixels and a larger model than the generated scenes.
        "full": {"epochs": 60, "batch_size": 64, "num_scenes": 30000, "image_size": 128, "width": 32,
                 "stages": 4, "dim": 256, "ff_dim": 1024, "num_heads": 8, "decoder_layers": 3,
                 "encoder_layers": 2, "learning_rate": 1e-3, "early_stopping_patience": 8},
    }
