"""Run and algorithm configuration: typed dataclasses and `--set key=value` overrides.

Every hyperparameter lives in a dataclass field with a type annotation; overrides are parsed
against that annotation, so a typo or a malformed value fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar


class ConfigError(ValueError):
    """Bad user input: reported as one line and exit code 2 by the CLI."""


ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True)
class RunConfig:
    """What to train, for how long, and where the learning curves go."""

    algo: str
    env: str | None = None  # online: the Gymnasium id to train in
    dataset: str | None = None  # offline: the Minari dataset id to train from (evaluation uses its env)
    seeds: int = 5
    seed_start: int = 0
    steps: int = 1_000_000
    eval_every: int = 10_000
    eval_episodes: int = 10
    device: str = "auto"
    out: str = "results"

    def __post_init__(self) -> None:
        require((self.env is None) != (self.dataset is None), "give either --env (online) or --dataset (offline)")
        require(self.seeds >= 1, f"--seeds must be at least 1, got {self.seeds}")
        require(self.seed_start >= 0, f"--seed-start must be non-negative, got {self.seed_start}")
        require(self.steps >= 1, f"--steps must be at least 1, got {self.steps}")
        require(self.eval_every >= 1, f"--eval-every must be at least 1, got {self.eval_every}")
        require(self.eval_episodes >= 1, f"--eval-episodes must be at least 1, got {self.eval_episodes}")
        require(self.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda, got {self.device!r}")

    @property
    def task(self) -> str:
        """What the run learns: the env id online, the dataset id offline (results are filed under it)."""
        return str(self.dataset or self.env)

    @property
    def seed_values(self) -> list[int]:
        return list(range(self.seed_start, self.seed_start + self.seeds))

    def eval_steps(self) -> list[int]:
        """The fixed evaluation grid: step 0, every `eval_every` steps, and the last step."""
        grid = list(range(0, self.steps, self.eval_every))
        return grid + [self.steps]


@dataclass(frozen=True)
class OffPolicyConfig:
    """Settings shared by every replay-based algorithm (the QSM paper's protocol)."""

    batch_size: int = 256
    gamma: float = 0.99
    tau: float = 0.005
    warmup_steps: int = 10_000
    replay_capacity: int = 1_000_000
    hidden_sizes: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        require(0.0 <= self.gamma <= 1.0, f"gamma must lie in [0, 1], got {self.gamma}")
        require(0.0 < self.tau <= 1.0, f"tau must lie in (0, 1], got {self.tau}")
        require(self.warmup_steps >= 0, f"warmup_steps must be non-negative, got {self.warmup_steps}")
        require(self.replay_capacity >= 1, f"replay_capacity must be at least 1, got {self.replay_capacity}")
        require(
            len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes),
            f"hidden_sizes must be positive layer widths, got {self.hidden_sizes}",
        )


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def apply_overrides(config: ConfigT, assignments: Sequence[str]) -> ConfigT:
    """Return `config` with each `key=value` assignment parsed against the field's type."""
    fields = {f.name: f for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(type(config))
    changes: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {assignment!r}")
        if key not in fields:
            raise ConfigError(f"unknown key {key!r}{did_you_mean(key, fields)}; valid keys: {', '.join(fields)}")
        changes[key] = parse_value(key, text.strip(), hints[key])
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def parse_value(key: str, text: str, annotation: Any) -> Any:
    """Parse `text` as `annotation`: int, float, bool, str, tuple[int, ...] or `X | None`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if text.lower() == "none":
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return parse_value(key, text, inner)
    if origin is tuple:
        items = [item for item in text.replace(" ", "").split(",") if item]
        if not items:
            raise ConfigError(f"bad value for {key}: expected a comma-separated list, got {text!r}")
        return tuple(parse_value(key, item, args[0]) for item in items)
    parsers = {int: _parse_int, float: _parse_float, bool: _parse_bool, str: str}
    try:
        return parsers[annotation](text)
    except (ValueError, KeyError):
        name = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"bad value for {key}: {text!r} is not a valid {name}") from None


def _parse_int(text: str) -> int:
    """Accepts `256` and also `1e6`-style integers."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _parse_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return value


def _parse_bool(text: str) -> bool:
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text.lower()]
