"""Image backbones resolved in one place for every app: keras.applications networks by name, TF Hub
modules as `hub:<handle>`.

A keras.applications network comes without its top, with its own preprocessing inside the model (it
is fed 0..255 pixels like every app model), at its default input size unless the app sets one, with
`weights` "" (random), "imagenet" (downloaded into ~/.keras/models, or read from there offline) or a
local .h5 / .weights.h5 file. A hub image module is fed [0, 1] pixels at its own size.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import keras

from core import hub


@dataclasses.dataclass(frozen=True)
class Network:
    name: str  # what apps take: backbone=<name> (the class name works too, in any case)
    class_name: str  # keras.applications.<class_name>
    module: str  # keras.applications.<module>.preprocess_input
    default_size: int  # the side its ImageNet weights were trained at


_TABLE = [
    *[(f"convnext_{s.lower()}", f"ConvNeXt{s}", "convnext", 224) for s in ("Tiny", "Small", "Base", "Large", "XLarge")],
    *[(f"densenet{n}", f"DenseNet{n}", "densenet", 224) for n in (121, 169, 201)],
    *[(f"efficientnet_b{i}", f"EfficientNetB{i}", "efficientnet", size)
      for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))],
    *[(f"efficientnet_v2_{v.lower()}", f"EfficientNetV2{v}", "efficientnet_v2", size)
      for v, size in (("B0", 224), ("B1", 240), ("B2", 260), ("B3", 300), ("S", 384), ("M", 480), ("L", 480))],
    ("inception_resnet_v2", "InceptionResNetV2", "inception_resnet_v2", 299),
    ("inception_v3", "InceptionV3", "inception_v3", 299),
    ("mobilenet", "MobileNet", "mobilenet", 224),
    ("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224),
    ("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", 224),
    ("mobilenet_v3_large", "MobileNetV3Large", "mobilenet_v3", 224),
    ("nasnet_mobile", "NASNetMobile", "nasnet", 224),
    ("nasnet_large", "NASNetLarge", "nasnet", 331),
    *[(f"resnet{n}", f"ResNet{n}", "resnet", 224) for n in (50, 101, 152)],
    *[(f"resnet{n}_v2", f"ResNet{n}V2", "resnet_v2", 224) for n in (50, 101, 152)],
    ("vgg16", "VGG16", "vgg16", 224),
    ("vgg19", "VGG19", "vgg19", 224),
    ("xception", "Xception", "xception", 299),
]
NETWORKS = {name: Network(name, cls, module, size) for name, cls, module, size in _TABLE}
_BY_KEY = {**{n.class_name.lower(): n for n in NETWORKS.values()}, **NETWORKS}


def network(name: str) -> Network:
    """The keras.applications network called `name` (snake case or its class name, any case)."""
    found = _BY_KEY.get(name.lower().replace("-", "_"))
    if found is None:
        raise ValueError(f"Unknown backbone. Received: backbone={name!r}; valid: hub:<handle-or-path> or one "
                         f"of {', '.join(NETWORKS)}")
    return found


def default_size(backbone: str) -> int | None:
    """The input side a backbone expects: a hub module's fixed size (224 when it takes any), a
    network's ImageNet size; None for "" (the app's own compact CNN)."""
    if not backbone:
        return None
    if hub.is_hub(backbone):
        return hub.input_size(backbone) or 224
    return network(backbone).default_size


def image_size(backbone: str, image_size: int, compact_size: int) -> int:
    """The side an app's images are resized to: `image_size` when set (> 0), else the backbone's default
    (`compact_size` for the app's own CNN)."""
    if image_size < 0:
        raise ValueError(f"image_size must be positive, or 0 for the backbone's default. "
                         f"Received: image_size={image_size}")
    return image_size or default_size(backbone) or compact_size


def keras_backbone(name: str, image_size: int, weights: str = "", pooling: str | None = None) -> keras.Model:
    """A frozen keras.applications network without its top, named "backbone".

    Args:
        name: a network of NETWORKS (or its class name).
        image_size: side of the square RGB input.
        weights: "" (random), "imagenet" (~/.keras/models, downloading it where there is a network), or a
            local weights file (.h5 as keras.applications downloads them, or .weights.h5).
        pooling: None for the feature map, "avg" for a feature vector.
    """
    net_info = network(name)
    weights = weights or None
    local_file = weights not in (None, "imagenet")
    if local_file and not Path(weights).expanduser().exists():
        raise FileNotFoundError(f"Backbone weights file not found. Received: weights={weights!r}")
    if weights and image_size < net_info.default_size // 2:
        warnings.warn(f"{net_info.name}'s pretrained features were learnt on {net_info.default_size} px images; "
                      f"at image_size={image_size} most of them see too little. Consider image_size="
                      f"{net_info.default_size} (or 0 for the default).", stacklevel=2)
    constructor = getattr(keras.applications, net_info.class_name)
    with _explained_downloads(net_info.name):
        net = constructor(include_top=False, weights=None if local_file else weights,
                          input_shape=(image_size, image_size, 3), pooling=pooling)
    if local_file:
        net.load_weights(str(Path(weights).expanduser()))
    net.trainable = False  # pretrained features are kept; apps that fine-tune unfreeze in a later phase
    net.name = "backbone"
    return net


class _explained_downloads:
    """Turns keras' failed weight download into an error saying which file to put where."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        from keras.src.utils import file_utils

        self._module, self._real = file_utils, file_utils.get_file
        name, real = self.name, self._real

        def get_file(fname=None, origin=None, *args, cache_subdir="datasets", **kwargs):
            try:
                return real(fname, origin, *args, cache_subdir=cache_subdir, **kwargs)
            except Exception as err:  # noqa: BLE001 - URL errors of every kind mean "no download"
                home = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser()
                raise FileNotFoundError(
                    f"The ImageNet weights of {name} could not be downloaded ({type(err).__name__}). "
                    f"Offline, copy {origin} to {home / cache_subdir / (fname or Path(origin).name)}, "
                    f"or pass weights=/path/to/that/file.") from None

        file_utils.get_file = get_file
        return self

    def __exit__(self, *exc):
        self._module.get_file = self._real
        return False


def backbone_features(name: str, images, image_size: int, weights: str = "", pooling: str | None = None):
    """A frozen backbone's features of float RGB images in [0, 255], named "backbone" in the model.

    keras.applications networks get their own preprocessing; hub modules get [0, 1] pixels, resized to
    the module's size where it takes one size only. `pooling="avg"` makes a feature vector of a map.
    """
    if hub.is_hub(name):
        if weights:
            raise ValueError(f"A hub module brings its own weights. Received: backbone={name!r}, "
                             f"weights={weights!r}")
        layer = hub.hub_layer(name, name="backbone")
        x = keras.layers.Rescaling(1.0 / 255)(images)
        if layer.input_size and layer.input_size != image_size:
            x = keras.layers.Resizing(layer.input_size, layer.input_size, antialias=True)(x)
        x = layer(x)
        if pooling == "avg" and len(x.shape) == 4:
            x = keras.layers.GlobalAveragePooling2D()(x)
        return x
    net = keras_backbone(name, image_size, weights, pooling)
    preprocess = getattr(keras.applications, network(name).module).preprocess_input
    return net(preprocess(images), training=False)


def unfreeze(backbone, top_layers: int = 0, blocks: str = "") -> int:
    """Makes part of a frozen backbone trainable for fine-tuning; returns its trainable weight count.

    keras.applications networks: the layers whose names start with one of the comma-separated `blocks`
    (e.g. "block5" for VGG16, "conv5_" for ResNet50), else the top `top_layers` layers; BatchNorm
    layers stay frozen, so they keep running on their ImageNet statistics (the batch statistics of a
    small fine-tuning set are noise). A hub module is trained whole: its layers are not addressable.
    """
    backbone.trainable = True
    if isinstance(backbone, hub.HubLayer):
        return len(backbone.trainable_weights)
    prefixes = tuple(b.strip() for b in blocks.split(",") if b.strip())
    layers = backbone.layers
    chosen = ([layer for layer in layers if layer.name.startswith(prefixes)] if prefixes
              else layers[max(len(layers) - top_layers, 0):])
    if prefixes and not chosen:
        raise ValueError(f"No backbone layer name starts with any of {list(prefixes)}. Received: "
                         f"fine_tune_blocks={blocks!r}; block names: {_block_names(layers)}")
    chosen_ids = {id(layer) for layer in chosen}
    for layer in layers:
        layer.trainable = id(layer) in chosen_ids and not isinstance(layer, keras.layers.BatchNormalization)
    return len(backbone.trainable_weights)


def _block_names(layers) -> list[str]:
    """The distinct name stems before the first "_" (VGG's block1..5, ResNet's conv1..5, ...)."""
    return list(dict.fromkeys(layer.name.split("_")[0] for layer in layers))
