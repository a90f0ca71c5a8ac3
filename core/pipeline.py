"""The Pipeline base class: the contract every app fulfils.

    p = registry.apps()["image_classification"](Config.preset("demo"))
    splits = p.datasets()          # train / val / test tf.data (unbatched), deterministic for a seed
    model = p.build_model()
    p.fit()                        # resumable; writes workdir/{checkpoints,logs,metrics.json,config.json}
    p.evaluate()                   # the app's task metric on the test split
    path = p.export("saved_models")
    p.predict([raw_input, ...])    # same answers as the exported endpoint

An app writes the hooks below, in the order data flows. Optional concerns live elsewhere: the bench
(presets on real data, bars, anchors) in the app's bench.py, TPU aliases among its endpoints
(core.export.TpuAlias).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from core import export as export_lib
from core import hub, training
from core.config import BaseConfig
from core.data import Splits
from core.distribute import get_strategy, is_chief, set_precision
from core.schedules import BudgetClock, BudgetedCosine


@dataclasses.dataclass
class Phase:
    """One stage of training; `Pipeline.fit` runs an app's phases in list order.

    Args:
        name: "train" for the main phase (its files go in the workdir, its result is fit()'s result);
            any other phase writes under workdir/<name>.
        prepare: called with the model before the phase: sets what is trainable and compiles.
            Default: the app's `compile_model`.
        run: custom training, `run(model, splits, workdir) -> result dict`, for a phase that fits a
            part of the model on data of its own. Default: the standard fit of `training_data`.
        epochs: epochs of the standard fit (default: the config's).
        budgeted: whether the config's time budget bounds the standard fit.
    """

    name: str = "train"
    prepare: Callable[[keras.Model], None] | None = None
    run: Callable[[keras.Model, Splits, Path], dict] | None = None
    epochs: int | None = None
    budgeted: bool = True


class Pipeline:
    """Data -> model -> fit -> evaluate -> export -> predict for one application.

    Args:
        config: the app's Config; defaults to its `demo` preset.
        workdir: where checkpoints, logs, config.json, state.json and metrics.json go.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[BaseConfig]] = BaseConfig
    monitor: ClassVar[str] = "val_loss"
    monitor_mode: ClassVar[str] = "min"

    def __init__(self, config: BaseConfig | None = None, workdir: str | Path | None = None):
        self.config = config if config is not None else self.config_class.preset("demo")
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__qualname__}. "
                            f"Received: {type(self.config).__qualname__}")
        self.workdir = Path(workdir or Path("runs") / self.name)
        # JSON-serialisable facts learned from the data that the model needs to be rebuilt
        # (class names, vocabularies). Saved to workdir/state.json beside the weights.
        self.state: dict[str, Any] = {}
        self.model: keras.Model | None = None
        self.strategy: tf.distribute.Strategy | None = None
        self._splits: Splits | None = None
        self._endpoints: dict | None = None
        self._verified_export: tuple[Path, Any] | None = None  # (version folder, the model export() reloaded)
        # Schedules from cosine_learning_rate(); fit() feeds each the clock if budget_ends_schedule.
        self._budgeted_schedules: list[BudgetedCosine] = []

    # ------------------------------------------------------------------------------------------
    # App hooks, in the order data flows.

    def load_data(self) -> Splits:
        """Unbatched train/val/test datasets; fills `self.state` with what the model needs."""
        raise NotImplementedError

    def make_model(self) -> keras.Model:
        """The uncompiled model for `self.config` and `self.state` (calls model.build_model)."""
        raise NotImplementedError

    def compile_model(self, model: keras.Model) -> None:
        """Optimizer, loss and training metrics."""
        raise NotImplementedError

    def training_data(self, splits: Splits) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
        """Batched (inputs, targets) for training and validation, using global_batch_size."""
        raise NotImplementedError

    def compute_metrics(self, test: tf.data.Dataset) -> dict[str, float]:
        """The task metric(s) on the (unbatched) test split."""
        raise NotImplementedError

    def make_endpoints(self) -> dict[str, Any]:
        """Signature name -> tf.function (with input_signature) over self.model; TpuAlias values are
        saved as function aliases instead of signatures."""
        raise NotImplementedError

    def encode_request(self, raw_inputs: Sequence[Any]) -> dict[str, Any]:
        """Raw inputs (paths, bytes, strings) -> serving_default's input tensors."""
        raise NotImplementedError

    def decode_response(self, outputs: Mapping[str, np.ndarray]) -> list[Any]:
        """serving_default's outputs -> one readable answer per input."""
        raise NotImplementedError

    def sample_inputs(self, n: int = 4) -> list[Any]:
        """`n` raw inputs from the test split (bytes or strings): checks, demo, warmup requests."""
        raise NotImplementedError

    # Optional hooks.

    def phases(self) -> list[Phase]:
        """The stages of training (e.g. a head alone, then fine-tuning); default one standard phase."""
        return [Phase()]

    def extra_callbacks(self) -> list[keras.callbacks.Callback]:
        """Callbacks beyond the standard set (e.g. writing samples)."""
        return []

    def example_requests(self) -> dict[str, dict[str, Any]]:
        """Inputs for every signature: export checks, TF Serving warmup records, tests."""
        return {"serving_default": self.encode_request(self.sample_inputs(4))}

    def trackables(self) -> list:
        """Objects the export must track beside the model (e.g. lookup layers used only in serving)."""
        return []

    def encoders(self) -> dict[str, hub.Encoder]:
        """Trained parts other apps can start from (name -> core.hub.Encoder), for `export_hub`."""
        return {}

    # ------------------------------------------------------------------------------------------
    # The shared contract.

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    @property
    def global_batch_size(self) -> int:
        return self.config.batch_size * self.replicas

    @property
    def learning_rate(self) -> float:
        """Scaled linearly with the replica count, as the global batch grows with it."""
        scale = self.replicas if self.config.scale_lr_with_replicas else 1
        return self.config.learning_rate * scale

    def cosine_learning_rate(self, total_steps: int | None = None, warmup_steps: int = 0,
                             min_fraction: float = 0.0, scale: float = 1.0,
                             epochs: int | None = None) -> BudgetedCosine:
        """The (replica-scaled) learning rate times `scale` after a linear warmup, decayed along a cosine.

        The decay ends after `total_steps` (default: `epochs`, else the config's, times the steps of one
        epoch, from `steps_per_epoch` or the training split's size in `info["sizes"]["train"]`), so the last steps
        settle instead of bouncing between minima; with `budget_ends_schedule` also when the config's
        time budget runs out, whichever comes first (fit() feeds it the clock).
        """
        cfg = self.config
        if total_steps is None:
            train_size = self.datasets().info.get("sizes", {}).get("train", 1000)
            per_epoch = cfg.steps_per_epoch or -(-train_size // self.global_batch_size)
            total_steps = (epochs or cfg.epochs) * per_epoch
        schedule = BudgetedCosine(self.learning_rate * scale, max(total_steps, 1), warmup_steps, min_fraction)
        self._budgeted_schedules.append(schedule)
        return schedule

    def datasets(self) -> Splits:
        if self._splits is None:
            self._splits = self.load_data()
        return self._splits

    def build_model(self) -> keras.Model:
        """Builds a fresh (untrained) model; needs the state learned from the data."""
        if not self.state:
            self.datasets()
        return self.make_model()

    def fit(self) -> dict:
        """Trains every phase under the configured strategy; resumes an interrupted run where it stopped.

        A finished phase leaves its weights and result in workdir/phases/, so a restarted run skips it;
        the phase that was interrupted resumes from its backup. Returns the main phase's result with
        the other phases' results under "phases".
        """
        cfg = self.config
        # The strategy first: MultiWorkerMirroredStrategy must configure collectives before any op runs.
        self.strategy = get_strategy(cfg.strategy)
        training.set_seed(cfg.seed)
        policy = set_precision(cfg.precision, self.strategy)
        splits = self.datasets()
        self._budgeted_schedules = []
        with self.strategy.scope():
            model = self.build_model()
        self.model = model
        self._endpoints = None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.save_config()
        done_dir = self.workdir / "phases"
        results: dict[str, dict] = {}
        for phase in self.phases():
            marker = done_dir / f"{phase.name}.json"
            if marker.exists():  # finished before an interruption: its weights carry on
                results[phase.name] = json.loads(marker.read_text())
                model.load_weights(str(done_dir / f"{phase.name}.weights.h5"))
                continue
            results[phase.name] = self._fit_phase(phase, model, splits)
            if is_chief():
                done_dir.mkdir(parents=True, exist_ok=True)
                model.save_weights(str(done_dir / f"{phase.name}.weights.h5"))
                training.update_json(marker, **results[phase.name])
        # Exports and the CLI need float32 outputs and a plain policy, whatever training used.
        keras.mixed_precision.set_global_policy("float32")
        result = dict(results.pop("train", {}))
        result.update(precision_policy=policy, replicas=self.replicas, data=splits.info)
        if results:
            result["phases"] = results
        if is_chief():
            self.save()
            training.update_json(self.workdir / "metrics.json", fit=result)
            for path in done_dir.glob("*"):  # the run is complete: a new fit() starts afresh
                path.unlink()
        return result

    def _fit_phase(self, phase: Phase, model: keras.Model, splits: Splits) -> dict:
        cfg = self.config
        workdir = self.workdir if phase.name == "train" else self.workdir / phase.name
        self._budgeted_schedules = []
        with self.strategy.scope():
            (phase.prepare or self.compile_model)(model)
            if phase.run is not None:
                return phase.run(model, splits, workdir)
        config = cfg.replace(epochs=phase.epochs if phase.epochs is not None else cfg.epochs,
                             time_budget_s=cfg.time_budget_s if phase.budgeted else 0.0)
        train, val = self.training_data(splits)
        train = training.shard_by_data(train)
        steps = cfg.steps_per_epoch or None
        if steps:
            train = train.repeat()
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return training.fit_multiworker(model, train, val, config=config, strategy=self.strategy,
                                            workdir=workdir, steps_per_epoch=steps, write_files=is_chief())
        clocks = [BudgetClock(s, config.time_budget_s) for s in self._budgeted_schedules] \
            if cfg.budget_ends_schedule else []
        return training.fit_model(
            model, train, val, config=config, workdir=workdir, monitor=self.monitor, mode=self.monitor_mode,
            extra_callbacks=self.extra_callbacks() + clocks, steps_per_epoch=steps,
            batch_size=self.global_batch_size)

    def save(self) -> None:
        """Weights, config and state to the workdir (what `from_workdir` needs)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.save_config()
        (self.workdir / "state.json").write_text(json.dumps(self.state, indent=1) + "\n")
        self.model.save_weights(str(self.workdir / "model.weights.h5"))

    def save_config(self) -> None:
        self.config.to_json(self.workdir / "config.json")

    @classmethod
    def from_workdir(cls, workdir: str | Path) -> Pipeline:
        """Rebuilds a trained pipeline from what `fit()` wrote."""
        workdir = Path(workdir)
        weights = workdir / "model.weights.h5"
        if not weights.exists():
            raise FileNotFoundError(f"No trained model in {str(workdir)!r} (missing {weights.name}); "
                                    f"run `catalogue train {cls.name} --workdir {workdir}` first.")
        p = cls(cls.config_class.from_json(workdir / "config.json"), workdir)
        p.state = json.loads((workdir / "state.json").read_text())
        p.model = p.make_model()
        p.model.load_weights(str(weights))
        return p

    def require_model(self) -> keras.Model:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__} has no model yet: call fit() or from_workdir().")
        return self.model

    def evaluate(self) -> dict[str, float]:
        """The task metric(s) on the test split; also written to workdir/metrics.json."""
        self.require_model()
        metrics = {k: float(v) for k, v in self.compute_metrics(self.datasets().test).items()}
        if is_chief():
            training.update_json(self.workdir / "metrics.json", test=metrics)
        return metrics

    @property
    def endpoints(self) -> dict:
        if self._endpoints is None:
            self.require_model()
            self._endpoints = self.make_endpoints()
        # The functions export() saves, request-size limit included (as set now): one trace serves both.
        limit = export_lib.max_batch()
        self._endpoints = {name: export_lib.traced_once(export_lib.limit_batch(fn, limit))
                           for name, fn in self._endpoints.items()}
        return self._endpoints

    def predict(self, raw_inputs: Sequence[Any]) -> list[Any]:
        """Readable answers for raw inputs, through the same graph the export serves (in requests of at
        most the export's batch limit)."""
        serve = self.endpoints["serving_default"]
        return self._answer(lambda request: {k: v.numpy() for k, v in serve(**request).items()},
                            raw_inputs, export_lib.max_batch())

    def predict_exported(self, model_path: str | Path, raw_inputs: Sequence[Any]) -> list[Any]:
        """The same as predict(), answered by an exported SavedModel (version or model folder), in requests
        of at most the batch limit that version was exported with."""
        path = export_lib.resolve_saved_model(model_path)
        loaded = self.load_exported(path)
        return self._answer(lambda request: export_lib.call_signature(loaded, "serving_default", request),
                            raw_inputs, export_lib.exported_max_batch(path))

    def _answer(self, call, raw_inputs, limit: int) -> list[Any]:
        """Encodes raw inputs (one, or a sequence) in requests of at most `limit`, decodes call()'s outputs."""
        if isinstance(raw_inputs, (str, bytes)):
            raw_inputs = [raw_inputs]
        raw_inputs, answers = list(raw_inputs), []
        for start in range(0, max(len(raw_inputs), 1), limit):
            answers.extend(self.decode_response(call(self.encode_request(raw_inputs[start:start + limit]))))
        return answers

    def load_exported(self, model_path: str | Path):
        """The SavedModel at `model_path` (version or model folder), loaded; for the version this pipeline
        last exported, the copy export() reloaded to verify it (a second load would take seconds)."""
        path = export_lib.resolve_saved_model(model_path).resolve()
        if self._verified_export is not None and self._verified_export[0] == path:
            return self._verified_export[1]
        return tf.saved_model.load(str(path))

    def check_export(self, path: Path, requests: Mapping[str, Mapping[str, Any]] | None = None,
                     functions: Mapping[str, Any] | None = None):
        """Reloads the SavedModel at `path`, compares every endpoint with the live model (`functions`: the
        live functions export saved, by signature name; else the endpoints); -> the reloaded model."""
        loaded = tf.saved_model.load(str(path))
        functions = functions or self.endpoints
        for name, inputs in (requests or self.example_requests()).items():
            live = {k: v.numpy() for k, v in functions[name](**inputs).items()}
            exported = export_lib.call_signature(loaded, name, inputs)
            export_lib.assert_outputs_match(live, exported, context=f"{self.name}/{name}")
        return loaded

    def export(self, out_dir: str | Path = "saved_models") -> Path:
        """Exports a new version to `out_dir/<name>/<version>/`, verified by reloading it."""
        model = self.require_model()
        requests = export_lib.trim_requests(self.endpoints, self.example_requests(), export_lib.max_batch())
        metrics_path = self.workdir / "metrics.json"
        card = {
            "config": self.config.to_dict(),
            "metrics": json.loads(metrics_path.read_text()) if metrics_path.exists() else {},
            "data": {**(self._splits.info if self._splits is not None else {}), "state": self.state},
        }
        verified = []
        final = export_lib.export_endpoints(
            out_dir, self.name, trackables=[model, *self.trackables()], endpoints=self.endpoints,
            check=lambda path, saved: verified.append(self.check_export(path, requests, saved)), card=card,
            warmup_requests=requests)
        self._verified_export = (final.resolve(), verified[0])
        return final

    def export_hub(self, out_dir: str | Path = "saved_models") -> dict[str, Path]:
        """Publishes every encoder as a TF Hub module in `out_dir/hub/<app>/<encoder>/<version>/`.

        Other apps start from one with `backbone=hub:<that folder>` (its latest version) or
        `encoder=hub:<...>`; tensorflow_hub.load and hub.KerasLayer (tf-keras) load it too.
        """
        self.require_model()
        encoders = self.encoders()
        if not encoders:
            raise ValueError(f"{self.name} publishes no encoder as a hub module (its Pipeline.encoders() "
                             f"is empty). Received: app={self.name!r}")
        metrics_path = self.workdir / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        data = self._splits.info if self._splits is not None else metrics.get("fit", {}).get("data", {})
        card = {"app": self.name, "trained_on": data.get("source", self.config.data),
                "test_metrics": metrics.get("test", {}), "config": self.config.to_dict()}
        return {name: hub.publish(encoder, Path(out_dir) / "hub" / self.name / name,
                                  {**card, "encoder": name})
                for name, encoder in encoders.items()}
