"""The standard callback set every pipeline trains with."""

from __future__ import annotations

import functools
import os
import re
import time
import warnings
from pathlib import Path

import keras


def _cache_keras_skipsets() -> None:
    """Keras (3.15) files the attribute skip set of each saveable type under another key than the one it
    looks it up by, so every save and load of weights builds a throwaway Layer per layer it visits: a third
    of each epoch's backup. The set depends on the type alone, so it is computed once per type here."""
    from keras.src.saving import saving_lib

    skipset = getattr(saving_lib, "get_attr_skipset", None)
    if skipset is not None and not hasattr(skipset, "cache_info"):
        saving_lib.get_attr_skipset = functools.cache(skipset)


_cache_keras_skipsets()


class TimeBudget(keras.callbacks.Callback):
    """Stops training cleanly once `seconds` of wall-clock time have passed (checked every batch).

    Args:
        seconds: the budget; 0 or less disables it.
    """

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.start = None
        self.stopped_early = False

    def on_train_begin(self, logs=None):
        self.start = None

    def on_train_batch_end(self, batch, logs=None):
        # The clock starts after the first step: tracing and compiling the graph can take longer
        # than a small budget on a busy machine, and would otherwise leave a one-step model.
        if self.start is None:
            self.start = time.monotonic()
        elif self.seconds > 0 and time.monotonic() - self.start > self.seconds:
            self.model.stop_training = True
            self.stopped_early = True


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` and `examples_per_second` to the epoch logs (CSV log, metrics.json).

    Steps are counted from the optimizer's iteration counter, which is exact whatever the
    steps-per-execution or verbosity (batch hooks are not called for every step then).
    """

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size

    def _iterations(self) -> int:
        optimizer = getattr(self.model, "optimizer", None)
        return int(optimizer.iterations.numpy()) if optimizer is not None and optimizer.built else 0

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.monotonic()
        self.first_step = self._iterations()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.monotonic() - self.start
        steps = self._iterations() - self.first_step
        if logs is not None:
            logs["epoch_seconds"] = seconds
            logs["examples_per_second"] = steps * self.batch_size / max(seconds, 1e-9)


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that survives a kill at any moment.

    Each backup is written to a temporary file and renamed into place under a name that carries its
    epoch (one file, so weights and progress cannot disagree); the previous backup is kept until a
    newer one is complete, and a resumed run falls back to it when the newest cannot be read.
    """

    NAME = re.compile(r"^epoch-(\d+)-batch-(\d+)\.weights\.h5$")

    def _backups(self) -> list[tuple[int, int, Path]]:
        folder = Path(self.backup_dir)
        found = [(int(m[1]), int(m[2]), p) for p in folder.glob("*.weights.h5") if (m := self.NAME.match(p.name))]
        return sorted(found, reverse=True)

    def on_train_begin(self, logs=None):
        self._load_model()

    def _load_model(self):
        if not self.model.built:
            raise ValueError(f"BackupAndRestore needs a built model before fit(). Received: {self.model}")
        for epoch, _, path in self._backups():
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            try:
                self.model.load_weights(str(path))
            except Exception as err:  # noqa: BLE001 - a file cut short by a kill: try the one before
                warnings.warn(f"Backup {path} is unreadable ({type(err).__name__}); trying an older one.",
                              stacklevel=2)
                continue
            self.model._initial_epoch = epoch
            return

    def _save_model(self):
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".incomplete.weights.h5"
        self.model.save_weights(str(tmp), overwrite=True)
        final = folder / f"epoch-{self._current_epoch:06d}-batch-{self._last_batch_seen:09d}.weights.h5"
        os.replace(tmp, final)
        for _, _, older in self._backups()[2:]:  # the newest two: a complete one survives any kill
            older.unlink(missing_ok=True)


def standard_callbacks(workdir: str | Path, *, monitor: str = "val_loss", mode: str = "min",
                       patience: int = 5, time_budget_s: float = 0.0, backup_every_steps: int = 0,
                       batch_size: int = 1, write_files: bool = True, tensorboard: bool = True):
    """Best checkpoint, BackupAndRestore (resume), early stopping, TensorBoard, CSV log, time budget.

    Only the chief writes files in multi-worker training (`write_files=False` elsewhere), but every
    worker keeps a backup so a restarted cluster resumes together.
    """
    workdir = Path(workdir)
    backup_freq = backup_every_steps if backup_every_steps > 0 else "epoch"
    callbacks = [
        EpochTimer(batch_size),
        SafeBackupAndRestore(str(workdir / "backup"), save_freq=backup_freq, delete_checkpoint=True),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                      restore_best_weights=True, verbose=1),
        TimeBudget(time_budget_s),
    ]
    if write_files:
        (workdir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        callbacks += [
            keras.callbacks.ModelCheckpoint(str(workdir / "checkpoints" / "best.weights.h5"),
                                            monitor=monitor, mode=mode, save_best_only=True,
                                            save_weights_only=True),
            keras.callbacks.CSVLogger(str(workdir / "logs" / "history.csv"), append=True),
        ]
        if tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(str(workdir / "logs" / "tensorboard"),
                                                         profile_batch=0, write_graph=False))
    return callbacks
