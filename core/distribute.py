"""Distribution strategies by name, and the precision policy that goes with the hardware."""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from core.config import STRATEGIES

_CACHE: dict[str, tf.distribute.Strategy] = {}


def _tpu_resolver():
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return resolver
    except (ValueError, tf.errors.NotFoundError, RuntimeError):
        return None


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Returns the strategy for `name`.

    auto: TPUStrategy when a TPU resolver finds one, MirroredStrategy for several GPUs, the default
    strategy otherwise. multiworker: MultiWorkerMirroredStrategy configured by the TF_CONFIG
    environment variable (set by Kubernetes / Vertex AI, or by hand: see README).
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy. Received: strategy={name!r}; valid: {list(STRATEGIES)}")
    # Before anything that lists devices: that initialises the runtime, after which collectives
    # can no longer be configured.
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise RuntimeError("strategy=multiworker needs the TF_CONFIG environment variable (see README).")
        # Collectives can be configured once per process: reuse the strategy on later calls.
        if "multiworker" not in _CACHE:
            _CACHE["multiworker"] = tf.distribute.MultiWorkerMirroredStrategy()
        return _CACHE["multiworker"]
    if name == "tpu" or (name == "auto" and os.environ.get("TPU_NAME")):
        resolver = _tpu_resolver()
        if resolver is not None:
            return tf.distribute.TPUStrategy(resolver)
        if name == "tpu":
            raise RuntimeError("strategy=tpu but no TPU was found by TPUClusterResolver.")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        cpus = tf.config.list_logical_devices("CPU")
        if not gpus and len(cpus) > 1:
            # CPU split into logical devices (tests, or hosts pinned per socket): mirror over them,
            # since MirroredStrategy() alone would take a single CPU when there is no GPU.
            return tf.distribute.MirroredStrategy([d.name for d in cpus])
        return tf.distribute.MirroredStrategy()
    if name == "gpu":
        if not gpus:
            raise RuntimeError("strategy=gpu but TensorFlow sees no GPU.")
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """True on the worker that writes checkpoints and exports (task 0 of a multi-worker cluster)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    return task.get("type", "chief") == "chief" or (
        task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in config.get("cluster", {}))


def split_cpu(n: int) -> None:
    """Splits the physical CPU into `n` logical devices; must run before TensorFlow initialises them."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def set_precision(precision: str, strategy: tf.distribute.Strategy | None = None) -> str:
    """Sets the Keras dtype policy: mixed_bfloat16 on TPU, mixed_float16 on GPU, float32 otherwise."""
    if precision not in ("float32", "mixed"):
        raise ValueError(f"precision must be 'float32' or 'mixed'. Received: precision={precision!r}")
    policy = "float32"
    if precision == "mixed":
        if isinstance(strategy, tf.distribute.TPUStrategy):
            policy = "mixed_bfloat16"
        elif tf.config.list_logical_devices("GPU"):
            policy = "mixed_float16"
        else:
            # CPUs with AVX512-BF16 run bfloat16; float16 on CPU is emulated and slower.
            policy = "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy
