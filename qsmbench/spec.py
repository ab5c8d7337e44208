"""A run specification: the one object that says what a run is.

`qsmbench run`, the grid of `qsmbench reproduce`, the toy demo, the benchmarks and the tests all
build a `RunSpec` and hand it to `trainer.prepare`; nothing else assembles a run. Building one
checks that its parts belong together (the config is the algorithm's own, and an offline run
uses an algorithm with an offline formulation, and an online run trains beyond its random warm-up), so a
spec that exists is a consistent one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from qsmbench.algorithms import ALGORITHMS, Algorithm, resolve
from qsmbench.config import OffPolicyConfig, RunConfig
from qsmbench.errors import ConfigError


@dataclass(frozen=True)
class RunSpec:
    """Run settings + algorithm registry entry + that algorithm's config."""

    run: RunConfig
    algorithm: Algorithm
    config: OffPolicyConfig

    def __post_init__(self) -> None:
        if type(self.config) is not self.algorithm.config_cls:
            raise ConfigError(
                f"{self.algorithm.name} takes a {self.algorithm.config_cls.__name__}, "
                f"not a {type(self.config).__name__}"
            )
        if self.run.dataset is not None and not self.algorithm.offline:
            offline = ", ".join(name for name, algorithm in ALGORITHMS.items() if algorithm.offline)
            raise ConfigError(
                f"{self.algo} has no offline formulation, so it cannot train from --dataset (offline: {offline})"
            )
        warmup = self.config.warmup_steps
        if self.run.dataset is None and self.run.steps <= warmup:  # offline runs have no warm-up
            raise ConfigError(
                f"--steps {self.run.steps} is not above {self.algo}'s warmup_steps {warmup}: every step would be "
                "random warm-up and nothing would be trained; give more --steps or --set warmup_steps=N"
            )

    @property
    def algo(self) -> str:
        return self.algorithm.name

    def with_run(self, **changes: Any) -> RunSpec:
        """The same spec with some run settings replaced (e.g. another `out`, device or block of seeds)."""
        return dataclasses.replace(self, run=dataclasses.replace(self.run, **changes))


def make_spec(algo: str, run: RunConfig, overrides: Sequence[str] = ()) -> RunSpec:
    """The spec of algorithm `algo` (by name) with `key=value` overrides of its defaults."""
    algorithm, config = resolve(algo, overrides)
    return RunSpec(run, algorithm, config)
