"""The contract every registered app keeps, checked on its smoke preset (untrained weights suffice:
the contract is about the export and the endpoints, not about quality).

Per app: the export reloads and answers like the live model on every signature; predict() and the
export agree on raw inputs; every signature answers an empty request; corrupt and empty encoded
inputs are refused naming the input; from_workdir answers the same; the config survives JSON; the
signature defs read as TF Serving's metadata protos with float32 (not half) outputs; the warmup
records TF Serving replays at load answer.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from core import export as export_lib
from core import registry
from core.testing import assert_export_roundtrip

APPS = sorted(registry.apps())
HALF = (tf.float16.as_datatype_enum, tf.bfloat16.as_datatype_enum)


@pytest.fixture(scope="module", params=APPS)
def exported(request, tmp_path_factory):
    cls = registry.apps()[request.param]
    root = tmp_path_factory.mktemp(request.param)
    pipeline = cls(cls.config_class.preset("smoke"), workdir=root / "run")
    pipeline.model = pipeline.build_model()
    path = assert_export_roundtrip(pipeline, root / "models")
    return pipeline, path, pipeline.load_exported(path)


def test_export_answers_like_the_live_model(exported):
    # assert_export_roundtrip (in the fixture) compared every signature, predict() and empty requests.
    pipeline, path, loaded = exported
    assert set(pipeline.example_requests()) <= set(loaded.signatures)
    assert path.name.isdigit() and (path.parent.parent / "models.config").exists()


def test_encoded_inputs_refuse_corrupt_and_empty_bytes_naming_the_input(exported):
    pipeline, _, loaded = exported
    fn = loaded.signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    encoded = [name for name, spec in specs.items() if name.endswith("_bytes")]
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


def test_text_inputs_refuse_invalid_utf8_naming_the_input(exported):
    # Tokenizers would turn the bad bytes into made-up words: every text input is checked in the graph.
    pipeline, _, loaded = exported
    checked = []
    for signature, request in pipeline.example_requests().items():
        specs = loaded.signatures[signature].structured_input_signature[1]
        for name, spec in specs.items():
            if spec.dtype != tf.string or name.endswith("_bytes"):
                continue
            inputs = dict(request)
            inputs[name] = tf.constant([b"caf\xe9 \xff"] * int(tf.shape(request[name])[0]))  # Latin-1
            with pytest.raises(tf.errors.InvalidArgumentError, match=f"Invalid {name}: expected UTF-8 text"):
                export_lib.call_signature(loaded, signature, inputs)
            checked.append(f"{signature}/{name}")
    if not checked:
        pytest.skip(f"{pipeline.name} has no text inputs")


def test_from_workdir_gives_the_same_answers(exported):
    pipeline, _, _ = exported
    pipeline.save()
    raw = pipeline.sample_inputs(2)
    rebuilt = type(pipeline).from_workdir(pipeline.workdir)
    assert rebuilt.predict(raw) == pipeline.predict(raw)


@pytest.mark.parametrize("app", APPS)
def test_config_round_trips_through_json(app):
    config_class = registry.apps()[app].config_class
    for preset in config_class.PRESETS:
        config = config_class.preset(preset)
        assert config_class.from_json(config.to_json()) == config


def test_signature_defs_read_as_serving_metadata_with_float32_outputs(exported):
    _, path, _ = exported
    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
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


def test_warmup_records_cover_every_signature_and_answer(exported):
    pipeline, path, loaded = exported
    records = export_lib.read_warmup_requests(path)
    assert sorted(s for s, _ in records) == sorted(pipeline.example_requests())
    for signature, inputs in records:
        outputs = export_lib.call_signature(loaded, signature, inputs)
        rows = {int(np.shape(v)[0]) for v in inputs.values() if np.ndim(v)}
        assert all(np.shape(v)[0] in rows for v in outputs.values() if np.ndim(v)), signature


@pytest.mark.parametrize("app", APPS)
def test_every_config_key_says_what_it_means(app):
    # `catalogue config APP` prints these beside each key.
    docs = registry.apps()[app].config_class.field_docs()
    assert not [key for key, doc in docs.items() if not doc]
