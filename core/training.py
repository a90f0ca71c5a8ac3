"""fit(): seeds, strategy scope, mixed precision, compile, callbacks, history -> metrics.json."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from core import callbacks as callbacks_lib
from core.data import with_known_length
from core.distribute import is_chief


def set_seed(seed: int) -> None:
    """Seeds Python, NumPy, TF and Keras so a run is reproducible on one machine."""
    keras.utils.set_random_seed(seed)


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Splits batches across workers by element: our sources are rarely one file per worker."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def to_jsonable(value):
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if hasattr(value, "numpy"):
        return to_jsonable(value.numpy())
    return value


def update_json(path: Path, **entries) -> dict:
    """Merges `entries` into the JSON object at `path` (created if missing) and returns it."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(to_jsonable(entries))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return data


def build_for_training(model: keras.Model, train: tf.data.Dataset) -> None:
    """Creates the optimizer's slots and the compiled metrics' and losses' state before fit: when the
    first trace of the train step creates variables, TensorFlow traces it a second time (Keras builds
    them beforehand only under a strategy scope, not with the default strategy)."""
    if not model.built or not model.trainable_variables or not hasattr(model, "_symbolic_build"):
        return  # Keras's own build step (private; the deferred build is only slower without it)
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=train.element_spec)  # the specs' shapes and dtypes suffice


def fit_model(model: keras.Model, train: tf.data.Dataset, val: tf.data.Dataset | None, *, config,
              workdir: Path, monitor: str = "val_loss", mode: str = "min",
              extra_callbacks: list | None = None, steps_per_epoch: int | None = None,
              batch_size: int = 1, initial_epoch: int = 0) -> dict:
    """Runs `model.fit` with the standard callbacks; returns the per-epoch history.

    The model must be compiled and built. Interrupted runs resume from `workdir/backup`.
    """
    chief = is_chief()
    if val is None and monitor.startswith("val_"):
        monitor = monitor[len("val_"):]
    cbs = callbacks_lib.standard_callbacks(
        workdir, monitor=monitor, mode=mode, patience=config.early_stopping_patience,
        time_budget_s=config.time_budget_s, backup_every_steps=config.backup_every_steps,
        batch_size=batch_size, write_files=chief) + list(extra_callbacks or [])
    if val is not None:
        val = with_known_length(val)
    build_for_training(model, train)
    start = time.monotonic()
    history = model.fit(train, validation_data=val, epochs=config.epochs, initial_epoch=initial_epoch,
                        steps_per_epoch=steps_per_epoch or None, callbacks=cbs, verbose=config.verbose,
                        shuffle=False)  # tf.data pipelines shuffle themselves
    seconds = time.monotonic() - start
    budget = next(c for c in cbs if isinstance(c, callbacks_lib.TimeBudget))
    return {
        "history": to_jsonable(history.history),
        "epochs_run": len(history.epoch),
        "first_epoch": history.epoch[0] if history.epoch else None,
        "train_seconds": seconds,
        "stopped_by_time_budget": budget.stopped_early,
    }




def fit_multiworker(model: keras.Model, train: tf.data.Dataset, val: tf.data.Dataset | None, *, config,
                    strategy: tf.distribute.Strategy, workdir: Path, steps_per_epoch: int | None = None,
                    write_files: bool = True) -> dict:
    """A custom training loop under MultiWorkerMirroredStrategy.

    Keras 3's `fit` on the TensorFlow backend fails under MultiWorkerMirroredStrategy before the first
    step: its symbolic build reduces an eager PerReplica batch across workers, which the collective
    all-reduce cannot convert ("Attempt to convert a value (PerReplica...)"). This loop runs the
    model's own loss and optimizer in `strategy.run` instead, keeps the per-epoch loss history,
    resumes from a per-epoch checkpoint in workdir/backup, and stops early on the time budget. Keras
    callbacks (CSV log, TensorBoard, early stopping) do not run here.
    """
    if steps_per_epoch is None:
        cardinality = int(tf.data.experimental.cardinality(train))
        if cardinality < 0:
            raise ValueError("Multi-worker training needs a finite training set or steps_per_epoch > 0. "
                             f"Received: dataset cardinality {cardinality}")
        steps_per_epoch = cardinality
        train = train.repeat()
    iterator = iter(strategy.experimental_distribute_dataset(train))
    optimizer = model.optimizer
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    with strategy.scope():
        optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    # Every worker saves (the save is collective); only the chief's copy lives in the workdir.
    backup = workdir / "backup" if write_files else Path(tempfile.mkdtemp(prefix="worker-backup-"))
    manager = tf.train.CheckpointManager(checkpoint, str(backup), max_to_keep=1)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            prediction = model(x, training=True)
            # Keras already divides the replica's loss by the replica count, so the gradients the
            # optimizer sums over replicas are those of the mean loss over the global batch.
            loss = model.compute_loss(x=x, y=y, y_pred=prediction, training=True)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_step(it):
        x, y = next(it)
        losses = strategy.run(replica_step, args=(x, y))
        return strategy.reduce("SUM", losses, axis=None)

    history: dict[str, list[float]] = {"loss": [], "epoch_seconds": []}
    first_epoch = int(epoch.numpy())
    start = time.monotonic()
    stopped = False
    for e in range(first_epoch, config.epochs):
        epoch_start = time.monotonic()
        total = 0.0
        for _ in range(steps_per_epoch):
            total += float(train_step(iterator))
        history["loss"].append(total / steps_per_epoch)
        history["epoch_seconds"].append(time.monotonic() - epoch_start)
        if config.verbose:
            print(f"epoch {e + 1}/{config.epochs} loss {history['loss'][-1]:.4f}", flush=True)
        epoch.assign(e + 1)
        manager.save()
        if config.time_budget_s > 0 and time.monotonic() - start > config.time_budget_s:
            stopped = True
            break
    return {"history": history, "epochs_run": len(history["loss"]), "first_epoch": first_epoch,
            "train_seconds": time.monotonic() - start, "stopped_by_time_budget": stopped}
