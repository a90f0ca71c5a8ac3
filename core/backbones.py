"""keras.applications networks as frozen feature extractors, resolved in one place for every app."""

from __future__ import annotations

import keras

# name -> (keras.applications class, module holding its preprocess_input)
BACKBONES = {
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2"),
    "mobilenet_v3_small": ("MobileNetV3Small", "mobilenet_v3"),
    "efficientnet_b0": ("EfficientNetB0", "efficientnet"),
    "resnet50": ("ResNet50", "resnet50"),
    "vgg16": ("VGG16", "vgg16"),
}


def keras_backbone(name: str, image_size: int, weights: str = "", pooling: str | None = None) -> keras.Model:
    """A frozen keras.applications network without its top, named "backbone".

    Args:
        name: a key of BACKBONES.
        image_size: side of the square RGB input.
        weights: "" (random), "imagenet" (downloads: needs a network), or a local weights file.
        pooling: None for the feature map, "avg" for a feature vector.
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone. Received: backbone={name!r}; valid: {sorted(BACKBONES)}")
    class_name, _ = BACKBONES[name]
    weights = weights or None
    local_file = weights not in (None, "imagenet")
    net = getattr(keras.applications, class_name)(
        include_top=False, weights=None if local_file else weights,
        input_shape=(image_size, image_size, 3), pooling=pooling)
    if local_file:
        net.load_weights(weights)
    net.trainable = False  # pretrained features are kept; apps that fine-tune unfreeze in a later phase
    net.name = "backbone"
    return net


def backbone_features(name: str, images, image_size: int, weights: str = "", pooling: str | None = None):
    """The backbone's features of float RGB images in [0, 255], with the network's own preprocessing."""
    net = keras_backbone(name, image_size, weights, pooling)
    preprocess = getattr(keras.applications, BACKBONES[name][1]).preprocess_input
    return net(preprocess(images), training=False)
