"""The training loop's callbacks: resuming survives a kill at any moment (a newest backup cut short falls
back to the one before), a validation set of unknown length is not reported as running out, and saving
weights builds no throwaway layers."""

import keras
import numpy as np
import tensorflow as tf

from core.callbacks import SafeBackupAndRestore
from core.config import BaseConfig
from core.data import with_known_length
from core.training import fit_model


class StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            raise KeyboardInterrupt  # what a kill between epochs looks like to the next run


def toy():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def fit(model, backup, epochs, extra=()):
    x, y = np.ones((8, 3), np.float32), np.ones((8, 1), np.float32)
    return model.fit(x, y, epochs=epochs, verbose=0,
                     callbacks=[SafeBackupAndRestore(str(backup), delete_checkpoint=True), *extra])


def test_resume_from_the_newest_readable_backup(tmp_path):
    backup = tmp_path / "backup"
    try:
        fit(toy(), backup, epochs=6, extra=[StopAfter(3)])
    except KeyboardInterrupt:
        pass
    names = sorted(p.name for p in backup.iterdir())
    assert names == ["epoch-000002-batch-000000000.weights.h5", "epoch-000003-batch-000000000.weights.h5"]
    newest = backup / names[-1]
    newest.write_bytes(newest.read_bytes()[:200])  # killed while writing: a truncated file
    history = fit(toy(), backup, epochs=6)
    assert history.epoch == [2, 3, 4, 5]  # resumed after epoch 2, not from scratch and not failing
    assert not backup.exists()  # a finished run removes its backups


def test_a_kill_mid_write_leaves_only_a_temporary_file(tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / ".incomplete.weights.h5").write_bytes(b"half a file")
    assert fit(toy(), backup, epochs=2).epoch == [0, 1]


def test_a_filtered_validation_set_is_not_reported_as_running_out(tmp_path, recwarn):
    pairs = tf.data.Dataset.from_tensor_slices((np.ones((10, 3), np.float32), np.ones((10, 1), np.float32)))
    val = pairs.filter(lambda x, y: True).batch(4)  # a filter hides the length from tf.data
    assert val.cardinality() == tf.data.UNKNOWN_CARDINALITY
    assert with_known_length(val).cardinality() == 3
    result = fit_model(toy(), pairs.batch(4), val, config=BaseConfig(epochs=2, verbose=0), workdir=tmp_path)
    assert result["epochs_run"] == 2
    assert not [w for w in recwarn if "ran out of data" in str(w.message)]


def test_saving_weights_builds_no_throwaway_layers(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)  # the first save of each type may build its reference object
    built = []
    init = keras.layers.Layer.__init__
    monkeypatch.setattr(keras.layers.Layer, "__init__", lambda self, *a, **k: built.append(self) or init(self, *a, **k))
    expected = [w.numpy() for w in model.weights]
    model.save_weights(path)
    model.load_weights(path)
    assert built == []  # Keras 3.15 alone builds one per layer visited (core.callbacks caches the skip sets)
    assert all(np.array_equal(w.numpy(), e) for w, e in zip(model.weights, expected))
