"""A run specification: the one object that says what a run is.

`qsmbench run`, the grid of `qsmbench reproduce`, the toy demo, the benchmarks and the tests all
build a `RunSpec` and hand it to `qsmbench.training.prepare.prepare`; nothing else assembles a run. Building one
checks that its parts belong together (the config is the algorithm's own, and an offline run
uses an algorithm with an offline formulation, and an online run trains beyond its random warm-up), so a
spec that exists is a consistent one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qsmbench.algorithms import ALGORITHMS, Algorithm, resolve
from qsmbench.core.config import Execution, OffPolicyConfig, Protocol, run_settings
from qsmbench.core.errors import ConfigError


@dataclass(frozen=True)
class RunSpec:
    """What a run measures (protocol) + how it executes + algorithm registry entry + that algorithm's config."""

    protocol: Protocol
    execution: Execution
    algorithm: Algorithm
    config: OffPolicyConfig

    def __post_init__(self) -> None:
        if type(self.config) is not self.algorithm.config_cls:
            raise ConfigError(
                f"{self.algorithm.name} takes a {self.algorithm.config_cls.__name__}, "
                f"not a {type(self.config).__name__}"
            )
        if self.protocol.dataset is not None and not self.algorithm.offline:
            offline = ", ".join(name for name, algorithm in ALGORITHMS.items() if algorithm.offline)
            raise ConfigError(
                f"{self.algo} has no offline formulation, so it cannot train from --dataset (offline: {offline})"
            )
        warmup = self.config.warmup_steps
        if self.protocol.dataset is None and self.protocol.steps <= warmup:  # offline runs have no warm-up
            raise ConfigError(
                f"--steps {self.protocol.steps} is not above {self.algo}'s warmup_steps {warmup}: every step would be "
                "random warm-up and nothing would be trained; give more --steps or --set warmup_steps=N"
            )

    @property
    def algo(self) -> str:
        return self.algorithm.name

    @property
    def method(self) -> str:
        """`qsm`, or `qsm[alpha=25]` for a labelled variant: how plot's tables and warnings name its runs too."""
        variant = self.execution.variant
        return f"{self.algo}[{variant}]" if variant else self.algo

    def with_settings(self, **changes: Any) -> RunSpec:
        """The same spec with some protocol or execution settings replaced (another `out`, device, block of seeds)."""
        protocol = {key: value for key, value in changes.items() if key in PROTOCOL_NAMES}
        execution = {key: value for key, value in changes.items() if key not in PROTOCOL_NAMES}
        return dataclasses.replace(
            self,
            protocol=dataclasses.replace(self.protocol, **protocol),
            execution=dataclasses.replace(self.execution, **execution),
        )

    def run_settings(self) -> dict[str, Any]:
        """Protocol and execution as one flat dict: what a run file records as `run_config`."""
        return run_settings(self.protocol, self.execution)


PROTOCOL_NAMES = frozenset(field.name for field in dataclasses.fields(Protocol))


def make_spec(algo: str, overrides: Sequence[str] = (), **settings: Any) -> RunSpec:
    """The spec of algorithm `algo` (by name) with `key=value` overrides of its defaults, and the run settings
    given by name (any field of `Protocol` or `Execution`, e.g. env="Hopper-v4", seeds=10, device="cpu")."""
    algorithm, config = resolve(algo, overrides)
    protocol = Protocol(**{key: value for key, value in settings.items() if key in PROTOCOL_NAMES})
    execution = Execution(**{key: value for key, value in settings.items() if key not in PROTOCOL_NAMES})
    return RunSpec(protocol, execution, algorithm, config)
