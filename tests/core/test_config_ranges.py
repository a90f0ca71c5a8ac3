"""Config ranges: declared beside each field (core.config's positive, at_least, between, one_of), checked
in one place, and every preset and bench config of every app inside them."""

import dataclasses
import typing

import pytest

from core import registry
from core.bench import spec_for
from core.cli import main
from core.config import ACCEPTS, BaseConfig, at_least, between, positive

APPS = registry.apps()
# Keys that may take any number: signal-to-noise ratios in dB and the LM's per-character bonus.
UNBOUNDED = {"snr_db_min", "snr_db_max", "lm_beta"}


@dataclasses.dataclass
class RangedConfig(BaseConfig):
    size: int = positive(8)
    rate: float = between(0, 1, 0.1, high_open=True)
    share: float = between(0, 1, 0.5)
    floor: int = at_least(2, 3)
    optional: float | None = at_least(0, None)


@pytest.mark.parametrize("assignment, message", [
    ("epochs=0", "epochs must be positive. Received: epochs=0"),
    ("learning_rate=nan", "learning_rate must be positive. Received: learning_rate=nan"),
    ("steps_per_epoch=-1", "steps_per_epoch must not be negative. Received: steps_per_epoch=-1"),
    ("verbose=3", "verbose must be one of [0, 1, 2]. Received: verbose=3"),
    ("size=-4", "size must be positive. Received: size=-4"),
    ("rate=1", "rate must be in [0, 1). Received: rate=1.0"),
    ("share=1.5", "share must be in [0, 1]. Received: share=1.5"),
    ("floor=1", "floor must be at least 2. Received: floor=1"),
    ("optional=-1", "optional must not be negative. Received: optional=-1.0"),
])
def test_a_value_out_of_range_is_refused_naming_key_range_and_value(assignment, message):
    with pytest.raises(ValueError) as info:
        RangedConfig().override([assignment])
    assert str(info.value) == message


def test_the_ends_of_a_range_are_accepted():
    cfg = RangedConfig().override(["size=1", "rate=0", "share=1", "floor=2", "optional=none", "steps_per_epoch=0"])
    assert (cfg.size, cfg.rate, cfg.share, cfg.floor, cfg.optional) == (1, 0.0, 1.0, 2, None)


def test_an_app_key_out_of_range_names_the_key():
    config_class = APPS["translation"].config_class
    with pytest.raises(ValueError, match=r"^dim must be positive. Received: dim=-4$"):
        config_class.preset("smoke").override(["dim=-4"])
    with pytest.raises(ValueError, match=r"^dropout must be in \[0, 1\). Received: dropout=1.0$"):
        config_class.preset("smoke", dropout=1.0)


@pytest.mark.parametrize("app", sorted(APPS))
def test_every_preset_and_bench_config_is_in_range(app):
    config_class = APPS[app].config_class
    for name in config_class.PRESETS:
        config_class.preset(name).check()
    spec = spec_for(app)
    spec.config(config_class).check()
    spec.config(config_class, quick=True).check()


@pytest.mark.parametrize("app", sorted(APPS))
def test_every_numeric_key_declares_its_range(app):
    config_class = APPS[app].config_class
    hints = typing.get_type_hints(config_class)
    numeric = [f.name for f in dataclasses.fields(config_class) if hints[f.name] in (int, float)]
    undeclared = [k for k in numeric
                  if ACCEPTS not in config_class.__dataclass_fields__[k].metadata and k not in UNBOUNDED]
    assert not undeclared, f"{app}: declare a range (positive, at_least, between) for {undeclared}"


def test_cli_error_is_one_line_naming_the_key():
    with pytest.raises(SystemExit) as info:
        main(["train", "translation", "--preset", "smoke", "--set", "dim=-4"])
    assert str(info.value) == "error: dim must be positive. Received: dim=-4"


@pytest.mark.parametrize("app, assignments, message", [
    ("colorize", ["val_fraction=0.5", "test_fraction=0.5"],
     "val_fraction + test_fraction must be below 1: the rest is the training split. "
     "Received: val_fraction=0.5, test_fraction=0.5"),
    ("speech_commands", ["snr_db_min=30", "snr_db_max=10"],
     "snr_db_min must be at most snr_db_max. Received: snr_db_min=30.0, snr_db_max=10.0"),
])
def test_keys_that_constrain_each_other_are_checked_together(app, assignments, message):
    config_class = APPS[app].config_class
    with pytest.raises(ValueError) as info:
        config_class.preset("smoke").override(assignments)
    assert str(info.value) == message
    config_class.preset("smoke").override([assignments[0]])  # alone, within the default of the other: fine
