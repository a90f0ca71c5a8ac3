"""Test helpers every app's tests reuse."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import tensorflow as tf

from core import export as export_lib
from core.data import data_root

HALF = (tf.float16.as_datatype_enum, tf.bfloat16.as_datatype_enum)


def shared_dataset(name: str) -> Path:
    """Path of a real data subset under CATALOGUE_DATA (../shared/datasets), or skip saying why."""
    path = data_root() / name
    if not path.exists():
        pytest.skip(f"real data subset {path} is absent (set CATALOGUE_DATA to the folder holding {name})")
    return path


def smoke_fit(pipeline_class, tmp_path_factory, **overrides):
    """(pipeline, fit result) of an app's smoke preset trained in a fresh folder: a test module's fixture."""
    config = pipeline_class.config_class.preset("smoke", **overrides)
    pipeline = pipeline_class(config, workdir=tmp_path_factory.mktemp(pipeline_class.name))
    return pipeline, pipeline.fit()


def assert_export_roundtrip(pipeline, out_dir: str | Path) -> Path:
    """Exports, and checks every endpoint of the reloaded SavedModel and predict_exported() against the
    live model (on the copy export() reloaded to verify it: a second load of the same files costs seconds).

    Returns the version folder. Fails if any signature's outputs differ from the live model's or
    if predict_exported() and predict() disagree on the same raw inputs.
    """
    path = pipeline.export(out_dir)
    assert path.name.isdigit() and (path / "saved_model.pb").exists()
    loaded = pipeline.load_exported(path)
    requests = pipeline.example_requests()
    assert "serving_default" in loaded.signatures
    for name, inputs in requests.items():
        live = {k: v.numpy() for k, v in pipeline.endpoints[name](**inputs).items()}
        exported = export_lib.call_signature(loaded, name, inputs)
        export_lib.assert_outputs_match(live, exported, context=f"{pipeline.name}/{name}")
        for key, value in exported.items():
            assert value.dtype != np.float16 and value.dtype.name != "bfloat16", (name, key, value.dtype)
    raw = pipeline.sample_inputs(3)
    assert pipeline.predict_exported(path, raw) == pipeline.predict(raw)
    assert_empty_request_answers_empty(loaded)
    return path


class Exported(NamedTuple):
    pipeline: object
    path: Path
    loaded: object


def export_checked(pipeline, out_dir: str | Path) -> Exported:
    """An app test module's exported fixture: assert_export_roundtrip, with the copy export() reloaded."""
    path = assert_export_roundtrip(pipeline, out_dir)
    return Exported(pipeline, path, pipeline.load_exported(path))


class AppContract:
    """The contract every registered app keeps. Each app's test module runs it on its own trained smoke
    model, exported once by the `exported` fixture (an `Exported`, from tests/apps/conftest.py), with
    `class TestContract(AppContract)`; tests/test_contract.py checks that none is missing.

    The export reloads and answers like the live model on every signature, predict() and the export
    agree on raw inputs, every signature answers an empty request (assert_export_roundtrip, in the
    fixture); corrupt and empty encoded inputs and invalid UTF-8 text are refused naming the input;
    from_workdir answers the same; the signature defs read as TF Serving's metadata protos with float32
    (not half) outputs; the warmup records TF Serving replays at load answer.
    """

    def test_export_is_a_servable_version(self, exported):
        assert set(exported.pipeline.example_requests()) <= set(exported.loaded.signatures)
        assert exported.path.name.isdigit() and (exported.path.parent.parent / "models.config").exists()

    def test_encoded_inputs_refuse_corrupt_and_empty_bytes_naming_the_input(self, exported):
        pipeline, _, loaded = exported
        specs = loaded.signatures["serving_default"].structured_input_signature[1]
        encoded = [name for name in specs if name.endswith("_bytes")]
        if not encoded:
            pytest.skip(f"{pipeline.name} takes text, not encoded media")
        request = pipeline.example_requests()["serving_default"]
        for name in encoded:
            # Binary garbage too: the message must stay printable whatever the bytes.
            for bad in (b"this is not a media file", b"", b"\xff\xfe\x00\x81 binary garbage"):
                inputs = dict(request)
                inputs[name] = tf.constant([bad] * int(tf.shape(request[name])[0]))
                with pytest.raises(tf.errors.InvalidArgumentError, match=name):
                    export_lib.call_signature(loaded, "serving_default", inputs)

    def test_text_inputs_refuse_invalid_utf8_naming_the_input(self, exported):
        # Tokenizers would turn the bad bytes into made-up words: every text input is checked in the graph.
        pipeline, _, loaded = exported
        checked = []
        for signature, request in pipeline.example_requests().items():
            for name, spec in loaded.signatures[signature].structured_input_signature[1].items():
                if spec.dtype != tf.string or name.endswith("_bytes"):
                    continue
                inputs = dict(request)
                inputs[name] = tf.constant([b"caf\xe9 \xff"] * int(tf.shape(request[name])[0]))  # Latin-1
                with pytest.raises(tf.errors.InvalidArgumentError, match=f"Invalid {name}: expected UTF-8 text"):
                    export_lib.call_signature(loaded, signature, inputs)
                checked.append(f"{signature}/{name}")
        if not checked:
            pytest.skip(f"{pipeline.name} has no text inputs")

    def test_from_workdir_gives_the_same_answers(self, exported):
        pipeline = exported.pipeline
        pipeline.save()
        raw = pipeline.sample_inputs(2)
        assert type(pipeline).from_workdir(pipeline.workdir).predict(raw) == pipeline.predict(raw)

    def test_signature_defs_read_as_serving_metadata_with_float32_outputs(self, exported):
        from tensorflow.core.protobuf import saved_model_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        proto = saved_model_pb2.SavedModel.FromString((exported.path / "saved_model.pb").read_bytes())
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in proto.meta_graphs[0].signature_def.items():
            signature_map.signature_def[key].CopyFrom(signature)
        parsed = get_model_metadata_pb2.SignatureDefMap.FromString(signature_map.SerializeToString())
        assert "serving_default" in parsed.signature_def
        for key, signature in parsed.signature_def.items():
            if key.startswith("__"):
                continue
            assert signature.inputs and signature.outputs, key
            assert all(t.dtype not in HALF for t in signature.outputs.values()), key

    def test_warmup_records_cover_every_signature_and_answer(self, exported):
        pipeline, path, loaded = exported
        records = export_lib.read_warmup_requests(path)
        assert sorted(s for s, _ in records) == sorted(pipeline.example_requests())
        for signature, inputs in records:
            outputs = export_lib.call_signature(loaded, signature, inputs)
            rows = {int(np.shape(v)[0]) for v in inputs.values() if np.ndim(v)}
            assert all(np.shape(v)[0] in rows for v in outputs.values() if np.ndim(v)), signature


