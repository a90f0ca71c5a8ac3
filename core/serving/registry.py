"""Loaded models: which versions exist, which are served, and picking up new ones by polling.

The registry mirrors what tensorflow_model_server does with a model_config_list:

- each model's versions are the integer-named folders under its base_path that hold a
  saved_model.pb (exports are renamed into place atomically; hidden `.tmp-*` folders and folders
  still missing their saved_model.pb are never touched);
- the version policy (latest N, all, specific) picks the versions to serve;
- new versions are loaded before old ones are dropped, so a reload never leaves a gap. A version
  that fails to load is reported (state END with the error) and the previous one keeps serving;
- models.config itself is re-read when it changes, adding and removing models.

Requests hold a reference to the `Servable` they resolved, so dropping a version while a request
runs on it is safe. Model names from requests are only ever dictionary keys, never paths.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from tensorflow_serving.apis import get_model_status_pb2

from core.serving import errors
from core.serving.config import ConfigError, ModelEntry, batching_problems, load_model_config

log = logging.getLogger("core.serving")

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
MAX_LOAD_ATTEMPTS = 3
KEEP_ENDED = 8  # unloaded/failed versions remembered per model for the status API

State = get_model_status_pb2.ModelVersionStatus.State


class Servable:
    """One loaded SavedModel version: its signature defs (for metadata) and callable signatures."""

    def __init__(self, name: str, version: int, path: Path):
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.name, self.version, self.path = name, version, Path(path)
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((self.path / "saved_model.pb").read_bytes())
        graphs = [g for g in proto.meta_graphs if SERVE_TAG in g.meta_info_def.tags]
        if not graphs:
            raise ValueError(f"{self.path} has no MetaGraph tagged {SERVE_TAG!r}")
        # Everything TF Serving lists in metadata (including __saved_model_init_op).
        self.signature_defs = dict(graphs[0].signature_def)
        with _LOAD_LOCK:
            before = set(_gradient_registrations())
            self._loaded = tf.saved_model.load(str(self.path), tags=[SERVE_TAG])
            _forget_loaded_gradients(before)
        self.signatures = dict(self._loaded.signatures)
        # name -> {input key: tf.TensorSpec}, from the concrete functions themselves.
        self.input_specs = {k: dict(fn.structured_input_signature[1]) for k, fn in self.signatures.items()}
        # name -> {input key: value} for inputs a request may leave out (SignatureDef defaults).
        self.input_defaults = {k: {key: tf.make_ndarray(t) for key, t in self.signature_defs[k].defaults.items()}
                               for k in self.signatures if k in self.signature_defs}
        self.output_keys = {k: sorted(fn.structured_outputs) for k, fn in self.signatures.items()}
        self.warmed_up = self._warm_up()

    def _warm_up(self) -> int:
        """Replays assets.extra/tf_serving_warmup_requests as TF Serving does: the first user request
        then does not pay for tracing, and a version whose warmup fails does not become available."""
        import tensorflow as tf

        from core.export import read_warmup_requests

        records = read_warmup_requests(self.path)
        for signature, inputs in records:
            if signature not in self.signatures:
                raise ValueError(f"warmup request for unknown signature {signature!r} in {self.path}")
            self.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        return len(records)

    def signature(self, name: str):
        """(resolved name, concrete function) or INVALID_ARGUMENT as TF Serving words it."""
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise errors.invalid(f"Serving signature name: \"{name}\" not found in signature def")
        return name, self.signatures[name]


_LOAD_LOCK = threading.Lock()


def _gradient_registrations() -> dict:
    """TF's global registry of gradient functions (name -> entry); {} if this TF has none."""
    from tensorflow.python.framework import ops

    return getattr(getattr(ops, "_gradient_registry", None), "_registry", {})


def _forget_loaded_gradients(before: set) -> int:
    """Unregisters the custom gradients that tf.saved_model.load just registered.

    The loader registers each custom gradient of a SavedModel (Keras layers have some) globally, and
    the registration holds the restored functions and, through them, the whole function library:
    a model with custom gradients was never freed, +61 MB per reload for a smoke colorize export.
    Serving computes no gradients, so they go at once.
    """
    registry = _gradient_registrations()
    dropped = 0
    for name in set(registry) - before:
        candidate = registry[name].get("type") if isinstance(registry[name], dict) else None
        if getattr(candidate, "__module__", "").endswith("function_deserialization"):
            del registry[name]
            dropped += 1
    return dropped


