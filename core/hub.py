"""TF Hub modules as Keras 3 layers, and apps' encoders published as TF Hub modules.

A module is a reusable TF2 SavedModel: `__call__(inputs, training=False)`, `variables`,
`trainable_variables`, `regularization_losses`. `tensorflow_hub.KerasLayer` is a tf-keras (Keras 2)
layer, so `HubLayer` wraps `hub.load(hub.resolve(handle))` for Keras 3 models instead: it calls the
module with `training`, exposes its trainable variables when the layer is trainable, and tracks them
so that an app's export holds them itself (no reference to the handle, stock TF ops).

Handles: a tfhub.dev or Kaggle URL (downloads where there is a network, or reads the copy in
`TFHUB_CACHE_DIR/<sha1 of the URL>` where there is none), or a local SavedModel folder; a folder of
integer versions (what `publish` writes) means its latest version. Apps take them as `hub:<handle>`,
with `#<key>` to pick one output of a module that returns several, e.g. `hub:<yamnet>#1`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from core import export as export_lib

PREFIX = "hub:"
CARD_FILE = "card.json"


def is_hub(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(PREFIX)


def parse(spec: str) -> tuple[str, str | int | None]:
    """`hub:<handle>[#<output key>]` -> (handle, output key: a dict key, a tuple index or None)."""
    if not is_hub(spec):
        raise ValueError(f"A hub module is given as hub:<handle-or-path>. Received: {spec!r}")
    handle, _, key = spec[len(PREFIX):].partition("#")
    if not handle:
        raise ValueError(f"hub: needs a handle (URL or local path). Received: {spec!r}")
    return handle, (int(key) if key.isdigit() else key or None)


def cache_folder(handle: str) -> Path:
    """Where tensorflow_hub looks for a downloaded copy of `handle` (TFHUB_CACHE_DIR/<sha1>)."""
    root = os.environ.get("TFHUB_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "tfhub_modules")
    return Path(root) / hashlib.sha1(handle.encode("utf8")).hexdigest()


def resolve(handle: str) -> str:
    """A local folder holding the module's saved_model.pb, downloading it where there is a network."""
    local = Path(handle).expanduser()
    if "://" not in handle:
        if (local / "saved_model.pb").exists():
            return str(local)
        if local.is_dir() and export_lib.versions(local):
            return str(export_lib.latest_version_dir(local))
        raise FileNotFoundError(f"No TF2 SavedModel (saved_model.pb) at {str(local)!r}, nor integer version "
                                f"folders holding one. Received: handle={handle!r}")
    import tensorflow_hub as hub

    try:
        return hub.resolve(handle)
    except Exception as err:  # noqa: BLE001 - URLError, HTTPError, tf.errors: all mean "not reachable"
        raise FileNotFoundError(
            f"Could not fetch the hub module {handle!r} ({type(err).__name__}: {err}). Without a network, "
            f"put a copy of the module (the folder holding saved_model.pb) at {cache_folder(handle)} "
            f"(TFHUB_CACHE_DIR/<sha1 of the handle>), or pass its local path instead of the URL.") from None


def load(handle: str):
    """The module behind `handle` (tensorflow_hub.load of the resolved folder)."""
    import tensorflow_hub as hub

    return hub.load(resolve(handle))


def call_specs(module) -> tuple[Any, bool]:
    """(input spec of the module's __call__, whether it takes `training`), from its traced functions."""
    functions = getattr(module.__call__, "concrete_functions", None) if callable(module) else None
    if not functions:
        signatures = sorted(getattr(module, "signatures", {}) or {})
        raise ValueError("A hub module for Keras needs a tf.function __call__ (a TF2 SavedModel in TF Hub's "
                         f"reusable format). Received a SavedModel with signatures {signatures} only.")
    args, kwargs = functions[0].structured_input_signature
    takes_training = "training" in kwargs or any(
        len(f.structured_input_signature[0]) > 1 for f in functions)
    return args[0], takes_training


