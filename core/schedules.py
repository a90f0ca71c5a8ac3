"""A cosine learning-rate schedule that can also end with a wall-clock budget.

Counted in steps, a cosine's end is a guess at how many steps a time budget buys: on a faster machine
the run stops with budget unused, on a slower one the budget cuts it with the rate still high.
`BudgetedCosine` takes as its progress the larger of the step fraction and the spent fraction of the
budget, which a `BudgetClock` callback feeds it (Pipeline.fit does so with `budget_ends_schedule`),
so the decay finishes at whichever limit comes first. Opt-in: where the budget buys few steps, a
clock-ended cosine anneals too early, and a step-counted one cut mid-way does better.
"""

from __future__ import annotations

import math
import time

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="catalogue")
class BudgetedCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak`, then a cosine down to `peak * min_fraction`.

    Args:
        peak: the rate at the end of the warmup.
        total_steps: the run's length in steps, warmup included (the cosine ends here at the latest).
        warmup_steps: steps of the linear ramp; always counted in steps.
        min_fraction: where the cosine ends, as a fraction of `peak`.

    Without a `BudgetClock` (or without a time budget) it is the usual step-counted warmup + cosine.
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, min_fraction: float = 0.0):
        if total_steps <= 0:
            raise ValueError(f"BudgetedCosine needs total_steps > 0. Received: total_steps={total_steps}")
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.min_fraction = float(min_fraction)
        # Written by BudgetClock between steps; read inside the compiled train step.
        self.time_fraction = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="time_fraction")

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(self.warmup_steps)
        by_steps = (step - warmup) / float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.clip_by_value(tf.maximum(by_steps, self.time_fraction), 0.0, 1.0)
        cosine = self.min_fraction + (1.0 - self.min_fraction) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        ramp = (step + 1.0) / max(warmup, 1.0)
        return self.peak * tf.where(step < warmup, ramp, cosine)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "min_fraction": self.min_fraction}


@keras.saving.register_keras_serializable(package="catalogue")
class WarmupInverseSqrt(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak`, then `peak * sqrt(warmup_steps / step)` (the Transformer's decay).

    It keeps the rate high for a long time: the better choice when a run is too short for a cosine to
    finish learning before it anneals.
    """

    def __init__(self, peak: float, warmup_steps: int):
        self.peak = float(peak)
        self.warmup_steps = max(int(warmup_steps), 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0
        warmup = float(self.warmup_steps)
        return self.peak * tf.where(step < warmup, step / warmup, tf.sqrt(warmup / step))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}


class BudgetClock(keras.callbacks.Callback):
    """Tells a BudgetedCosine how much of a wall-clock budget has been spent, before every step.

    The clock starts after the first step, as core.callbacks.TimeBudget's does (tracing and compiling
    are not training time), so the decay ends when TimeBudget stops the run. A resumed run restarts
    the clock, as TimeBudget does; the step fraction carries over.

    Args:
        schedule: the schedule to feed.
        seconds: the budget; 0 or less leaves the schedule counting steps only.
    """

    def __init__(self, schedule: BudgetedCosine, seconds: float):
        super().__init__()
        self.schedule = schedule
        self.seconds = seconds
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = None
        self.schedule.time_fraction.assign(0.0)

    def on_train_batch_begin(self, batch, logs=None):
        if self.start is not None and self.seconds > 0:
            self.schedule.time_fraction.assign(min((time.monotonic() - self.start) / self.seconds, 1.0))

    def on_train_batch_end(self, batch, logs=None):
        if self.start is None:
            self.start = time.monotonic()
