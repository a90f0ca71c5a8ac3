"""Test helpers every app's tests reuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from core import export as export_lib
from core.data import data_root


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
    """Exports, reloads in a fresh tf.saved_model.load, and checks every endpoint and predict().

    Returns the version folder. Fails if any signature's outputs differ from the live model's or
    if predict_exported() and predict() disagree on the same raw inputs.
    """
    path = pipeline.export(out_dir)
    assert path.name.isdigit() and (path / "saved_model.pb").exists()
    loaded = tf.saved_model.load(str(path))
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
