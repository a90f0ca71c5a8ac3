"""Image classification's bench: 600 real flower photos in five classes, against the majority class;
and the transfer recipe: a CIFAR-10 classifier's backbone, published as a TF Hub module, reused for
the flowers (against the same network from scratch, same steps) and as a captioning encoder."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from core.bench import BenchSpec
from core.data import data_root, decode_resize_images, read_bytes

FLOWERS_SOURCE = (
    "TFDS tf_flowers, or its archive https://storage.googleapis.com/download.tensorflow.org/example_images/"
    "flower_photos.tgz: one folder per class (daisy, dandelion, roses, sunflowers, tulips) under "
    "flowers_128/train/, e.g. flowers_128/train/roses/*.jpg (the bench's copy: the first 120 photos of each "
    "class, centre-cropped to 128x128; any count and size work)")


def bare_classifier(pipeline, raw_inputs):
    """The Keras model on decoded, resized images: what serving_default adds decoding and top-k to."""
    model = pipeline.require_model()
    size = (pipeline.config.image_size,) * 2
    images = decode_resize_images(tf.constant([read_bytes(x) for x in raw_inputs]), size)
    return (lambda x: model(x, training=False)), images


CIFAR_SOURCE = ("CIFAR-10 (TFDS cifar10, https://www.cs.toronto.edu/~kriz/cifar.html): one folder per class under "
                "cifar10_subset/train/, e.g. cifar10_subset/train/cat/*.jpg (the bench's copy: 250 images a class)")
# The recipe's network, the same in every arm: the compact CNN at 32 px (CIFAR's size).
TRANSFER_NETWORK = {"image_size": 32, "width": 32, "depth": 3, "augment": True, "flip": True, "verbose": 2}
SOURCE_TRAINING = {"epochs": 30, "batch_size": 64, "learning_rate": 3e-3, "early_stopping_patience": 8,
                   "time_budget_s": 600}
# Both flower arms take the same steps: scratch all of them; transfer a third with the module frozen (the
# head learns), the rest with it trainable at a tenth of the rate. Patience beyond the run: no early end.
TARGET_STEPS = {"batch_size": 32, "steps_per_epoch": 12, "learning_rate": 3e-3, "early_stopping_patience": 100}
TARGET_EPOCHS = 24


def transfer_recipe(out_dir: Path) -> dict[str, float]:
    """cifar10_subset -> published backbone -> flowers_128 from it and from scratch, scored on the flowers'
    held-out test split; then a captioning encoder on the same module (trained on generated scenes).

    Equivalent commands:
        catalogue train image_classification --data $CATALOGUE_DATA/cifar10_subset --workdir runs/cifar \
            --set image_size=32 width=32 depth=3 flip=true epochs=30 learning_rate=3e-3
        catalogue export image_classification --workdir runs/cifar --hub      # -> saved_models/hub/...
        catalogue train image_classification --data $CATALOGUE_DATA/flowers_128 --set image_size=32 \
            flip=true batch_size=32 steps_per_epoch=12 early_stopping_patience=100 epochs=8 \
            fine_tune_epochs=16 backbone=hub:saved_models/hub/image_classification/backbone
        (from scratch: the same with width=32 depth=3 epochs=24 and no backbone)
        catalogue train captioning --set backbone=hub:saved_models/hub/image_classification/backbone
    """
    from apps.image_classification import Config, Pipeline

    out_dir = Path(out_dir)
    cifar, flowers = data_root() / "cifar10_subset", data_root() / "flowers_128"
    for path, source in ((cifar, CIFAR_SOURCE), (flowers, FLOWERS_SOURCE)):
        if not path.exists():
            raise FileNotFoundError(f"The transfer recipe reads {path}, which is absent. Get it from {source}.")
    source = Pipeline(Config(data=str(cifar), **TRANSFER_NETWORK, **SOURCE_TRAINING), out_dir / "cifar10")
    source.fit()
    source_metrics = source.evaluate()
    module = source.export_hub(out_dir / "models")["backbone"]
    target = Config(data=str(flowers), **TRANSFER_NETWORK, **TARGET_STEPS, epochs=TARGET_EPOCHS)
    scratch = Pipeline(target, out_dir / "flowers_scratch")
    scratch.fit()
    frozen_epochs = TARGET_EPOCHS // 3
    transfer = Pipeline(target.replace(backbone=f"hub:{module}", epochs=frozen_epochs,
                                       fine_tune_epochs=TARGET_EPOCHS - frozen_epochs), out_dir / "flowers_transfer")
    transfer.fit()
    scratch_metrics, transfer_metrics = scratch.evaluate(), transfer.evaluate()
    return {"accuracy": transfer_metrics["accuracy"], "scratch_accuracy": scratch_metrics["accuracy"],
            "chance": transfer_metrics["chance"], "source_accuracy": source_metrics["accuracy"],
            **captioning_from_module(module, out_dir / "captioning")}


def captioning_from_module(module: Path, out_dir: Path) -> dict[str, float]:
    """The captioning demo (generated scenes) with the published module as its frozen image encoder."""
    from apps.captioning import Config as CaptioningConfig
    from apps.captioning import Pipeline as Captioning

    captioning = Captioning(CaptioningConfig.preset("demo", backbone=f"hub:{module}", verbose=2), out_dir)
    captioning.fit()
    metrics = captioning.evaluate()
    return {"captioning_bleu4": metrics["bleu4"], "captioning_baseline_bleu4": metrics["baseline_bleu4"]}


BENCH = BenchSpec(
    overrides={"epochs": 30, "batch_size": 32, "width": 32, "depth": 3, "image_size": 64, "flip": True,
               "time_budget_s": 420, "early_stopping_patience": 8, "verbose": 2},
    dataset="flowers_128",
    source=FLOWERS_SOURCE,
    bars=(("accuracy", ">", "chance"), ("transfer_accuracy", ">", "transfer_scratch_accuracy")),
    recipes={"transfer": transfer_recipe},
    bare_model=bare_classifier,
)
