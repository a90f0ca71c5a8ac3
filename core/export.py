"""Versioned, atomic SavedModel export with named endpoints, a model card and a reload check.

Layout (what TF Serving expects):

    saved_models/<app>/<version>/saved_model.pb, variables/, assets/
    saved_models/<app>/<version>/assets.extra/{config,metrics,data}.json   (the model card)
    saved_models/models.config                                              (model_config_list)

Each export is written to a hidden temporary folder beside the versions, checked by reloading it,
and only then renamed into place, so a server polling the folder never sees half a model.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

CARD_DIR = "assets.extra"
TPU_ALIAS_SUFFIX = "_tpu"
WARMUP_FILE = "tf_serving_warmup_requests"
DEFAULT_MAX_BATCH = 1024
MAX_BATCH_ENV = "CATALOGUE_MAX_BATCH"


def _not_unsaved_gradient_warning(record: logging.LogRecord) -> bool:
    # Exports leave custom gradients out on purpose (serving takes none): loading one warns once per function.
    return "with ops with unsaved custom gradients" not in record.getMessage()


logging.getLogger("absl").addFilter(_not_unsaved_gradient_warning)


class TpuAlias:
    """Marks an endpoint as a jit-compiled function on preprocessed tensors, saved as a SavedModel
    function alias for the Cloud TPU inference converter instead of a serving signature.

    Example:
        >>> endpoints = {"serving_default": serve, "classify_tpu": TpuAlias(jit_classify)}
    """

    def __init__(self, fn):
        self.fn = fn


def max_batch() -> int:
    """The most examples per call that exported signatures accept: CATALOGUE_MAX_BATCH when set at
    export time, else DEFAULT_MAX_BATCH."""
    raw = os.environ.get(MAX_BATCH_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BATCH
    value = int(raw) if raw.isdigit() else 0
    if value < 1:
        raise ValueError(f"{MAX_BATCH_ENV} must be a positive number of examples. Received: {MAX_BATCH_ENV}={raw!r}")
    return value


def exported_max_batch(version_dir: str | Path) -> int:
    """The batch limit a version was exported with (its card's serving.json; versions exported before it
    was recorded: this process's max_batch())."""
    path = Path(version_dir) / CARD_DIR / "serving.json"
    if not path.exists():
        return max_batch()
    return int(json.loads(path.read_text())["max_batch"])


def batched_inputs(fn) -> list[str]:
    """Names of the inputs whose first dimension `fn`'s input_signature leaves open (the batch); [] for
    anything that is not a tf.function with an input_signature."""
    python_fn, specs = getattr(fn, "python_function", None), getattr(fn, "input_signature", None)
    if python_fn is None or specs is None:
        return []
    return [n for n, spec in zip(inspect.signature(python_fn).parameters, specs)
            if spec.shape.rank and spec.shape[0] is None]


def limit_batch(fn, limit: int):
    """`fn` (a tf.function with an input_signature) refusing, before any of its own work, a call whose
    batched inputs (first dimension left open) hold more than `limit` examples: the limit then holds
    wherever the export is served (TF Serving included), not only behind `catalogue serve`."""
    if getattr(fn, "batch_limit", None) == limit:
        return fn
    fn = getattr(fn, "unlimited", fn)  # a different limit re-wraps the original, never the wrapper
    batched = batched_inputs(fn)
    if not batched:
        return fn
    python_fn, specs = fn.python_function, fn.input_signature

    @functools.wraps(python_fn)
    def checked(*args, **kwargs):
        given = inspect.signature(python_fn).bind(*args, **kwargs).arguments
        checks = [tf.debugging.Assert(tf.shape(given[n])[0] <= limit, [
            f"Input {n} holds", tf.shape(given[n])[0], f"examples; this model takes at most {limit} per "
            f"request ({MAX_BATCH_ENV} when exporting): send them in several requests"]) for n in batched if n in given]
        with tf.control_dependencies(checks):
            return python_fn(*args, **kwargs)

    limited = tf.function(checked, input_signature=specs)
    limited.batch_limit, limited.unlimited = limit, fn
    return limited


def trim_requests(endpoints: Mapping[str, object], requests: Mapping[str, Mapping[str, object]],
                  limit: int) -> dict[str, dict[str, object]]:
    """Example requests cut to the first `limit` examples of each batched input (first dimension open in
    the endpoint's input_signature), so export checks and warmup records pass a small batch limit."""
    trimmed = {}
    for name, inputs in requests.items():
        batched = batched_inputs(endpoints.get(name))
        trimmed[name] = {k: v[:limit] if k in batched else v for k, v in inputs.items()}
    return trimmed


def split_endpoints(endpoints: Mapping[str, object]) -> tuple[dict, dict]:
    """(signatures, TPU aliases) of an app's endpoints."""
    signatures = {k: v for k, v in endpoints.items() if not isinstance(v, TpuAlias)}
    aliases = {k: v.fn for k, v in endpoints.items() if isinstance(v, TpuAlias)}
    return signatures, aliases


def versions(model_dir: str | Path) -> list[int]:
    """Integer version folders under `model_dir`, ascending (hidden temp folders ignored)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version_dir(model_dir: str | Path) -> Path:
    """The newest version folder of an exported model, or a clear error."""
    found = versions(model_dir)
    if not found:
        raise FileNotFoundError(f"No exported versions (integer folders) under {str(model_dir)!r}")
    return Path(model_dir) / str(found[-1])


def resolve_saved_model(path: str | Path) -> Path:
    """Accepts a version folder or a model folder (takes its latest version)."""
    path = Path(path)
    if (path / "saved_model.pb").exists():
        return path
    return latest_version_dir(path)


def rename_into_version(folder: Path, model_dir: Path, version: int) -> Path:
    """Renames a finished folder to `model_dir/<version>` atomically; when another exporter took that
    number meanwhile, to the next free one."""
    while True:
        final = model_dir / str(version)
        try:
            os.rename(folder, final)
            return final
        except OSError:
            if not final.exists():
                raise
            version += 1


def export_endpoints(out_dir: str | Path, app: str, *, trackables: list,
                     endpoints: Mapping[str, tf.types.experimental.GenericFunction],
                     check: Callable[[Path, Mapping[str, Callable]], None] | None = None,
                     card: Mapping[str, object] | None = None,
                     warmup_requests: Mapping[str, Mapping[str, object]] | None = None) -> Path:
    """Writes `saved_models/<app>/<next version>/` atomically and updates models.config.

    Args:
        out_dir: the export root (`saved_models`).
        app: the model name TF Serving will serve it under.
        trackables: Keras models/layers whose variables and lookup tables the endpoints use.
        endpoints: signature name -> tf.function with an input_signature (TpuAlias values become
            function aliases). The first one is also `serving_default` unless one is named so.
        check: called with the temporary folder and the functions saved there (signature name ->
            callable taking the signature's inputs as keywords) before the folder is renamed into
            place; raises to abort.
        card: JSON-serialisable model-card files: {"config": {...}, "metrics": {...}, ...}.
        warmup_requests: signature name -> inputs, written as assets.extra/tf_serving_warmup_requests
            so that a server traces every signature at load, not on the first user's request.
    """
    endpoints, tpu_aliases = split_endpoints(endpoints)
    limit = max_batch()
    endpoints = {name: limit_batch(fn, limit) for name, fn in endpoints.items()}
    model_dir = Path(out_dir) / app
    model_dir.mkdir(parents=True, exist_ok=True)
    version = (versions(model_dir) or [0])[-1] + 1
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    options = save_options(tpu_aliases)
    try:
        archive = keras.export.ExportArchive()
        for obj in trackables:
            archive.track(obj)
        saved = {}
        for name, fn in endpoints.items():
            if _tensor_defaults(fn):
                # Keras saves the traced concrete function, which drops Python default arguments.
                # Handing SavedModel the tf.function itself records tensor defaults in the
                # SignatureDef (PlaceholderWithDefault inputs), so TF Serving clients may omit them.
                archive.add_endpoint(name, fn)
                archive._endpoint_signatures[name] = fn.input_signature
                saved[name] = fn
            else:
                saved[name] = _add_traced_once(archive, name, fn, options)
        if tpu_aliases:
            # Aliases must name functions saved on the root object; ExportArchive keeps no public
            # handle on it, and adding them as endpoints would make them serving signatures.
            for name, fn in tpu_aliases.items():
                setattr(archive._tf_trackable, name, fn)
        target = tmp / "model"
        archive.write_out(str(target), options=options, verbose=False)
        # The batch limit travels with the version: clients (predict_exported) split long requests by it.
        for name, content in {**(card or {}), "serving": {"max_batch": limit}}.items():
            (target / CARD_DIR).mkdir(exist_ok=True)
            (target / CARD_DIR / f"{name}.json").write_text(
                json.dumps(content, indent=2, sort_keys=True, default=str) + "\n")
        if warmup_requests:
            write_warmup_requests(target / CARD_DIR / WARMUP_FILE, app, warmup_requests)
        if check is not None:
            check(target, saved)
        final = rename_into_version(target, model_dir, version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_models_config(out_dir)
    return final


def save_options(function_aliases: Mapping[str, object] | None = None) -> tf.saved_model.SaveOptions:
    # Serving takes no gradients: tracing the gradient of every custom-gradient op would add seconds.
    return tf.saved_model.SaveOptions(function_aliases=dict(function_aliases) if function_aliases else None,
                                      experimental_custom_gradients=False)


def traced_for_saving(fn, options: tf.saved_model.SaveOptions | None = None):
    """The concrete function of `fn` (a tf.function with an input_signature) that a SavedModel written
    with `options` saves. TensorFlow keys a tf.function's traces on whether a SavedModel is being written
    (its variable policy): a function called live and then saved is traced twice, unless both take this one."""
    from tensorflow.python.saved_model import save_context

    with save_context.save_context(options or save_options()):
        return fn.get_concrete_function()


class TracedOnce:
    """An endpoint (a tf.function with an input_signature, no tensor defaults) whose live calls run the
    trace its export saves, so predicting, exporting and checking the export trace it once, not twice
    (seconds for each endpoint that holds a model). Its attributes are the tf.function's."""

    def __init__(self, fn):
        self.function = fn
        self._concrete = None

    def __call__(self, *args, **kwargs):
        if self._concrete is None:
            self._concrete = traced_for_saving(self.function)
        return self._concrete(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.function, name)


def traced_once(fn):
    """`fn` as a TracedOnce where that applies: a tf.function with an input_signature whose arguments
    have no tensor defaults (a concrete function takes every input; those keep the tf.function)."""
    if isinstance(fn, TracedOnce) or _tensor_defaults(fn) or getattr(fn, "input_signature", None) is None:
        return fn
    return TracedOnce(fn)


def _add_traced_once(archive, name: str, fn, options):
    """Adds `fn` to the archive as the concrete function SavedModel will save, traced once (the one
    its live calls ran if it is a TracedOnce); the reload check calls that same function. Returns it."""
    concrete = traced_for_saving(fn, options)
    setattr(archive._tf_trackable, name, concrete)
    archive._endpoint_names.append(name)
    archive._endpoint_signatures[name] = fn.input_signature  # _get_concrete_fn then returns the attribute
    return concrete


def write_warmup_requests(path: Path, app: str, requests: Mapping[str, Mapping[str, object]]) -> None:
    """TF Serving's warmup file: a TFRecord of PredictionLog protos, one per signature."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=app, signature_name=signature))
            for key, value in inputs.items():
                array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
                request.inputs[key].CopyFrom(tf.make_tensor_proto(array))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def read_warmup_requests(version_dir: str | Path) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(signature, inputs) of each record in a version's warmup file; [] when it has none."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(version_dir) / CARD_DIR / WARMUP_FILE
    if not path.exists():
        return []
    out = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        out.append((request.model_spec.signature_name or "serving_default",
                    {k: tf.make_ndarray(v) for k, v in request.inputs.items()}))
    return out


def _tensor_defaults(fn) -> bool:
    """True for a tf.function with an input_signature and tf.Tensor default arguments."""
    if getattr(fn, "input_signature", None) is None or not hasattr(fn, "python_function"):
        return False
    params = inspect.signature(fn.python_function).parameters.values()
    return any(isinstance(p.default, tf.Tensor) for p in params)


def write_models_config(out_dir: str | Path) -> Path:
    """Rewrites `<out_dir>/models.config` listing every exported app (TF Serving text format)."""
    out_dir = Path(out_dir)
    names = sorted(p.name for p in out_dir.iterdir() if p.is_dir() and versions(p)) if out_dir.is_dir() else []
    entries = []
    for name in names:
        entries.append(
            "  config {\n"
            f"    name: \"{name}\"\n"
            # Relative base paths resolve against the server's working dir; TF Serving wants absolute.
            f"    base_path: \"{(out_dir / name).resolve()}\"\n"
            "    model_platform: \"tensorflow\"\n"
            "    model_version_policy { latest { num_versions: 1 } }\n"
            "  }\n")
    path = out_dir / "models.config"
    tmp = path.with_suffix(".config.tmp")
    tmp.write_text("model_config_list {\n" + "".join(entries) + "}\n")
    tmp.replace(path)
    return path


def run_model(model, inputs, **kwargs):
    """model(inputs, training=False) for a request batch, including a batch of zero examples.

    TF's fused BatchNorm kernels on CPU reject a batch of size 0 ("Incompatible shapes: [C] vs.
    [0,H,W,C]"), so an empty request would fail inside the model. One zero example is appended to an
    empty batch (nothing is added otherwise) and every output keeps only the real rows.
    """
    rows = tf.shape(tf.nest.flatten(inputs)[0])[0]
    extra = tf.maximum(1 - rows, 0)

    def pad(t):  # concat, not tf.pad: it keeps the static shape of the other dimensions
        return tf.concat([t, tf.zeros(tf.concat([[extra], tf.shape(t)[1:]], axis=0), t.dtype)], axis=0)

    outputs = model(tf.nest.map_structure(pad, inputs), training=False, **kwargs)
    return tf.nest.map_structure(lambda t: t[:rows], outputs)


def call_signature(loaded, name: str, inputs: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Calls a signature of a loaded SavedModel with numpy/python inputs; returns numpy outputs."""
    if name not in loaded.signatures:
        raise KeyError(f"No signature {name!r}. Available: {sorted(loaded.signatures)}")
    fn = loaded.signatures[name]
    specs = fn.structured_input_signature[1]
    feeds = {k: tf.convert_to_tensor(v, dtype=specs[k].dtype) for k, v in inputs.items()}
    return {k: v.numpy() for k, v in fn(**feeds).items()}


def assert_outputs_match(expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray],
                         *, atol: float = 1e-4, rtol: float = 1e-4, context: str = "") -> None:
    """Raises AssertionError naming the first output that differs (exact for strings and ints)."""
    if set(expected) != set(actual):
        raise AssertionError(f"{context}: output names differ: {sorted(expected)} vs {sorted(actual)}")
    for key in expected:
        a, b = np.asarray(expected[key]), np.asarray(actual[key])
        if a.shape != b.shape:
            raise AssertionError(f"{context}: output {key!r} shape {a.shape} != {b.shape}")
        if a.dtype.kind in "fc":
            if not np.allclose(a, b, atol=atol, rtol=rtol):
                raise AssertionError(f"{context}: output {key!r} differs; max abs diff "
                                     f"{np.max(np.abs(a - b))}")
        elif not np.array_equal(a, b):
            raise AssertionError(f"{context}: output {key!r} differs: {a!r} vs {b!r}")