def assert_empty_request_answers_empty(loaded) -> None:
    """Every signature called with zero rows in every input returns zero rows in every output."""
    for signature, fn in loaded.signatures.items():
        empty = {name: tf.zeros([0, *[d or 1 for d in spec.shape[1:]]], spec.dtype)  # "" for strings
                 for name, spec in fn.structured_input_signature[1].items()}
        outputs = fn(**empty)
        assert all(int(v.shape[0]) == 0 for v in outputs.values()), (
            signature, {k: v.shape for k, v in outputs.items()})


def signature_names(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """{signature: {"inputs": [...], "outputs": [...]}} of a SavedModel, for asserting the contract."""
    loaded = tf.saved_model.load(str(path))
    result = {}
    for name, fn in loaded.signatures.items():
        result[name] = {"inputs": sorted(fn.structured_input_signature[1]),
                        "outputs": sorted(fn.structured_outputs)}
    return result


def make_hub_module(path: str | Path, input_shape=(None, 16, 16, 3), features: int = 8, seed: int = 0,
                    one_at_a_time: bool = False) -> Path:
    """A tiny TF2 SavedModel in TF Hub's reusable format, for tests without a network.

    Images [N, H, W, C] or waveforms [N, T] -> features [N, features]: a linear map of pixels (or of
    20 ms frames), ReLU, a mean over positions, minus a moving mean that training updates (so that a
    test can tell `training=True` from False). `__call__(inputs, training=False)`, `variables`,
    `trainable_variables`, `regularization_losses`. With `one_at_a_time`, like YAMNet: one waveform
    [T] in, no `training` argument, a tuple (scores [frames, 3], embeddings [frames, features]) out.
    """
    frame = 320
    images = len(input_shape) == 4
    root = tf.__internal__.tracking.AutoTrackable()
    root.kernel = tf.Variable(tf.random.stateless_normal([input_shape[-1] if images else frame, features],
                                                         [seed, 1]) * 0.5, name="kernel")
    root.bias = tf.Variable(tf.fill([features], 0.1), name="bias")
    root.moving_mean = tf.Variable(tf.zeros([features]), trainable=False, name="moving_mean")

    def positions(x):  # [..., positions, features]
        x = tf.cast(x, tf.float32)
        if images:
            x = tf.reshape(x, [tf.shape(x)[0], -1, input_shape[-1]])
        else:
            x = tf.signal.frame(x, frame, frame // 2)
        return tf.nn.relu(tf.matmul(x, root.kernel) + root.bias)

    if one_at_a_time:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="waveform")])
        def call(waveform):
            h = positions(waveform) - root.moving_mean
            return h[:, :3], h

        root.__call__ = call
    else:
        @tf.function
        def call(inputs, training=False):
            f = tf.reduce_mean(positions(inputs), axis=-2)
            if training:
                root.moving_mean.assign(0.9 * root.moving_mean + 0.1 * tf.reduce_mean(f, axis=0))
            return f - root.moving_mean

        for training in (False, True):
            call.get_concrete_function(tf.TensorSpec(input_shape, tf.float32, name="inputs"), training=training)
        root.__call__ = call
    root.variables = [root.kernel, root.bias, root.moving_mean]
    root.trainable_variables = [root.kernel, root.bias]
    root.regularization_losses = []
    tf.saved_model.save(root, str(path))
    return Path(path)
