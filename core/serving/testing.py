"""Helpers for serving tests and the load test: smoke exports, JSON/gRPC requests built from an
app's example inputs, and `saved_model_cli run` on an export."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def export_smoke_app(name: str, out_dir: str | Path, workdir: str | Path | None = None):
    """Exports an app's smoke-preset model (untrained: serving does not care about weights).

    Returns (pipeline, version folder). Falls back to a one-epoch fit for an app whose export
    needs something only training sets up.
    """
    from core import registry

    cls = registry.apps()[name]
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"serving-{name}-"))
    pipeline = cls(cls.config_class.preset("smoke"), workdir=workdir)
    try:
        pipeline.model = pipeline.build_model()
        return pipeline, pipeline.export(out_dir)
    except Exception:  # noqa: BLE001 - some apps may need fit() before export
        pipeline = cls(cls.config_class.preset("smoke", epochs=1), workdir=workdir)
        pipeline.fit()
        return pipeline, pipeline.export(out_dir)


def as_numpy(value) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def json_tensor(array: np.ndarray) -> Any:
    """A tensor as TF Serving JSON; every string element as {"b64": ...} (safe for any bytes)."""
    if isinstance(array, (bytes, str)):  # np.asarray(bytes) would drop trailing NUL bytes
        return {"b64": base64.b64encode(array if isinstance(array, bytes) else array.encode()).decode()}
    array = as_numpy(array)
    if array.dtype.kind in "OSU":
        flat = [{"b64": base64.b64encode(x if isinstance(x, bytes) else str(x).encode()).decode()}
                for x in array.reshape(-1)]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(array.shape).tolist() if array.ndim else flat[0]
    return array.tolist()


def columnar_body(inputs: Mapping[str, Any], signature: str = "") -> dict:
    arrays = {k: as_numpy(v) for k, v in inputs.items()}
    body: dict[str, Any] = {"inputs": {k: json_tensor(v) for k, v in arrays.items()}}
    if signature:
        body["signature_name"] = signature
    return body


def row_body(inputs: Mapping[str, Any], signature: str = "") -> dict | None:
    """The same request in row format, or None when the inputs do not share a batch dimension."""
    arrays = {k: as_numpy(v) for k, v in inputs.items()}
    sizes = {v.shape[0] if v.ndim else None for v in arrays.values()}
    if len(sizes) != 1 or None in sizes:
        return None
    n = sizes.pop()
    if len(arrays) == 1:
        (value,) = arrays.values()
        instances = [json_tensor(value[i]) for i in range(n)]
    else:
        instances = [{k: json_tensor(v[i]) for k, v in arrays.items()} for i in range(n)]
    body: dict[str, Any] = {"instances": instances}
    if signature:
        body["signature_name"] = signature
    return body


def assert_output_matches(actual: Any, expected: np.ndarray, name: str, context: str = "",
                          atol: float = 1e-4) -> None:
    """Checks one output from TF Serving JSON against the array the signature returned, decoding
    the JSON independently of the server: `*_bytes` strings from {"b64"}, other strings as UTF-8."""
    expected = as_numpy(expected)
    where = f"{context} output {name!r}"
    if expected.dtype.kind in "OSU":
        def decode(x):
            if name.endswith("_bytes"):
                assert isinstance(x, dict) and set(x) == {"b64"}, f"{where}: {x!r} is not a b64 object"
                return base64.b64decode(x["b64"])
            assert isinstance(x, str), f"{where}: {x!r} is not a string"
            return x.encode("utf-8")

        def flatten(x, shape):
            if not shape:
                return [decode(x)]
            assert isinstance(x, list) and len(x) == shape[0], f"{where}: {x!r} does not have shape {shape}"
            return [y for item in x for y in flatten(item, shape[1:])]

        got = flatten(actual, expected.shape)
        want = [x if name.endswith("_bytes") else x.decode("utf-8", "replace").encode("utf-8")
                for x in expected.reshape(-1)]
        assert got == want, f"{where}: {got!r} != {expected!r}"
        return
    got = np.asarray(actual, dtype=np.float64)
    assert got.shape == expected.shape, f"{where}: shape {got.shape} != {expected.shape}"
    if expected.dtype.kind in "fc" or expected.dtype.name == "bfloat16":
        assert np.allclose(got, expected.astype(np.float64), atol=atol, rtol=atol, equal_nan=True), \
            f"{where}: max abs diff {np.nanmax(np.abs(got - expected.astype(np.float64)))}"
    else:
        assert np.array_equal(got, expected.astype(np.float64)), f"{where}: {got!r} != {expected!r}"


def rows_to_columns(predictions: list, names: list[str]) -> dict[str, Any]:
    """Row-format predictions back to {output: [per-example values]}."""
    if len(names) == 1:
        return {names[0]: predictions}
    return {k: [row[k] for row in predictions] for k in names}


def saved_model_cli_run(path: str | Path, signature: str, inputs: Mapping[str, Any],
                        timeout: float = 300) -> dict[str, np.ndarray]:
    """Runs `saved_model_cli run` (TF1 session, like tensorflow_model_server) on one signature and
    returns its outputs, read back from the .npy files it writes."""
    work = Path(tempfile.mkdtemp(prefix="smcli-"))
    specs = []
    for key, value in inputs.items():
        array = as_numpy(value)
        if array.dtype.kind in "SU":
            array = array.astype(object)
        file = work / f"{key}.npy"
        np.save(file, array, allow_pickle=array.dtype == object)
        specs.append(f"{key}={file}")
    out = work / "out"
    exe = Path(sys.executable).with_name("saved_model_cli")
    cmd = [str(exe) if exe.exists() else "saved_model_cli", "run", "--dir", str(path), "--tag_set", "serve",
           "--signature_def", signature, "--inputs", ";".join(specs), "--outdir", str(out), "--overwrite"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"saved_model_cli run failed ({proc.returncode}) for {path} {signature}:\n"
                             f"{proc.stderr[-3000:]}")
    return {f.stem: np.load(f, allow_pickle=True) for f in sorted(out.glob("*.npy"))}


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()
