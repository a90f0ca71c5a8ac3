"""core.backbones: every keras.applications network by name, default sizes, offline ImageNet weights,
fine-tuning by named blocks with BatchNorm frozen."""

import urllib.error

import keras
import pytest

from core import backbones


def test_every_keras_application_is_named_with_its_preprocessing():
    classes = {name for name in dir(keras.applications) if name[0].isupper()}
    assert {n.class_name for n in backbones.NETWORKS.values()} == classes
    for net in backbones.NETWORKS.values():
        assert callable(getattr(keras.applications, net.module).preprocess_input), net
    assert backbones.network("VGG16") is backbones.network("vgg16")
    assert backbones.network("EfficientNetV2B0").name == "efficientnet_v2_b0"
    assert backbones.image_size("inception_v3", 0, 32) == 299
    assert backbones.image_size("", 0, 32) == 32 and backbones.image_size("vgg16", 64, 32) == 64
    with pytest.raises(ValueError, match="Received: backbone='vgg17'"):
        backbones.network("vgg17")


def test_imagenet_weights_offline_say_which_file_goes_where(tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/models/mobilenet_v2_weights\S*no_top\.h5"):
        backbones.keras_backbone("mobilenet_v2", 96, "imagenet")
    with pytest.raises(FileNotFoundError, match="weights='missing.h5'"):
        backbones.keras_backbone("mobilenet_v2", 96, "missing.h5")


def test_vgg16_fine_tunes_named_blocks_with_batchnorm_frozen():
    vgg = backbones.keras_backbone("VGG16", 32)
    assert vgg.name == "backbone" and not vgg.trainable_weights
    assert backbones.unfreeze(vgg, blocks="block5") == 6  # three convolutions: kernels and biases
    assert {layer.name for layer in vgg.layers if layer.trainable_weights} == {
        "block5_conv1", "block5_conv2", "block5_conv3"}
    with pytest.raises(ValueError, match=r"fine_tune_blocks='conv9'.*block1"):
        backbones.unfreeze(vgg, blocks="conv9")
    mobile = backbones.keras_backbone("mobilenet_v3_small", 32)
    backbones.unfreeze(mobile, top_layers=20)
    trainable = [layer for layer in mobile.layers if layer.trainable_weights]
    assert trainable and all(layer in mobile.layers[-20:] for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
