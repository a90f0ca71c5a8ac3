"""Distribution: MirroredStrategy over 2 logical CPUs matches one replica; multi-worker trains and exports."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core import registry

SCRIPT = Path(__file__).with_name("distributed_run.py")
# One app per family; families whose app has not landed yet are left out. Each case trains twice (~75 s
# on 2 cores), so `make test` runs the image family and `make test-slow` the sequence ones.
FAMILIES = [pytest.param(a, marks=[pytest.mark.slow] if a != "image_classification" else [])
            for a in ("image_classification", "text_generation", "speech_commands") if a in registry.apps()]


def run(app, mode, tmp_path, env=None, export_dir=None, tag=""):
    out = tmp_path / f"{mode}{tag}.json"
    args = [sys.executable, str(SCRIPT), app, mode, str(tmp_path / f"work-{mode}{tag}"), str(out)]
    if export_dir:
        args.append(str(export_dir))
    return out, subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)


def finish(out, proc, timeout=600):
    log, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, log[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("app", FAMILIES)
def test_mirrored_two_replicas_matches_single(app, tmp_path):
    started = [run(app, mode, tmp_path) for mode in ("single", "mirrored")]  # in parallel: 2 cores
    single, mirrored = (finish(*s) for s in started)
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    assert single["global_batch"] == mirrored["global_batch"]
    # Same seed, data order and global batch: the curves agree up to per-replica BatchNorm
    # statistics and reduction order.
    assert mirrored["loss"][-1] == pytest.approx(single["loss"][-1], rel=0.15)
    assert mirrored["loss"][-1] < mirrored["loss"][0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multiworker_two_processes_train_and_export_once(tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    exports = tmp_path / "exports"
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(run("image_classification", "multiworker", tmp_path, env={"TF_CONFIG": tf_config},
                         export_dir=exports, tag=str(index)))
    results = [finish(*p, timeout=900) for p in procs]
    assert [r["replicas"] for r in results] == [2, 2]
    assert results[0]["export"] and results[1]["export"] is None
    assert sorted(p.name for p in (exports / "image_classification").iterdir()) == ["1"]
    assert results[0]["metrics"]["accuracy"] > 0.3


def test_mixed_precision_trains_and_exports_float32(tmp_path):
    from apps.image_classification import Config, Pipeline
    from core.testing import assert_export_roundtrip

    p = Pipeline(Config.preset("smoke", epochs=2, steps_per_epoch=4, precision="mixed"), workdir=tmp_path / "work")
    result = p.fit()
    # No GPU or TPU here: mixed precision means bfloat16 compute on the CPU.
    assert result["precision_policy"] == "mixed_bfloat16"
    assert p.model.get_layer("probabilities").dtype_policy.name == "float32"
    path = assert_export_roundtrip(p, tmp_path / "exports")
    scores = p.predict_exported(path, p.sample_inputs(1))[0]["scores"]
    assert all(isinstance(s, float) for s in scores)
