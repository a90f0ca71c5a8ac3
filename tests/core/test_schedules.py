"""BudgetedCosine ends its decay with the run, counted in steps or by the time budget."""

import keras
import numpy as np
import pytest

from core import schedules
from core.callbacks import TimeBudget
from core.schedules import BudgetClock, BudgetedCosine


def lr(schedule, step):
    return float(schedule(step))


def test_step_counted_warmup_then_cosine():
    s = BudgetedCosine(1e-3, total_steps=110, warmup_steps=10, min_fraction=0.1)
    assert lr(s, 0) == pytest.approx(1e-4)  # the ramp's first step is not zero
    assert lr(s, 9) == pytest.approx(1e-3)
    assert lr(s, 10) == pytest.approx(1e-3)
    assert lr(s, 60) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half way through the cosine
    assert lr(s, 110) == pytest.approx(1e-4)
    assert lr(s, 500) == pytest.approx(1e-4)  # stays at the floor after the end


def test_time_fraction_moves_the_cosine_ahead_of_the_steps():
    s = BudgetedCosine(2.0, total_steps=10_000, warmup_steps=0)
    s.time_fraction.assign(0.5)
    assert lr(s, 100) == pytest.approx(1.0)  # time says half way; steps say 1%: the larger wins
    s.time_fraction.assign(1.0)
    assert lr(s, 100) == pytest.approx(0.0, abs=1e-6)
    s.time_fraction.assign(0.0)
    assert lr(s, 7_500) == pytest.approx(2.0 * 0.5 * (1 + np.cos(0.75 * np.pi)), rel=1e-5)


def test_rejects_a_run_of_no_steps():
    with pytest.raises(ValueError, match="total_steps=0"):
        BudgetedCosine(1e-3, total_steps=0)


def test_clock_starts_after_the_first_step_and_reports_the_spent_fraction(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(schedules.time, "monotonic", lambda: now[0])
    s = BudgetedCosine(1.0, total_steps=1_000_000)
    clock = BudgetClock(s, seconds=60.0)
    clock.on_train_begin()
    clock.on_train_batch_begin(0)
    now[0] += 30.0  # the first step (tracing) is not counted
    clock.on_train_batch_end(0)
    now[0] += 15.0
    clock.on_train_batch_begin(1)
    assert float(s.time_fraction) == pytest.approx(0.25)
    now[0] += 1000.0
    clock.on_train_batch_begin(2)
    assert float(s.time_fraction) == pytest.approx(1.0)


def test_fit_under_a_time_budget_ends_at_the_floor_rate():
    """A run cut by its time budget long before total_steps still finishes its decay."""
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    s = BudgetedCosine(1e-2, total_steps=10_000_000, min_fraction=0.1)
    model.compile(optimizer=keras.optimizers.SGD(s), loss="mse")
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda b, logs: seen.append(float(s(model.optimizer.iterations))))
    model.fit(x, y, batch_size=8, epochs=100_000, verbose=0,
              callbacks=[BudgetClock(s, 0.5), TimeBudget(0.5), record])
    assert len(seen) < 10_000_000 // 100  # stopped by time, far from the step count
    assert seen[0] == pytest.approx(1e-2)
    assert seen[-1] == pytest.approx(1e-3, rel=0.05)  # annealed to the floor when the budget ran out
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s)).get_config() \
        == s.get_config()