def square_size(spec) -> int | None:
    """Side of the square images an image input spec [N, S, S, C] fixes (None: any size, or not images)."""
    shape = spec.shape
    return int(shape[1]) if shape.rank == 4 and shape[1] is not None and shape[1] == shape[2] else None


def input_size(spec: str) -> int | None:
    """Side of the square images the module of `hub:<handle>` takes (None: any size)."""
    return square_size(call_specs(load(parse(spec)[0]))[0])


@keras.saving.register_keras_serializable(package="catalogue")
class HubLayer(keras.layers.Layer):
    """A TF Hub module (TF2 SavedModel) as a Keras 3 layer.

    The module's variables become the layer's weights (the same variables, not copies): frozen by
    default, trained when the layer is trainable. Called for training, a trainable layer passes
    `training=True` to the module (its BatchNorm and dropout then train); a frozen one always passes
    False, like a frozen BatchNormalization. A module that takes one example at a time (a rank lower
    than the input's, e.g. YAMNet's 1-D waveform) is mapped over the batch.

    Args:
        handle: URL, TFHUB_CACHE_DIR-cached URL or local folder (see `resolve`).
        output_key: which output of a module returning a dict (key) or a tuple (index); default the
            dict's "default" or only key.
        trainable: whether fitting updates the module's trainable variables.

    Example:
        >>> features = HubLayer("saved_models/hub/image_classification/backbone")(images_in_0_1)
    """

    def __init__(self, handle: str, output_key: str | int | None = None, trainable: bool = False, **kwargs):
        kwargs.setdefault("dtype", "float32")  # modules compute in float32 whatever the policy
        super().__init__(trainable=trainable, **kwargs)
        self.handle = handle
        self.output_key = output_key
        self._module = load(handle)
        self.module_input, self._takes_training = call_specs(self._module)
        trainable_ids = {id(v) for v in getattr(self._module, "trainable_variables", [])}
        for v in self._module.variables:
            # keras.Variable around an existing tf.Variable shares it: training updates the module.
            self._track_variable(keras.Variable(v, trainable=id(v) in trainable_ids, dtype=v.dtype.name,
                                                shape=v.shape, name=v.name.split(":")[0].replace("/", "_")))
        self._regularizers = list(getattr(self._module, "regularization_losses", []) or [])
        self.built = True

    @property
    def input_size(self) -> int | None:
        """Side of the square images a fixed-size image module takes (None for any size)."""
        return square_size(self.module_input)

    def call(self, inputs, training=None):
        training = bool(training) and self.trainable
        inputs = tf.cast(inputs, self.module_input.dtype)
        if inputs.shape.rank == self.module_input.shape.rank + 1:  # one example at a time
            outputs = tf.map_fn(lambda x: self._call_module(x, training), inputs,
                                fn_output_signature=tf.float32)
        else:
            outputs = self._call_module(inputs, training)
        if training:
            for loss in self._regularizers:
                self.add_loss(loss())
        return outputs

    def _call_module(self, inputs, training):
        outputs = self._module(inputs, training=training) if self._takes_training else self._module(inputs)
        return tf.cast(self._select(outputs), tf.float32)

    def _select(self, outputs):
        if isinstance(outputs, Mapping):
            key = self.output_key if self.output_key is not None else (
                "default" if "default" in outputs else (next(iter(outputs)) if len(outputs) == 1 else None))
            if key not in outputs:
                raise ValueError(f"The module {self.handle!r} returns several outputs: pick one with "
                                 f"hub:<handle>#<key>. Received: output_key={self.output_key!r}; "
                                 f"outputs: {sorted(outputs)}")
            return outputs[key]
        if isinstance(outputs, (tuple, list)):
            if not isinstance(self.output_key, int) or not 0 <= self.output_key < len(outputs):
                raise ValueError(f"The module {self.handle!r} returns {len(outputs)} outputs: pick one with "
                                 f"hub:<handle>#<index>. Received: output_key={self.output_key!r}")
            return outputs[self.output_key]
        return outputs

    def get_config(self):
        return {**super().get_config(), "handle": self.handle, "output_key": self.output_key}