def release_memory() -> None:
    """Collects unloaded models (TF objects form reference cycles) and hands the freed heap back to
    the system: without malloc_trim glibc kept ~3 MB per reload of a small export."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


class _Version:
    __slots__ = ("version", "state", "error_code", "error", "servable", "attempts", "stamp", "changed")

    def __init__(self, version: int):
        self.version = version
        self.state = State.START
        self.error_code, self.error = "OK", ""
        self.servable: Servable | None = None
        self.attempts = 0
        self.stamp = None  # saved_model.pb's (mtime, size) at the last load attempt
        self.changed = time.monotonic()

    def set(self, state, code: str = "OK", message: str = "") -> None:
        self.state, self.error_code, self.error = state, code, message
        self.changed = time.monotonic()


class _Model:
    def __init__(self, entry: ModelEntry):
        self.entry = entry
        self.versions: dict[int, _Version] = {}


def version_dirs(base_path: Path) -> dict[int, Path]:
    """Integer version folders that hold a saved_model.pb; everything else (hidden temporary
    folders, half-copied folders, files) is ignored."""
    found = {}
    try:
        children = list(Path(base_path).iterdir())
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return found
    for child in children:
        if child.name.isdigit() and child.is_dir() and (child / "saved_model.pb").is_file():
            found[int(child.name)] = child
    return found


def _stamp(path: Path):
    """Size and mtime of saved_model.pb and the variables: a failed load is retried once they change."""
    stamp = []
    try:
        for file in [path / "saved_model.pb", *sorted((path / "variables").glob("*"))]:
            st = file.stat()
            stamp.append((file.name, st.st_size, st.st_mtime_ns))
    except OSError:
        return None
    return tuple(stamp)


class ModelRegistry:
    """The set of served models, refreshed from models.config and the file system.

    Args:
        config_path: the models.config (ModelServerConfig text proto).
        poll_seconds: how often to look for new versions and config changes (<= 0: never).
        loader: builds a Servable (name, version, path); tests can substitute it.
    """

    def __init__(self, config_path: str | Path, *, poll_seconds: float = 2.0, loader=Servable):
        self.config_path = Path(config_path)
        self.poll_seconds = poll_seconds
        self._loader = loader
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()  # one refresh at a time
        self._release_rounds = 0  # refreshes that still return unloaded versions' memory
        self._models: dict[str, _Model] = {}
        self._config_stamp = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------
    # Lookups (any thread).

    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable for a request, or NOT_FOUND / INVALID_ARGUMENT worded as TF Serving does."""
        with self._lock:
            model = self._models.get(name)
            if label:
                labels = model.entry.label_map if model else {}
                if label not in labels:
                    raise errors.invalid(f"Unrecognized servable version label: {label}")
                version = labels[label]
            available = {} if model is None else {
                v: s.servable for v, s in model.versions.items() if s.state == State.AVAILABLE}
        if version is None:
            if not available:
                raise errors.not_found(f"Servable not found for request: Latest({name})")
            return available[max(available)]
        if version not in available:
            raise errors.not_found(f"Servable not found for request: Specific({name}, {version})")
        return available[version]

    def status(self, name: str, version: int | None = None, label: str | None = None):
        """A GetModelStatusResponse for a model (all known versions) or one version."""
        with self._lock:
            model = self._models.get(name)
            if label:
                labels = model.entry.label_map if model else {}
                if label not in labels:
                    raise errors.invalid(f"Unrecognized servable version label: {label}")
                version = labels[label]
            if model is None or not model.versions:
                raise errors.not_found(f"Could not find any versions of model {name}")
            if version is not None and version not in model.versions:
                raise errors.not_found(f"Could not find version {version} of model {name}")
            chosen = [model.versions[version]] if version is not None else \
                [model.versions[v] for v in sorted(model.versions, reverse=True)]
            response = get_model_status_pb2.GetModelStatusResponse()
            for v in chosen:
                entry = response.model_version_status.add(version=v.version, state=v.state)
                entry.status.error_code = _error_code_number(v.error_code)
                entry.status.error_message = v.error
        return response

    def describe(self) -> dict[str, dict[int, str]]:
        """{model: {version: state name}}, for logs and tests."""
        with self._lock:
            return {n: {v: State.Name(s.state) for v, s in sorted(m.versions.items())}
                    for n, m in sorted(self._models.items())}

    # ------------------------------------------------------------------------------------------
    # Refreshing (the polling thread, or a caller).

    def refresh(self) -> None:
        """Re-reads models.config if it changed, then loads/unloads versions per policy."""
        with self._poll_lock:
            self._refresh_config()
            with self._lock:
                models = list(self._models.values())
            for model in models:
                self._refresh_model(model)
            if self._release_rounds:
                self._release_rounds -= 1
                release_memory()

    def start(self) -> None:
        """Loads what is there now (raises ConfigError for a bad config), then polls in a thread."""
        self._config_stamp = None
        self._refresh_config(strict=True)
        self.refresh()
        if self.poll_seconds and self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the poller must survive anything and try again
                log.exception("model refresh failed; retrying in %.1fs", self.poll_seconds)

    def _refresh_config(self, strict: bool = False) -> None:
        try:
            st = self.config_path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._config_stamp and not strict:
            return
        try:
            entries = load_model_config(self.config_path)
        except ConfigError as err:
            if strict:
                raise
            log.error("%s; keeping the previous model list", err)
            self._config_stamp = stamp
            return
        self._config_stamp = stamp
        with self._lock:
            old = self._models
            new = {}
            for entry in entries:
                model = old.get(entry.name)
                if model is None or model.entry.base_path != entry.base_path:
                    model = _Model(entry)
                    log.info("model %s: serving from %s (policy: %s)", entry.name, entry.base_path,
                             entry.policy.describe())
                model.entry = entry
                new[entry.name] = model
            for name in set(old) - set(new):
                log.info("model %s: removed from %s; unloading", name, self.config_path)
            self._models = new

    def _refresh_model(self, model: _Model) -> None:
        entry = model.entry
        on_disk = version_dirs(entry.base_path)
        wanted = entry.policy.select(sorted(on_disk))
        # 1. Load wanted versions that are not loaded yet (newest first).
        for v in sorted(wanted, reverse=True):
            with self._lock:
                state = model.versions.get(v)
                if state is None:
                    state = model.versions[v] = _Version(v)
            if state.state == State.AVAILABLE:
                continue
            stamp = _stamp(on_disk[v])
            if state.attempts and stamp == state.stamp and state.attempts >= MAX_LOAD_ATTEMPTS:
                continue  # failed too often on these very files; retried once they change
            if state.attempts and stamp != state.stamp:
                state.attempts = 0
            self._load(model, state, on_disk[v], stamp)
        # 2. Drop versions no longer wanted, once a wanted one serves (or they left the disk).
        with self._lock:
            serving_wanted = any(model.versions[v].state == State.AVAILABLE
                                 for v in wanted if v in model.versions)
            for v, state in list(model.versions.items()):
                if v in wanted:
                    continue
                if state.state == State.AVAILABLE and (serving_wanted or v not in on_disk):
                    state.set(State.UNLOADING)
                    state.servable = None  # in-flight requests keep their own reference
                    state.set(State.END)
                    # Now, and once more after the requests still running on it are likely done.
                    self._release_rounds = 2
                    log.info("model %s: unloaded version %d", entry.name, v)
                elif state.state in (State.START, State.LOADING):
                    state.set(State.END)
            ended = sorted(v for v, s in model.versions.items() if s.state == State.END and v not in wanted)
            for v in ended[:-KEEP_ENDED] if len(ended) > KEEP_ENDED else []:
                del model.versions[v]

    def _load(self, model: _Model, state: _Version, path: Path, stamp) -> None:
        name = model.entry.name
        with self._lock:
            state.set(State.LOADING)
        state.attempts += 1
        state.stamp = stamp
        started = time.monotonic()
        try:
            servable = self._loader(name, state.version, path)
        except Exception as err:  # noqa: BLE001 - a broken export must not stop the server
            failure = errors.from_exception(err)
            code = failure.code if failure.code != "INTERNAL" else "UNKNOWN"
            with self._lock:
                state.set(State.END, code, f"Failed to load {path}: {failure.message}")
            log.error("model %s: version %d failed to load (attempt %d): %s", name, state.version,
                      state.attempts, failure.message)
            return
        with self._lock:
            state.servable = servable
            state.set(State.AVAILABLE)
        log.info("model %s: version %d available (loaded in %.1fs)", name, state.version,
                 time.monotonic() - started)
        problems = batching_problems(getattr(servable, "signature_defs", {}))
        if problems:
            log.warning("model %s: version %d cannot be batched by tensorflow_model_server "
                        "--enable_batching (make serve-docker): %s", name, state.version, "; ".join(problems))


def _error_code_number(name: str) -> int:
    from tensorflow.core.protobuf import error_codes_pb2

    return error_codes_pb2.Code.Value(name)
