"""The `catalogue` command line: list, config, train, evaluate, export, predict, demo, bench, serve.

TensorFlow is imported only by the commands that need it, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from core.config import STRATEGIES

PRESETS = ("smoke", "demo", "bench", "full")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("dl-catalogue")
    except metadata.PackageNotFoundError:
        return "unknown"


def _quiet_tensorflow(verbose: bool) -> None:
    """Imports TensorFlow without its start-up chatter (unless --verbose).

    On a machine without an NVIDIA device, TF's failed cuInit is an ERROR line that means nothing, so
    C++ logging drops to errors-only there; the lines printed while its libraries load (before absl
    logging starts) go to a buffer that is shown only if the import fails.
    """
    if verbose or "tensorflow" in sys.modules:
        return
    no_gpu = not any(Path("/dev").glob("nvidia[0-9]*"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if no_gpu else "2")  # a value the user set wins
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            buffer.seek(0)
            sys.stderr.write(buffer.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)


def _apps():
    from core import registry

    return registry.apps()


def _app(name: str):
    return _known(name, _apps())[name]


def _known(name: str, apps):
    """`apps` if `name` is one of them (checked without importing any app), else the one-line error."""
    if name not in apps:
        raise SystemExit(f"error: unknown app {name!r}. Valid apps: {', '.join(apps)}")
    return apps


def _config(pipeline_class, args):
    """The preset (the bench preset from the app's bench spec), then --set, --data and --strategy."""
    try:
        if args.preset == "bench":
            from core.bench import spec_for

            spec = spec_for(pipeline_class.name)
            if not (spec.overrides or spec.dataset):
                raise ValueError(f"{pipeline_class.name} has no bench preset; valid presets: "
                                 f"{sorted(pipeline_class.config_class.PRESETS)}")
            if not getattr(args, "data", None):
                spec.require_data(pipeline_class.name)
            config = spec.config(pipeline_class.config_class)
        else:
            config = pipeline_class.config_class.preset(args.preset)
        config = config.override(args.set)
    except (KeyError, ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err.args[0] if err.args else err}") from None
    changes = {k: v for k, v in (("data", getattr(args, "data", None)),
                                 ("strategy", getattr(args, "strategy", None))) if v}
    return config.replace(**changes) if changes else config


def cmd_list(args):
    import importlib.util

    apps = _apps()
    for name in apps:
        doc = _module_doc(importlib.util.find_spec(apps.module_name(name)))
        print(f"{name:22s} {doc}")


def _module_doc(spec) -> str:
    """First docstring line of a package's __init__, read without importing it (no TensorFlow)."""
    import ast

    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return ""
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def cmd_config(args):
    cls = _app(args.app)
    config = _config(cls, args)
    docs = config.field_docs()
    values = config.to_dict()
    if args.json:
        print(json.dumps(values, indent=2, sort_keys=True))
        return
    width = max(len(k) for k in values)
    shown = {k: json.dumps(v) if not isinstance(v, str) else repr(v) for k, v in values.items()}
    value_width = min(max(len(v) for v in shown.values()), 28)
    print(f"# {cls.name}, preset {args.preset}: set any key with --set KEY=VALUE")
    for key in values:
        print(f"{key:{width}s}  {shown[key]:{value_width}s}  {docs.get(key, '')}".rstrip())


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
    if args.hub:
        for path in pipeline.export_hub(args.out).values():
            print(path)
        return
    print(pipeline.export(args.out))


def cmd_predict(args):
    from core import predict as predict_lib

    cls = _app(args.app)
    # A bare pipeline is enough: requests and responses are encoded without a trained model.
    pipeline = cls(cls.config_class.preset("demo"))
    try:
        request = pipeline.encode_request(list(args.inputs))
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    if args.server:
        outputs = predict_lib.ask_server(args.server, cls.name, request, args.signature)
    else:
        model_path = Path(args.model or Path("saved_models") / cls.name)
        outputs = predict_lib.ask_saved_model(model_path, request, args.signature)
    if args.signature == "serving_default":
        answers = pipeline.decode_response(outputs)
    else:
        answers = predict_lib.readable_rows(outputs)
    for i, (raw, answer) in enumerate(zip(args.inputs, answers)):
        row = {"input": raw, "output": answer}
        if args.out:
            row["files"] = predict_lib.write_files(args.out, raw, i, {k: v[i] for k, v in outputs.items()})
        print(json.dumps(row, ensure_ascii=False, default=predict_lib.jsonable))


def cmd_demo(args):
    from core.demo import run_demo

    names = [n.replace("-", "_") for n in args.apps] or list(_apps())
    for name in names:
        _app(name)
    run_demo(names, preset=args.preset, out=args.out, report=args.report, runs=args.runs)


def cmd_bench(args):
    from core.bench import run_bench

    names = [n.replace("-", "_") for n in args.apps] or list(_apps())
    for name in names:
        _app(name)
    if args.report_only:
        names = []
    out = args.out or ("reports/quick" if args.quick else "reports")
    run_bench(names, quick=args.quick, out_dir=out, data=args.data)


def cmd_serve(args):
    from core.serving.server import main as serve_main

    serve_main(model_config=args.model_config, host=args.host, port=args.port, grpc_port=args.grpc_port,
               poll_seconds=args.poll_seconds, max_body_mb=args.max_body_mb, ui=not args.no_ui,
               request_timeout_s=args.request_timeout_s, max_queue=args.max_queue, max_batch=args.max_batch,
               max_connections=args.max_connections)


def _add_config_options(parser, data: bool = True):
    parser.add_argument("app", help="application name (see `catalogue list`); hyphens or underscores")
    parser.add_argument("--preset", default="demo", choices=PRESETS,
                        help="size of the run: smoke (seconds, tests), demo (minutes, embedded data), "
                             "bench (real data under CATALOGUE_DATA, where the app has a bench), full")
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. --set epochs=5 batch_size=32 "
                             "(`catalogue config APP` lists every key)")
    if data:
        parser.add_argument("--data", help="data source: 'embedded' (default), a local folder/file, or tfds:NAME")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="catalogue",
        description="Train, evaluate, export and serve the catalogue's deep-learning applications.",
        epilog="Example: catalogue train image_classification --preset smoke --export saved_models")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up and C++ log lines")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list the applications").set_defaults(fn=cmd_list, needs_tf=False)

    config = sub.add_parser("config", help="print every config key of an app with its value and meaning")
    _add_config_options(config)
    config.add_argument("--json", action="store_true", help="print the config as JSON only")
    config.set_defaults(fn=cmd_config)

    train = sub.add_parser("train", help="train an app, evaluate it on its test split, optionally export")
    _add_config_options(train)
    train.add_argument("--workdir", help="where checkpoints, logs and metrics go (default runs/APP); "
                                         "an interrupted run resumes from it")
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
    export.add_argument("--hub", action="store_true",
                        help="publish the app's encoder(s) as TF Hub modules under OUT/hub/APP/ instead, for "
                             "other apps' backbone=hub:<path> / encoder=hub:<path>")
    export.set_defaults(fn=cmd_export)

    predict = sub.add_parser("predict", help="answer raw inputs with an exported model or a running server")
    predict.add_argument("app")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="raw inputs: file paths for image/audio apps, text for text apps")
    predict.add_argument("--model", help="a model folder (latest version used) or a version folder "
                                         "(default saved_models/APP)")
    predict.add_argument("--server", metavar="URL",
                         help="ask a running `catalogue serve` or TF Serving REST API instead, "
                              "e.g. http://127.0.0.1:8501")
    predict.add_argument("--signature", default="serving_default",
                         help="signature to call (default serving_default; others print their raw outputs)")
    predict.add_argument("--out", metavar="DIR",
                         help="also write outputs as files: images and audio the model returns, "
                              "detections drawn on the input photo")
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
                       help="cap each app's training at 30 s and skip the anchors trained beside ours")
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
    serve.add_argument("--request-timeout-s", type=float, default=60.0,
                       help="longest a prediction may take, body included; clients may ask for less "
                            "(gRPC deadline, X-Request-Timeout-S header); work past it is cancelled (default 60)")
    serve.add_argument("--max-queue", type=int, default=16,
                       help="predictions that may wait for a free worker; more get 429 / RESOURCE_EXHAUSTED "
                            "(default 16)")
    serve.add_argument("--max-batch", type=int, default=256, help="most examples per request (default 256)")
    serve.add_argument("--max-connections", type=int, default=256,
                       help="most open REST connections; more get 503 (default 256)")
    serve.add_argument("--no-ui", action="store_true",
                       help="do not serve the web page for trying the models (at / on the REST port)")
    serve.set_defaults(fn=cmd_serve)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    apps = _apps()
    for name in [getattr(args, "app", None), *getattr(args, "apps", [])]:  # a typo is answered at once
        if name:
            _known(name, apps)
    if getattr(args, "needs_tf", True):
        _quiet_tensorflow(args.verbose)
    start = time.monotonic()
    try:
        args.fn(args)
    except KeyboardInterrupt:
        raise SystemExit("interrupted: a `train` with the same --workdir resumes from its last backup") from None
    except Exception as err:  # noqa: BLE001 - a user's mistake is one line; --verbose shows the traceback
        if args.verbose or not _is_user_error(err):
            raise
        raise SystemExit(f"error: {_one_line(err)}") from None
    if args.command in ("train", "demo"):
        print(f"done in {time.monotonic() - start:.1f}s")
    return 0


def _is_user_error(err: Exception) -> bool:
    """Errors about what the user gave (files, values, inputs), as opposed to bugs."""
    if isinstance(err, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
                        ValueError, KeyError)):
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(err, (tf.errors.InvalidArgumentError, tf.errors.NotFoundError))


def _one_line(err: Exception) -> str:
    text = getattr(err, "message", None) or (err.args[0] if err.args else str(err))
    text = str(text).strip()
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(err, tf.errors.OpError):
        from core.serving.errors import readable_message

        # TF wraps the graph's own message (an assertion's text) in lines about where it ran.
        return " ".join(line.strip() for line in readable_message(text).splitlines()) or type(err).__name__
    return f"{text.splitlines()[0] if text else type(err).__name__}"


if __name__ == "__main__":
    sys.exit(main())