def hub_layer(spec: str, **kwargs) -> HubLayer:
    """The HubLayer of an app's `hub:<handle>[#<key>]` setting."""
    handle, key = parse(spec)
    return HubLayer(handle, output_key=key, **kwargs)


# ------------------------------------------------------------------------------------------------
# Publishing an app's encoder as a module.

@dataclasses.dataclass
class Encoder:
    """A trained part of an app that other apps can start from, published by `publish`.

    Args:
        model: Keras model from the module's (preprocessed) inputs to features.
        input_spec: what the module's `__call__` takes, e.g. float32 [None, 32, 32, 3].
        description: the inputs, outputs and intended use, for the model card.
        preprocess: module inputs -> `model` inputs, stock TF ops (e.g. [0, 1] images to 0..255).
        trackables: resources `preprocess` uses (a tokenizer's lookup tables), saved with the module.
    """

    model: keras.Model
    input_spec: tf.TensorSpec
    description: str
    preprocess: Callable[[tf.Tensor], tf.Tensor] | None = None
    trackables: tuple = ()


def _trainable_by_nature(model: keras.Model) -> list:
    """Variables created trainable (weights a fine-tuner may train), frozen or not just now: excludes
    statistics such as BatchNorm's moving means and random-generator states."""
    seen, out = set(), []
    for layer in model._flatten_layers(include_self=True):
        for v in layer._trainable_variables:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def publish(encoder: Encoder, out_dir: str | Path, card: Mapping[str, Any]) -> Path:
    """Writes `encoder` as a reusable TF2 SavedModel in `out_dir/<next version>/`, checked by reloading.

    The module has `__call__(inputs, training=False)` (traced for both values of `training`),
    `variables`, `trainable_variables`, `regularization_losses` (none), a `serving_default` signature
    (inputs -> {"features"}) to inspect it with saved_model_cli or serve it, and the model card in
    assets.extra/card.json.
    """
    model, spec = encoder.model, encoder.input_spec
    preprocess = encoder.preprocess or (lambda x: x)
    root = tf.__internal__.tracking.AutoTrackable()

    @tf.function
    def call(inputs, training=False):
        return tf.cast(model(preprocess(tf.cast(inputs, spec.dtype)), training=training), tf.float32)

    for training in (False, True):
        call.get_concrete_function(tf.TensorSpec(spec.shape, spec.dtype, name="inputs"), training=training)

    @tf.function(input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name="inputs")])
    def features(inputs):
        return {"features": call(inputs, training=False)}

    root.__call__ = call
    root.variables = list(model.variables)
    root.trainable_variables = _trainable_by_nature(model)
    root.regularization_losses = []
    root.resources = list(encoder.trackables)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    version = (export_lib.versions(out_dir) or [0])[-1] + 1
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=out_dir))
    try:
        target = tmp / "module"
        tf.saved_model.save(root, str(target), signatures={"serving_default": features})
        probe = tf.zeros([2 if d is None else d for d in spec.shape], spec.dtype)
        output = features(probe)["features"]
        full_card = {**card, "input": {"dtype": spec.dtype.name, "shape": spec.shape.as_list()},
                     "output": {"dtype": "float32", "shape": [None, *output.shape[1:].as_list()]},
                     "description": encoder.description,
                     "call": "module(inputs, training=False) -> features; signature serving_default: "
                             "inputs -> {'features'}"}
        (target / export_lib.CARD_DIR).mkdir(exist_ok=True)
        (target / export_lib.CARD_DIR / CARD_FILE).write_text(
            json.dumps(full_card, indent=2, sort_keys=True, default=str) + "\n")
        reloaded = tf.saved_model.load(str(target))
        export_lib.assert_outputs_match({"features": output.numpy()},
                                        {"features": reloaded(probe, training=False).numpy()},
                                        context=f"hub module {out_dir.name}")
        final = export_lib.rename_into_version(target, out_dir, version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_card(path: str | Path) -> dict:
    """The model card of a published module (a version folder or its parent)."""
    return json.loads((Path(resolve(str(path))) / export_lib.CARD_DIR / CARD_FILE).read_text())
