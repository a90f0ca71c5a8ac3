"""The Pipeline base class: the contract every app fulfils.

    p = apps.APPS["image_classification"](Config.preset("demo"))
    splits = p.datasets()          # train / val / test tf.data (unbatched), deterministic for a seed
    model = p.build_model()
    p.fit()                        # resumable; writes workdir/{checkpoints,logs,metrics.json,config.json}
    p.evaluate()                   # the app's task metric on the test split
    path = p.export("saved_models")
    p.predict([raw_input, ...])    # same answers as the exported endpoint

An app implements the hooks marked "app hook" below; everything else is shared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from core import export as export_lib
from core import training
from core.config import BaseConfig
from core.data import Splits
from core.distribute import get_strategy, is_chief, set_precision
from core.schedules import BudgetClock, BudgetedCosine


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
    # What the app promises on its bench run, checked and reported by `make bench`: (metric, op, target),
    # op one of ">=", ">", "<=", "<"; target a number, or the name of another metric of the same
    # evaluation (a baseline measured under the same budget).
    quality_bars: ClassVar[tuple[tuple[str, str, float | str], ...]] = ()

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
        # Schedules from cosine_learning_rate(); fit() feeds each the clock if budget_ends_schedule.
        self._budgeted_schedules: list[BudgetedCosine] = []

    # ------------------------------------------------------------------------------------------
    # App hooks.

    def load_data(self) -> Splits:
        """App hook: unbatched train/val/test datasets; fills `self.state` with what the model needs."""
        raise NotImplementedError

    def make_model(self) -> keras.Model:
        """App hook: the uncompiled model for `self.config` and `self.state` (calls model.build_model)."""
        raise NotImplementedError

    def compile_model(self, model: keras.Model) -> None:
        """App hook: optimizer, loss and training metrics."""
        raise NotImplementedError

    def training_data(self, splits: Splits) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
        """App hook: batched (inputs, targets) for training and validation, using global_batch_size."""
        raise NotImplementedError

    def compute_metrics(self, test: tf.data.Dataset) -> dict[str, float]:
        """App hook: the task metric(s) on the (unbatched) test split."""
        raise NotImplementedError

    def make_endpoints(self) -> dict[str, tf.types.experimental.GenericFunction]:
        """App hook: signature name -> tf.function (with input_signature) over self.model."""
        raise NotImplementedError

    def encode_request(self, raw_inputs: Sequence[Any]) -> dict[str, Any]:
        """App hook: raw inputs (paths, bytes, strings) -> serving_default's input tensors."""
        raise NotImplementedError

    def decode_response(self, outputs: Mapping[str, np.ndarray]) -> list[Any]:
        """App hook: serving_default's outputs -> one readable answer per input."""
        raise NotImplementedError

    def sample_inputs(self, n: int = 4) -> list[Any]:
        """App hook: `n` raw inputs from the test split (bytes or strings), for checks and the demo."""
        raise NotImplementedError

    def example_requests(self) -> dict[str, dict[str, Any]]:
        """Inputs for every endpoint, used to compare the reloaded export with the live model.

        Apps with several endpoints override it to cover each one.
        """
        return {"serving_default": self.encode_request(self.sample_inputs(4))}

    def report_examples(self, n: int = 5) -> list[dict[str, str]]:
        """App hook (optional): up to `n` rows {column: text} of test inputs, references and outputs,
        shown as a table in reports/demo.md."""
        return []

    def extra_callbacks(self) -> list[keras.callbacks.Callback]:
        """App hook (optional): callbacks beyond the standard set (e.g. writing samples)."""
        return []

    def tpu_functions(self) -> dict[str, tf.types.experimental.GenericFunction]:
        """App hook (optional): jit-compiled functions on preprocessed tensors, saved as function
        aliases for the Cloud TPU inference converter; the serving signatures stay CPU/GPU-servable."""
        return {}

    def pretrain(self, model: keras.Model, splits: Splits) -> dict | None:
        """App hook (optional): trains part of a freshly built, compiled model before the main fit.

        For a head that needs far more steps than the rest of the model (the main fit's time budget
        does not include this phase; the app reports its time). Skipped when resuming from a backup.
        """
        return None

    def preprocessed_batch(self, raw_inputs: Sequence[Any]):
        """App hook (optional): the model's input tensor for raw inputs, to measure endpoint overhead."""
        return None

    def bare_model_fn(self):
        """App hook: serving_default's neural work as a function of preprocessed_batch()'s tensor.

        The bench times it against the endpoint on raw inputs; the difference is the endpoint's
        overhead (decoding, resizing, readable outputs). Default: the Keras model itself.
        """
        model = self.require_model()
        return lambda x: model(x, training=False)

    @classmethod
    def bench_config(cls, quick: bool = False) -> BaseConfig:
        """Config for `make bench`: the app's `bench` preset (real data) if it has one, else `demo`.

        Quick mode caps training at 30 s and skips side-by-side baselines (a config's `anchor_baseline`);
        the target is all seven apps within ten minutes (measured: 11 minutes on the 2-core CPU machine).
        """
        presets = cls.config_class.PRESETS
        config = cls.config_class.preset("bench" if "bench" in presets else "demo")
        if quick:
            config = config.replace(time_budget_s=30.0, epochs=min(config.epochs, 5))
            if getattr(config, "anchor_baseline", False):
                config = config.replace(anchor_baseline=False)
        return config

    def trackables(self) -> list:
        """Objects the export must track beside the model (e.g. lookup layers used only in serving)."""
        return []

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
                             min_fraction: float = 0.0) -> BudgetedCosine:
        """The (replica-scaled) learning rate after a linear warmup, decayed along a cosine.

        The decay ends after `total_steps` (default: `epochs` times the steps of one epoch, from
        `steps_per_epoch` or the training split's size in `info["sizes"]["train"]`), so the last steps
        settle instead of bouncing between minima; with `budget_ends_schedule` also when the config's
        time budget runs out, whichever comes first (fit() feeds it the clock).
        """
        cfg = self.config
        if total_steps is None:
            train_size = self.datasets().info.get("sizes", {}).get("train", 1000)
            total_steps = cfg.epochs * (cfg.steps_per_epoch or -(-train_size // self.global_batch_size))
        schedule = BudgetedCosine(self.learning_rate, max(total_steps, 1), warmup_steps, min_fraction)
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
        """Trains under the configured strategy; resumes from workdir/backup if interrupted."""
        cfg = self.config
        # The strategy first: MultiWorkerMirroredStrategy must configure collectives before any op runs.
        self.strategy = get_strategy(cfg.strategy)
        training.set_seed(cfg.seed)
        policy = set_precision(cfg.precision, self.strategy)
        splits = self.datasets()
        train, val = self.training_data(splits)
        train = training.shard_by_data(train)
        steps = cfg.steps_per_epoch or None
        if steps:
            train = train.repeat()
        self._budgeted_schedules = []
        with self.strategy.scope():
            model = self.build_model()
            self.compile_model(model)
        clocks = [BudgetClock(s, cfg.time_budget_s) for s in self._budgeted_schedules] \
            if cfg.budget_ends_schedule else []
        self.model = model
        self._endpoints = None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.save_config()
        pretrained = None
        if not (self.workdir / "backup").exists():  # a resumed run restores its weights instead
            with self.strategy.scope():
                pretrained = self.pretrain(model, splits)
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            result = training.fit_multiworker(model, train, val, config=cfg, strategy=self.strategy,
                                              workdir=self.workdir, steps_per_epoch=steps,
                                              write_files=is_chief())
        else:
            result = training.fit_model(
                model, train, val, config=cfg, workdir=self.workdir, monitor=self.monitor,
                mode=self.monitor_mode, extra_callbacks=self.extra_callbacks() + clocks, steps_per_epoch=steps,
                batch_size=self.global_batch_size)
        # Exports and the CLI need float32 outputs and a plain policy, whatever training used.
        keras.mixed_precision.set_global_policy("float32")
        result.update(precision_policy=policy, replicas=self.replicas, data=splits.info)
        if pretrained:
            result["pretrain"] = pretrained
        if is_chief():
            self.save()
            training.update_json(self.workdir / "metrics.json", fit=result)
        return result

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
        return self._endpoints

    def predict(self, raw_inputs: Sequence[Any]) -> list[Any]:
        """Readable answers for raw inputs, through the same graph the export serves."""
        if isinstance(raw_inputs, (str, bytes)):
            raw_inputs = [raw_inputs]
        outputs = self.endpoints["serving_default"](**self.encode_request(list(raw_inputs)))
        return self.decode_response({k: v.numpy() for k, v in outputs.items()})

    def predict_exported(self, model_path: str | Path, raw_inputs: Sequence[Any]) -> list[Any]:
        """The same as predict(), answered by an exported SavedModel (version or model folder)."""
        loaded = tf.saved_model.load(str(export_lib.resolve_saved_model(model_path)))
        outputs = export_lib.call_signature(loaded, "serving_default", self.encode_request(list(raw_inputs)))
        return self.decode_response(outputs)

    def check_export(self, path: Path) -> None:
        """Reloads the SavedModel at `path` and compares every endpoint with the live model."""
        loaded = tf.saved_model.load(str(path))
        for name, inputs in self.example_requests().items():
            live = {k: v.numpy() for k, v in self.endpoints[name](**inputs).items()}
            exported = export_lib.call_signature(loaded, name, inputs)
            export_lib.assert_outputs_match(live, exported, context=f"{self.name}/{name}")

    def export(self, out_dir: str | Path = "saved_models") -> Path:
        """Exports a new version to `out_dir/<name>/<version>/`, verified by reloading it."""
        model = self.require_model()
        metrics_path = self.workdir / "metrics.json"
        card = {
            "config": self.config.to_dict(),
            "metrics": json.loads(metrics_path.read_text()) if metrics_path.exists() else {},
            "data": {**(self._splits.info if self._splits is not None else {}), "state": self.state},
        }
        return export_lib.export_endpoints(
            out_dir, self.name, trackables=[model, *self.trackables()], endpoints=self.endpoints,
            check=self.check_export, card=card, tpu_aliases=self.tpu_functions())
