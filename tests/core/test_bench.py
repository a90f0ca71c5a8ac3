"""The bench harness: quality bars, FLOPs of functional and subclassed models, one app end to end."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from core import bench


def test_check_bars_numbers_baselines_and_missing_metrics():
    bars = bench.check_bars([("acc", ">=", 0.95), ("acc", ">", "chance"), ("loss", "<=", "anchor")],
                            {"acc": 0.9, "chance": 0.1})
    assert [b["met"] for b in bars] == [False, True, None]
    assert bars[0]["gap"] == pytest.approx(0.05) and bars[1]["gap"] is None
    assert bars[1]["target_value"] == 0.1
    assert "NOT met (gap 0.05)" in bench.met_text(bars[0]) and bench.met_text(bars[2]) == "not measured"
    assert bench.bar_text(bars[1]) == "acc > chance (0.1)"
    with pytest.raises(ValueError, match="Unknown operator '=>'"):
        bench.check_bars([("acc", "=>", 1)], {"acc": 1})


class TwoDense(keras.Model):
    def __init__(self):
        super().__init__()
        self.a, self.b = keras.layers.Dense(8), keras.layers.Dense(2)

    def call(self, x):
        return self.b(self.a(x["tokens"]))


def test_model_flops_counts_functional_and_subclassed_dict_models():
    inputs = keras.Input((4,))
    functional = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    # A 4 -> 3 dense layer: 4 x 3 multiply-adds = 24 FLOPs, plus 3 bias adds.
    assert bench.model_flops(functional, tf.zeros([1, 4])) == pytest.approx(27, abs=3)
    subclassed = TwoDense()
    example = {"tokens": tf.zeros([1, 4])}
    subclassed(example)
    assert bench.model_flops(subclassed, example) == pytest.approx(2 * 4 * 8 + 8 + 2 * 8 * 2 + 2, abs=6)


def test_bench_one_app_end_to_end(tmp_path, monkeypatch):
    from apps.image_classification import Config
    from apps.image_classification.bench import BENCH

    # The app's bench on its embedded smoke data: the real flowers need not be here.
    spec = bench.BenchSpec(overrides=dict(Config.PRESETS["smoke"], epochs=3), bars=BENCH.bars,
                           bare_model=BENCH.bare_model,
                           recipes={"transfer": lambda out_dir: pytest.fail("--quick skips the recipes")},
                           seeds=(1,), seed_metrics=("accuracy",))
    monkeypatch.setattr(bench, "spec_for", lambda name: spec)
    results = bench.run_bench(["image_classification"], quick=True, out_dir=str(tmp_path))
    r = results["image_classification"]
    assert r["metrics"]["accuracy"] > r["metrics"]["chance"]
    # --quick trains no other seed; the every-seed summary is of the one run.
    assert r["metrics"]["seeds_min_accuracy"] == r["metrics"]["accuracy"]
    assert not (tmp_path / "bench_runs" / "image_classification_seed1").exists()
    assert r["quality_bars"][0]["met"] is True
    assert [bar["met"] for bar in r["quality_bars"] if bar["metric"] == "transfer_accuracy"] == [None]
    assert r["train_examples_per_s"] > 0 and r["input_pipeline_examples_per_s"] > 0
    assert r["flops_per_example"] > 1e4 and np.isfinite(r["endpoint_overhead_b32"])
    assert r["endpoint_latency_ms_b1"]["p99"] >= r["endpoint_latency_ms_b1"]["p50"] > 0
    stored = json.loads((tmp_path / "bench.json").read_text())
    assert stored["apps"]["image_classification"]["machine"]["cores"] >= 1
    assert stored["apps"]["image_classification"]["machine"]["matmul_gflops"] > 1  # any CPU does > 1 GFLOP/s
    text = (tmp_path / "bench.md").read_text()
    assert "| image_classification | quick | accuracy > chance" in text and "met" in text
    assert "GFLOP/s" in text
    assert (tmp_path / "bench_image_classification_curves.png").stat().st_size > 1000
    # --report-only: rewrites bench.md from bench.json, bars re-checked, nothing trained.
    (tmp_path / "bench.md").unlink()
    assert bench.run_bench([], out_dir=str(tmp_path)) == {}
    assert "accuracy > chance" in (tmp_path / "bench.md").read_text()


def test_seed_summary_and_the_bars_of_one_run():
    runs = {0: {"acc": 0.9, "z": 1.0}, 1: {"acc": 0.7, "z": 3.0}, 2: {"acc": 0.8, "z": 2.0}}
    summary = bench.seed_summary(runs, ("acc", "z"))
    assert summary["seeds_mean_acc"] == pytest.approx(0.8) and summary["seeds_min_acc"] == pytest.approx(0.7)
    assert summary["seeds_spread_acc"] == pytest.approx(np.std([0.9, 0.7, 0.8]))
    assert summary["seeds_max_z"] == 3.0 and summary["seed1_acc"] == 0.7
    bars = (("seeds_min_acc", ">=", 0.75), ("seeds_max_z", "<=", 2.5), ("digits_acc", ">=", 0.9))
    # Every run must meet them: the mean would, seed 1 does not.
    assert [b["met"] for b in bench.check_bars(bars[:2], summary)] == [False, False]
    assert bench.one_run_bars(bars) == [("acc", ">=", 0.75), ("z", "<=", 2.5)]


@pytest.mark.slow  # a second bench run end to end (test_bench_one_app_end_to_end is the fast one)
def test_bench_trains_the_other_seeds_each_in_its_own_run(tmp_path, monkeypatch):
    from apps.image_classification import Config

    spec = bench.BenchSpec(overrides=dict(Config.PRESETS["smoke"], epochs=1), seeds=(1,),
                           seed_metrics=("accuracy",), bars=(("seeds_min_accuracy", ">=", 0.0),))
    monkeypatch.setattr(bench, "spec_for", lambda name: spec)
    r = bench.run_bench(["image_classification"], quick=False, out_dir=str(tmp_path))["image_classification"]
    metrics = r["metrics"]
    assert metrics["seed0_accuracy"] == metrics["accuracy"]
    assert json.loads((tmp_path / "bench_runs" / "image_classification_seed1" / "config.json").read_text())["seed"] == 1
    assert metrics["seeds_min_accuracy"] == min(metrics["seed0_accuracy"], metrics["seed1_accuracy"])
    assert r["quality_bars"][0]["met"] is True and "seeds" in r["phase_seconds"]
