"""Configuration: one dataclass per app, presets, `key=value` overrides, JSON round trip."""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import re
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

# Distribution strategies by name (core.distribute builds them); here so the CLI lists them without TF.
STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "multiworker", "tpu")


# Key of the dataclass field metadata holding what a config key accepts (a Range or OneOf).
ACCEPTS = "accepts"


@dataclasses.dataclass(frozen=True)
class Range:
    """Numbers from `low` to `high` (None: unbounded), each end included unless declared open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:  # completes "KEY must ..."
        if self.high is None and self.low == 0:
            return "be positive" if self.low_open else "not be negative"
        if self.high is None:
            return f"be {'above' if self.low_open else 'at least'} {self.low}"
        return f"be in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


@dataclasses.dataclass(frozen=True)
class OneOf:
    values: tuple

    def __contains__(self, value) -> bool:
        return value in self.values

    def __str__(self) -> str:
        return f"be one of {list(self.values)}"


def _accepting(accepts, default):
    return dataclasses.field(default=default, metadata={ACCEPTS: accepts})


def positive(default):
    """A config field whose value must be > 0 (for a count: at least 1)."""
    return _accepting(Range(0, low_open=True), default)


def at_least(low, default):
    """A config field whose value must be >= low (at_least(0, ...): 0 is allowed, often "off" or "auto")."""
    return _accepting(Range(low), default)


def between(low, high, default, *, high_open: bool = False):
    """A config field whose value must be in [low, high], or [low, high) with high_open (dropout rates)."""
    return _accepting(Range(low, high, high_open=high_open), default)


def one_of(values, default):
    """A config field whose value must be one of `values`."""
    return _accepting(OneOf(tuple(values)), default)


@dataclasses.dataclass
class BaseConfig:
    """Settings every pipeline shares. Apps subclass it and add their own fields.

    Presets are named partial overrides: `smoke` trains in seconds for tests, `demo` is sized so
    `make demo` finishes within its budget on 2 CPU cores, `full` is what a real run should use.

    Example:
        >>> cfg = Config.preset("smoke", epochs=2)
        >>> cfg = cfg.override(["learning_rate=3e-4", "batch_size=32"])
    """

    seed: int = at_least(0, 0)  # seeds data splits, initialisation and augmentation
    data: str = "embedded"  # "embedded", a folder/file path, or "tfds:NAME"
    epochs: int = positive(10)  # upper bound; early stopping and the time budget may end training sooner
    batch_size: int = positive(64)  # per replica
    learning_rate: float = positive(1e-3)  # peak rate, scaled by the replica count when scale_lr_with_replicas
    steps_per_epoch: int = at_least(0, 0)  # 0: one pass over the training split
    early_stopping_patience: int = at_least(0, 5)  # epochs without a better validation score before stopping
    time_budget_s: float = at_least(0, 0.0)  # 0: no wall-clock budget
    # Cosine schedules (Pipeline.cosine_learning_rate) also end when time_budget_s runs out, if that comes
    # before their last step; off, a budget cuts the step-counted cosine where it is.
    budget_ends_schedule: bool = False
    precision: str = one_of(("float32", "mixed"), "float32")  # mixed: mixed_float16 on GPU, mixed_bfloat16 on TPU
    jit_compile: bool = False  # XLA for training steps (exports are never jit-compiled)
    strategy: str = one_of(STRATEGIES, "auto")  # auto | cpu | gpu | mirrored | multiworker (TF_CONFIG) | tpu
    scale_lr_with_replicas: bool = True  # the global batch grows with the replicas; so does the rate
    backup_every_steps: int = at_least(0, 0)  # 0: back up at every epoch end (BackupAndRestore)
    verbose: int = one_of((0, 1, 2), 1)  # Keras progress: 0 silent, 1 progress bar, 2 one line per epoch

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {}, "demo": {}, "full": {}}

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Refuses a value outside what its field declares (positive, at_least, between, one_of), naming
        the key, what it accepts and the value received.

        Apps extend it (calling super().check()) only for what involves several keys or is not a range.
        """
        for field in dataclasses.fields(self):
            accepted = field.metadata.get(ACCEPTS)
            value = getattr(self, field.name)
            if accepted is not None and value is not None and value not in accepted:
                raise ValueError(f"{field.name} must {accepted}. Received: {field.name}={value!r}")
        # Two checks across keys, by naming convention: the held-out shares leave data to train on, and
        # every X_min is at most its X_max.
        if hasattr(self, "val_fraction") and hasattr(self, "test_fraction") and \
                self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1: the rest is the training split. "
                             f"Received: val_fraction={self.val_fraction}, test_fraction={self.test_fraction}")
        for name in self.field_names():
            high = name.removesuffix("_min") + "_max"
            if name.endswith("_min") and hasattr(self, high) and getattr(self, name) > getattr(self, high):
                raise ValueError(f"{name} must be at most {high}. "
                                 f"Received: {name}={getattr(self, name)}, {high}={getattr(self, high)}")

    @classmethod
    def preset(cls, name: str = "demo", **overrides: Any) -> BaseConfig:
        if name not in cls.PRESETS:
            raise ValueError(
                f"Unknown preset for {cls.__module__}.{cls.__qualname__}. "
                f"Received: preset={name!r}; valid presets: {sorted(cls.PRESETS)}"
            )
        values = {**cls.PRESETS[name], **overrides}
        cls._check_keys(values)
        return cls(**values)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def _check_keys(cls, keys) -> None:
        unknown = sorted(set(keys) - set(cls.field_names()))
        if unknown:
            raise KeyError(
                f"Unknown config key(s) {unknown} for {cls.__qualname__} of {cls.__module__}. "
                f"Valid keys: {', '.join(sorted(cls.field_names()))}"
            )

    def replace(self, **changes: Any) -> BaseConfig:
        self._check_keys(changes)
        return dataclasses.replace(self, **changes)

    def override(self, assignments: list[str] | None) -> BaseConfig:
        """Applies `key=value` strings (the CLI's `--set`), parsing each value as its field's type."""
        if not assignments:
            return self
        types_by_name = typing.get_type_hints(type(self))
        changes = {}
        for item in assignments:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"--set expects key=value. Received: {item!r}")
            self._check_keys([key])
            changes[key] = parse_value(raw.strip(), types_by_name[key], key)
        return self.replace(**changes)

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Field name -> its one-line meaning, read from the comments beside or above it in the source."""
        docs: dict[str, str] = {}
        for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
            docs.update(_comments_by_field(klass))
        return {name: docs.get(name, "") for name in cls.field_names()}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> BaseConfig:
        raw = str(path_or_text)
        text = raw if raw.lstrip().startswith("{") else Path(raw).read_text()
        values = json.loads(text)
        # Configs written by an older version may carry keys that no longer exist: ignore them.
        known = {k: v for k, v in values.items() if k in cls.field_names()}
        types_by_name = typing.get_type_hints(cls)
        for key, value in known.items():  # JSON has lists only: give tuple fields their tuples back
            if isinstance(value, list) and typing.get_origin(types_by_name[key]) is tuple:
                known[key] = tuple(value)
        return cls(**known)


_FIELD = re.compile(r"^    (\w+)\s*:")


def _comments_by_field(klass) -> dict[str, str]:
    try:
        source = inspect.getsource(klass)
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    docs, above = {}, []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(comments.get(number, ""))
            continue
        match = _FIELD.match(line)
        if match:
            # A comment on the line wins; else the block right above, unless it is a section title.
            block = " ".join(above)
            docs[match.group(1)] = comments.get(number) or (block if len(block.split()) > 3 else "")
        above = []
    return {k: v for k, v in docs.items() if v}


def parse_value(raw: str, annotation: Any, key: str = "value") -> Any:
    """Parses a CLI string into `annotation` (bool, int, float, str, tuples, optionals)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null", ""):
            return None
        non_none = [a for a in args if a is not type(None)]
        return parse_value(raw, non_none[0], key)
    if origin in (tuple, list):
        items = [s.strip() for s in raw.strip("()[]").split(",") if s.strip()]
        item_type = args[0] if args else str
        return origin(parse_value(s, item_type, key) for s in items)
    try:
        if annotation is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if annotation is int:
            return int(float(raw)) if "e" in raw.lower() else int(raw)
        if annotation is float:
            return float(raw)
    except ValueError:
        raise ValueError(
            f"Config key {key!r} expects {getattr(annotation, '__name__', annotation)}. Received: {raw!r}"
        ) from None
    return raw
