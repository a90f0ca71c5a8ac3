"""The `catalogue` command line: list, train, evaluate, export, predict, demo, serve."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: less C++ start-up chatter

from core.distribute import STRATEGIES  # noqa: E402 - imports TensorFlow


def _apps():
    from apps import APPS

    return APPS


def _app(name: str):
    apps = _apps()
    key = name.replace("-", "_")
    if key not in apps:
        raise SystemExit(f"error: unknown app {name!r}. Valid apps: {', '.join(sorted(apps))}")
    return apps[key]


def _config(pipeline_class, args):
    try:
        config = pipeline_class.config_class.preset(args.preset)
        config = config.override(args.set)
    except (KeyError, ValueError) as err:
        raise SystemExit(f"error: {err.args[0] if err.args else err}") from None
    changes = {k: v for k, v in (("data", args.data), ("strategy", args.strategy)) if v}
    return config.replace(**changes) if changes else config


def cmd_list(args):
    import importlib

    for name in sorted(_apps()):
        doc = (importlib.import_module(f"apps.{name}").__doc__ or "").strip()
        print(f"{name:22s} {doc.splitlines()[0] if doc else ''}")


def cmd_train(args):
    cls = _app(args.app)
    config = _config(cls, args)
    workdir = Path(args.workdir or Path("runs") / cls.name)
    pipeline = cls(config, workdir)
    print(f"[{cls.name}] training with preset={args.preset} data={config.data} workdir={workdir}")
    result = pipeline.fit()
    print(f"[{cls.name}] {result['epochs_run']} epochs in {result['train_seconds']:.1f}s")
    metrics = pipeline.evaluate()
    print(json.dumps({cls.name: metrics}, indent=2))
    if args.export:
        print(f"[{cls.name}] exported to {pipeline.export(args.export)}")


def cmd_evaluate(args):
    pipeline = _app(args.app).from_workdir(args.workdir)
    print(json.dumps(pipeline.evaluate(), indent=2))


def cmd_export(args):
    pipeline = _app(args.app).from_workdir(args.workdir)
    print(pipeline.export(args.out))


def cmd_predict(args):
    cls = _app(args.app)
    model_path = Path(args.model or Path("saved_models") / cls.name)
    # A bare pipeline is enough: requests and responses are encoded without a trained model.
    pipeline = cls(cls.config_class.preset("demo"))
    for raw, answer in zip(args.inputs, pipeline.predict_exported(model_path, args.inputs)):
        print(json.dumps({"input": raw, "output": answer}, ensure_ascii=False))


def cmd_demo(args):
    from core.demo import run_demo

    names = [n.replace("-", "_") for n in args.apps] or sorted(_apps())
    for name in names:
        _app(name)
    run_demo(names, preset=args.preset, out=args.out, report=args.report, runs=args.runs)


def cmd_bench(args):
    from core.bench import run_bench

    names = [n.replace("-", "_") for n in args.apps] or sorted(_apps())
    for name in names:
        _app(name)
    if args.report_only:
        names = []
    out = args.out or ("reports/quick" if args.quick else "reports")
    run_bench(names, quick=args.quick, out_dir=out, data=args.data)


def cmd_serve(args):
    from core.serving.server import main as serve_main

    serve_main(model_config=args.model_config, host=args.host, port=args.port, grpc_port=args.grpc_port,
               poll_seconds=args.poll_seconds, max_body_mb=args.max_body_mb)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="catalogue",
        description="Train, evaluate, export and serve the catalogue's deep-learning applications.",
        epilog="Example: catalogue train image_classification --preset smoke --export saved_models")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list the applications").set_defaults(fn=cmd_list)

    train = sub.add_parser("train", help="train an app, evaluate it on its test split, optionally export")
    train.add_argument("app", help="application name (see `catalogue list`); hyphens or underscores")
    train.add_argument("--preset", default="demo", choices=["smoke", "demo", "bench", "full"],
                       help="size of the run: smoke (seconds, tests), demo (minutes), bench (real data, "
                            "where the app has that preset), full (real training)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config field, e.g. --set epochs=5 (repeatable)")
    train.add_argument("--data", help="data source: 'embedded' (default), a local folder/file, or tfds:NAME")
    train.add_argument("--workdir", help="where checkpoints, logs and metrics go (default runs/APP)")
    train.add_argument("--strategy", choices=STRATEGIES,
                       help="distribution: auto (TPU > several GPUs > default), cpu, gpu, mirrored, "
                            "multiworker (TF_CONFIG), tpu")
    train.add_argument("--export", metavar="DIR", help="also export the trained model under DIR")
    train.set_defaults(fn=cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a trained workdir on its test split")
    evaluate.add_argument("app")
    evaluate.add_argument("--workdir", required=True, help="a workdir written by `catalogue train`")
    evaluate.set_defaults(fn=cmd_evaluate)

    export = sub.add_parser("export", help="export a trained workdir as a new SavedModel version")
    export.add_argument("app")
    export.add_argument("--workdir", required=True, help="a workdir written by `catalogue train`")
    export.add_argument("--out", default="saved_models", help="export root (default saved_models)")
    export.set_defaults(fn=cmd_export)

    predict = sub.add_parser("predict", help="answer raw inputs with an exported model")
    predict.add_argument("app")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="raw inputs: file paths for image/audio apps, text for text apps")
    predict.add_argument("--model", help="a model folder (latest version used) or a version folder "
                                         "(default saved_models/APP)")
    predict.set_defaults(fn=cmd_predict)

    demo = sub.add_parser("demo", help="train, export, reload and show every app on its embedded data")
    demo.add_argument("apps", nargs="*", help="apps to run (default: all)")
    demo.add_argument("--preset", default="demo", choices=["smoke", "demo", "full"])
    demo.add_argument("--out", default="saved_models", help="export root")
    demo.add_argument("--runs", default="runs", help="root of the workdirs")
    demo.add_argument("--report", default="reports/demo.md", help="where the Markdown report goes")
    demo.set_defaults(fn=cmd_demo)

    bench = sub.add_parser("bench", help="measure quality and speed on real data; writes reports/bench.md")
    bench.add_argument("apps", nargs="*", help="apps to measure (default: all)")
    bench.add_argument("--quick", action="store_true",
                       help="cap each app's training at 30 s (all seven apps: 11 minutes on a 2-core CPU)")
    bench.add_argument("--data", help="override the data source (a path or tfds:NAME)")
    bench.add_argument("--report-only", action="store_true",
                       help="train nothing: rewrite bench.md from bench.json, re-checking the quality bars")
    bench.add_argument("--out", help="where bench.json, bench.md and plots go (default reports, or reports/quick "
                                     "with --quick, so quick numbers never replace full ones)")
    bench.set_defaults(fn=cmd_bench)

    serve = sub.add_parser("serve", help="serve exported models over TF Serving's REST and gRPC APIs")
    serve.add_argument("--model-config", default="saved_models/models.config",
                       help="TF Serving model_config_list file")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback only)")
    serve.add_argument("--port", type=int, default=8501, help="REST port (default 8501)")
    serve.add_argument("--grpc-port", type=int, default=8500, help="gRPC port (default 8500; 0 disables)")
    serve.add_argument("--poll-seconds", type=float, default=2.0,
                       help="how often to look for new versions and models.config changes")
    serve.add_argument("--max-body-mb", type=float, default=64.0, help="largest request accepted (MiB)")
    serve.set_defaults(fn=cmd_serve)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    start = time.monotonic()
    args.fn(args)
    if args.command in ("train", "demo"):
        print(f"done in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
