"""Trains one app's smoke preset under a given strategy in its own process (TF devices are per process).

Usage: python tests/core/distributed_run.py APP {single,mirrored,multiworker} WORKDIR RESULT_JSON [EXPORT_DIR]
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402

keras.config.disable_traceback_filtering()
from core import registry  # noqa: E402
from core.distribute import is_chief, split_cpu  # noqa: E402


def main(app, mode, workdir, result_path, export_dir=None):
    cls = registry.apps()[app]
    # The same global batch and learning rate in every mode, so the runs are comparable.
    base = cls.config_class.preset("smoke", verbose=0, scale_lr_with_replicas=False)
    # Two epochs tell whether the two curves agree; the multi-worker run trains the preset's, for accuracy.
    overrides = {"seed": 1} if mode == "multiworker" else {"seed": 1, "epochs": min(base.epochs, 2)}
    if "augment" in base.field_names():
        overrides["augment"] = False
    if mode == "mirrored":
        split_cpu(2)
        overrides.update(strategy="mirrored", batch_size=base.batch_size // 2)
    elif mode == "multiworker":
        overrides.update(strategy="multiworker", batch_size=base.batch_size // 2)
    else:
        overrides.update(strategy="cpu")
    pipeline = cls(base.replace(**overrides), workdir)
    result = pipeline.fit()
    # Only the multi-worker test reads the metrics (with an export); evaluating costs a graph trace.
    metrics = pipeline.evaluate() if is_chief() and export_dir else {}
    exported = str(pipeline.export(export_dir)) if export_dir and is_chief() else None
    with open(result_path, "w") as f:
        json.dump({"replicas": result["replicas"], "loss": result["history"]["loss"],
                   "metrics": metrics, "export": exported, "global_batch": pipeline.global_batch_size}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
