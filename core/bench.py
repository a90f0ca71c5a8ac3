"""`make bench`: quality and speed of every app on real data, written to reports/bench.{json,md} + PNGs.

For each app: train the config of its bench spec (apps/<app>/bench.py: real data read from
CATALOGUE_DATA), evaluate on the held-out test split, train the spec's anchor beside it where it has one,
then measure training examples/s, input-pipeline examples/s, exported-endpoint latency (p50/p99 at
batch 1) and throughput (batch 32) on raw inputs, the endpoint's overhead over the bare Keras model,
and model FLOPs per example. Absolute times vary between machines: compare ratios within one run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from core import registry
from core.data import data_root
from core.plots import learning_curves_png, metric_vs_time_png
from core.training import to_jsonable


@dataclasses.dataclass
class BenchSpec:
    """An app's experiments, kept apart from its product config: what `catalogue bench APP` runs.

    Args:
        overrides: the bench preset, config values over the config's defaults (`--preset bench`).
        dataset: path of the real data under CATALOGUE_DATA (becomes the config's `data`); "" keeps
            the embedded default.
        source: the public data set the local copy comes from and how to get it (shown when absent).
        bars: what the app promises on this run: (metric, op, target), op one of >=, >, <=, <; target a
            number or the name of another metric of the same evaluation (a baseline or the anchor's).
        quick: extra overrides for `--quick` (beyond a 30 s budget and at most 5 epochs).
        anchor: trains the reference recipe beside ours on the same data and budget:
            anchor(pipeline) -> metrics merged into ours (keys prefixed `anchor_`). Skipped by --quick.
        recipes: documented multi-step experiments (e.g. transfer from another data set or app), each
            name -> recipe(out_dir) -> metrics merged into ours (keys prefixed `<name>_`), so bars can
            compare their arms. Skipped by --quick.
        seeds: more seeds the bench config trains with after the main run (each its own split,
            initialisation and sampling), so a bar can ask for every run rather than one lucky one.
            Skipped by --quick.
        seed_metrics: the metrics summed up over the main run and the `seeds` runs: `seeds_mean_<key>`,
            `seeds_spread_<key>` (standard deviation), `seeds_min_<key>`, `seeds_max_<key>`, `seed<S>_<key>`
            (with --quick, of the main run alone).
        bare_model: bare_model(pipeline, raw_inputs) -> (fn, tensor): serving_default's neural work on
            preprocessed inputs, timed against the endpoint to measure its overhead. None: not measured.
        examples: examples(pipeline, n) -> up to n rows {column: text} of test inputs, references and
            outputs for the demo and bench reports.
    """

    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str = ""
    source: str = ""
    bars: tuple = ()
    quick: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    anchor: Callable | None = None
    recipes: Mapping[str, Callable] = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = ()
    seed_metrics: tuple[str, ...] = ()
    bare_model: Callable | None = None
    examples: Callable | None = None

    def data_path(self) -> Path | None:
        return data_root() / self.dataset if self.dataset else None

    def config(self, config_class, quick: bool = False):
        """The bench config (data under CATALOGUE_DATA); quick mode caps its training at 30 s."""
        values = dict(self.overrides)
        if self.dataset:
            values["data"] = str(self.data_path())
        config_class._check_keys(values)
        config = config_class(**values)
        if quick:
            config = config.replace(time_budget_s=30.0, epochs=min(config.epochs, 5), **self.quick)
        return config

    def require_data(self, app: str) -> None:
        """A clear error naming what to download and where to put it when the real data is absent."""
        path = self.data_path()
        if path is not None and not path.exists():
            raise FileNotFoundError(
                f"The {app} bench reads {self.dataset!r} under CATALOGUE_DATA ({data_root()}), which is "
                f"absent: {path}. Get it from {self.source or 'its public source'} and put it there, or "
                f"set CATALOGUE_DATA to the folder that holds it.")


def spec_for(name: str) -> BenchSpec:
    """The app's registered bench spec; an app without one benches its demo preset on embedded data."""
    return registry.bench_spec(name) or BenchSpec()


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "tensorflow": tf.__version__,
            "keras": __import__("keras").__version__, "python": platform.python_version(),
            "devices": [d.name for d in tf.config.list_logical_devices()],
            "matmul_gflops": round(matmul_gflops(), 1)}


def matmul_gflops(side: int = 2048, repeats: int = 10) -> float:
    """float32 matmul throughput through TF on the default device: what a wall-clock budget buys here.

    Bench reports carry it so that time-budgeted results from machines of different speeds can be
    compared by the compute they had.
    """
    a = tf.random.stateless_normal([side, side], seed=[0, 1])
    b = tf.random.stateless_normal([side, side], seed=[1, 2])
    multiply = tf.function(tf.matmul)
    multiply(a, b).numpy()  # trace and warm up
    start = time.perf_counter()
    for _ in range(repeats):
        c = multiply(a, b)
    c.numpy()
    return 2 * side ** 3 * repeats / (time.perf_counter() - start) / 1e9


def timed_calls(fn, n: int, warmup: int = 2) -> np.ndarray:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def input_pipeline_rate(ds: tf.data.Dataset, batch_size: int, max_batches: int = 50) -> float:
    """Examples/s the training input pipeline delivers on its own (after one warm-up pass)."""
    for _ in ds.take(max_batches):
        pass
    start = time.perf_counter()
    batches = sum(1 for _ in ds.take(max_batches))
    return batches * batch_size / max(time.perf_counter() - start, 1e-9)


def model_flops(model, example) -> float | None:
    """Forward-pass FLOPs for one example, counted by TF's profiler on the traced graph.

    `example` is one training input (a tensor or a dict of them, batch dimension 1): tracing the call
    on it works for functional, subclassed and dict-input models alike.
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.profiler import model_analyzer, option_builder

    try:
        specs = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), example)
        fn = tf.function(lambda x: model(x, training=False))
        graph = convert_variables_to_constants_v2(fn.get_concrete_function(specs)).graph
        opts = option_builder.ProfileOptionBuilder.float_operation()
        opts["output"] = "none"
        return float(model_analyzer.profile(graph, options=opts).total_float_ops)
    except Exception:  # noqa: BLE001 - dynamic shapes or custom ops: report as unknown, not fail
        return None


OPERATORS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less}


def check_bars(bars, metrics: dict) -> list[dict]:
    """Each quality bar against the measured metrics: value, target, met, and the gap when not met."""
    out = []
    for metric, op, target in bars:
        if op not in OPERATORS:
            raise ValueError(f"Unknown operator {op!r} in quality bar {(metric, op, target)}; "
                             f"expected one of {sorted(OPERATORS)}")
        value = metrics.get(metric)
        goal = metrics.get(target) if isinstance(target, str) else float(target)
        met = None if value is None or goal is None else bool(OPERATORS[op](value, goal))
        out.append({"metric": metric, "op": op, "target": target, "target_value": goal, "value": value,
                    "met": met, "gap": None if met is None or met else abs(float(value) - float(goal))})
    return out


def seed_summary(runs: Mapping[int, Mapping[str, float]], keys) -> dict[str, float]:
    """Mean, spread (standard deviation), min and max of each key over runs {seed: metrics}, and each run's."""
    out = {}
    for key in keys:
        values = np.array([run[key] for run in runs.values()], dtype=float)
        out.update({f"seeds_mean_{key}": float(values.mean()), f"seeds_spread_{key}": float(values.std()),
                    f"seeds_min_{key}": float(values.min()), f"seeds_max_{key}": float(values.max())})
        out.update({f"seed{seed}_{key}": float(run[key]) for seed, run in runs.items()})
    return out


def one_run_bars(bars) -> list[tuple]:
    """The bars asked of every seed (on seeds_min_<key> or seeds_max_<key>), as bars on one run's <key>."""
    return [(metric.removeprefix("seeds_min_").removeprefix("seeds_max_"), op, target)
            for metric, op, target in bars if metric.startswith(("seeds_min_", "seeds_max_"))]


def bench_app(name: str, *, quick: bool, out_dir: Path, data: str | None = None) -> dict:
    cls = registry.apps()[name]
    spec = spec_for(name)
    if spec.overrides or spec.dataset:
        config = spec.config(cls.config_class, quick=quick)
    else:
        config = cls.config_class.preset("demo")
        if quick:
            config = config.replace(time_budget_s=30.0, epochs=min(config.epochs, 5))
    if data:
        config = config.replace(data=data)
    else:
        spec.require_data(name)
    workdir = out_dir / "bench_runs" / name
    # A bench run starts from scratch: resuming an interrupted one would skip part of its budget.
    shutil.rmtree(workdir, ignore_errors=True)
    pipeline = cls(config, workdir)
    print(f"[bench] {name}: training on {config.data} ({'quick' if quick else 'full'} budget)", flush=True)
    # Wall seconds of each phase, so a slow bench shows where its time went.
    phases, clock = {}, time.perf_counter()

    def lap(phase):
        nonlocal clock
        now = time.perf_counter()
        phases[phase] = round(now - clock, 1)
        clock = now

    pipeline.datasets()
    lap("data")
    fit = pipeline.fit()
    lap("fit")
    metrics = pipeline.evaluate()
    lap("evaluate")
    if spec.anchor is not None and not quick:
        metrics.update({f"anchor_{k}": float(v) for k, v in spec.anchor(pipeline).items()})
        lap("anchor")
    if spec.seed_metrics:
        # --quick sums up its one run, so the every-seed bars still read a number.
        runs = {config.seed: metrics}
        for seed in () if quick else spec.seeds:
            seed_dir = out_dir / "bench_runs" / f"{name}_seed{seed}"
            shutil.rmtree(seed_dir, ignore_errors=True)
            print(f"[bench] {name}: again with seed {seed}", flush=True)
            seeded = cls(config.replace(seed=seed), seed_dir)
            seeded.fit()
            runs[seed] = seeded.evaluate()
        metrics.update(seed_summary(runs, spec.seed_metrics))
        lap("seeds")
    for recipe_name, recipe in ({} if quick else spec.recipes).items():
        recipe_dir = out_dir / "bench_runs" / f"{name}_{recipe_name}"
        shutil.rmtree(recipe_dir, ignore_errors=True)
        metrics.update({f"{recipe_name}_{k}": float(v) for k, v in recipe(recipe_dir).items()})
        lap(recipe_name)
    history = fit["history"]
    rates = history.get("examples_per_second", [])
    train_rate = float(np.mean(rates[1:] if len(rates) > 1 else rates)) if rates else None
    train_ds, _ = pipeline.training_data(pipeline.datasets())
    pipe_rate = input_pipeline_rate(train_ds, pipeline.global_batch_size, 20 if quick else 50)
    features = next(iter(train_ds))[0]
    one_example = tf.nest.map_structure(lambda t: t[:1], features)
    flops = model_flops(pipeline.model, one_example)
    lap("input_pipeline_and_flops")

    export_root = out_dir / "bench_exports"
    path = pipeline.export(export_root)
    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures["serving_default"]
    lap("export")
    one = pipeline.encode_request(pipeline.sample_inputs(1))
    raw32 = pipeline.sample_inputs(32)
    raw32 = (raw32 * (32 // max(len(raw32), 1) + 1))[:32]
    many = pipeline.encode_request(raw32)
    # Quick mode times fewer calls: enough for a median, not for a stable p99.
    lat = timed_calls(lambda: fn(**one), 10 if quick else 100, warmup=1 if quick else 2)
    t32 = timed_calls(lambda: fn(**many), 3 if quick else 20, warmup=1 if quick else 2)
    result = {
        "app": name, "quick": quick, "data": fit["data"].get("source", config.data), "budget": {
            "epochs": config.epochs, "epochs_run": fit["epochs_run"], "time_budget_s": config.time_budget_s,
            "train_seconds": round(fit["train_seconds"], 1)},
        "metrics": metrics,
        "quality_bars": check_bars(spec.bars, metrics),
        "train_examples_per_s": train_rate,
        "input_pipeline_examples_per_s": pipe_rate,
        "input_over_train": pipe_rate / train_rate if train_rate else None,
        "endpoint_latency_ms_b1": {"p50": float(np.percentile(lat, 50) * 1e3),
                                   "p99": float(np.percentile(lat, 99) * 1e3)},
        "endpoint_examples_per_s_b32": float(32 / np.median(t32)),
        "flops_per_example": flops,
        "export": str(path),
        "machine": machine(),
        "phase_seconds": phases,
    }
    if spec.bare_model is not None:
        bare_fn, preprocessed = spec.bare_model(pipeline, raw32)
        model_fn = tf.function(bare_fn)
        bare = timed_calls(lambda: model_fn(preprocessed), 3 if quick else 20, warmup=1 if quick else 2)
        # The fastest call of each: other work on a shared machine only ever adds time, and with the
        # quick mode's 3 calls a median moved the overhead by tens of points between runs (-17% once).
        result["endpoint_overhead_b32"] = float(np.min(t32) / np.min(bare) - 1)
    lap("endpoint_timing")
    learning_curves_png(history, out_dir / f"bench_{name}_curves.png", title=name)
    metric_vs_time_png(history, pipeline.monitor, out_dir / f"bench_{name}_metric_vs_time.png", title=name)
    return result


def fmt(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def bar_text(bar: dict) -> str:
    target = bar["target"]
    if isinstance(target, str):
        target = f"{target} ({fmt(bar['target_value'], 4)})"
    return f"{bar['metric']} {bar['op']} {target}"


def met_text(bar: dict) -> str:
    if bar["met"] is None:
        return "not measured"
    return "met" if bar["met"] else f"NOT met (gap {fmt(bar['gap'], 3)})"


def phase_text(phases: dict | None) -> str:
    if not phases:
        return "n/a"
    return f"{sum(phases.values()):.0f} s: " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items())


def write_markdown(results: list[dict], info: dict, path: Path) -> None:
    lines = ["# Benchmarks", "", f"Machine: {info['cpu']}, {info['cores']} cores, TF {info['tensorflow']}, "
             f"Keras {info['keras']}, devices {', '.join(info['devices'])}, float32 matmul "
             f"{info.get('matmul_gflops', 'n/a')} GFLOP/s. "
             "Written by `make bench`.", ""]
    lines += ["| app | run | quality bar | measured | met |", "|---|---|---|---|---|"]
    for r in results:
        for bar in r.get("quality_bars", []):
            lines.append(f"| {r['app']} | {'quick' if r.get('quick') else 'full'} | {bar_text(bar)} | "
                         f"{fmt(bar['value'], 4)} | {met_text(bar)} |")
    lines.append("")
    for r in results:
        headline = {k: v for k, v in r["metrics"].items() if "/" not in k}
        ratio = r.get("input_over_train")
        lines += [f"## {r['app']}", "", "| measure | value |", "|---|---|",
                  f"| dataset | {r['data']} |",
                  *[f"| quality bar: {bar_text(bar)} | {fmt(bar['value'], 4)}: {met_text(bar)} |"
                    for bar in r.get("quality_bars", [])],
                  f"| budget | {'quick mode: ' if r.get('quick') else ''}"
                  f"{r['budget']['epochs_run']}/{r['budget']['epochs']} epochs, "
                  f"{r['budget']['train_seconds']} s (time budget {r['budget']['time_budget_s']} s) |",
                  *[f"| {k} | {fmt(v, 4)} |" for k, v in headline.items()],
                  f"| training examples/s | {fmt(r['train_examples_per_s'])} |",
                  f"| input pipeline examples/s | {fmt(r['input_pipeline_examples_per_s'])} "
                  f"({fmt(ratio)}x training{'' if ratio is None or ratio >= 3 else ': BELOW the 3x target'}) |",
                  f"| endpoint latency batch 1 p50 / p99 | {fmt(r['endpoint_latency_ms_b1']['p50'])} / "
                  f"{fmt(r['endpoint_latency_ms_b1']['p99'])} ms |",
                  f"| endpoint throughput batch 32 | {fmt(r['endpoint_examples_per_s_b32'])} examples/s |",
                  f"| endpoint overhead over the Keras model, batch 32 | "
                  f"{fmt(r.get('endpoint_overhead_b32'))} |",
                  f"| model FLOPs per example | {fmt(r['flops_per_example'])} |",
                  f"| bench wall seconds by phase | {phase_text(r.get('phase_seconds'))} |", "",
                  f"![curves](bench_{r['app']}_curves.png) ![metric vs time](bench_{r['app']}_metric_vs_time.png)",
                  ""]
    path.write_text("\n".join(lines))


def run_bench(names: list[str], *, quick: bool = False, out_dir: str = "reports", data: str | None = None):
    """Benches `names` and merges them into out_dir/bench.json (earlier apps' results are kept).

    With no names, only rewrites bench.md from bench.json (quality bars re-checked against the
    apps' current bars).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    json_path = out / "bench.json"
    stored = json.loads(json_path.read_text()) if json_path.exists() else {}
    previous = stored.get("apps", {})
    results = {}
    for name in names:
        results[name] = bench_app(name, quick=quick, out_dir=out, data=data)
        print(f"[bench] {name}: {json.dumps({k: v for k, v in results[name]['metrics'].items() if '/' not in k})}",
              flush=True)
    merged = {**previous, **to_jsonable(results)}
    for name, result in merged.items():
        result["quality_bars"] = check_bars(spec_for(name).bars, result["metrics"])
        result.setdefault("machine", stored.get("machine", info))
    json_path.write_text(json.dumps({"machine": info, "quick": quick, "apps": merged}, indent=2) + "\n")
    write_markdown([merged[k] for k in sorted(merged)], info, out / "bench.md")
    print(f"[bench] wrote {json_path} and {out / 'bench.md'}")
    return results
