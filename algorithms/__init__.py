"""The algorithm registry: adding an algorithm is one new file here and one entry in `ALGORITHMS`.

Installed as `qsmbench.algorithms` (see pyproject.toml): a top-level package named `algorithms`
would clash with an unrelated, widely installed PyPI package of that name.
"""

from __future__ import annotations

from collections.abc import Sequence

from qsmbench.algorithms import dacer, diffusion_ql, dipo, dpmd, qsm, qsm_flowrl, qsm_relax, qvpo, sac, sdac, td3
from qsmbench.algorithms.contract import Agent, Algorithm
from qsmbench.core.config import OffPolicyConfig, apply_overrides, did_you_mean
from qsmbench.core.errors import ConfigError

# Registry order is the order of `qsmbench list`, of legends and of colours in every figure.
ALGORITHMS: dict[str, Algorithm] = {
    algorithm.name: algorithm for algorithm in (
        qsm.ALGORITHM, diffusion_ql.ALGORITHM, dipo.ALGORITHM, qvpo.ALGORITHM, dacer.ALGORITHM, sdac.ALGORITHM,
        dpmd.ALGORITHM, sac.ALGORITHM, td3.ALGORITHM, qsm_flowrl.ALGORITHM,
        qsm_relax.ALGORITHM,
    )
}


def lookup(name: str) -> Algorithm:
    """The registry entry called `name`; a one-line ConfigError with close matches otherwise."""
    if name not in ALGORITHMS:
        raise ConfigError(
            f"unknown algorithm {name!r}{did_you_mean(name, ALGORITHMS)}; choose from: {', '.join(ALGORITHMS)}"
        )
    return ALGORITHMS[name]


def resolve(name: str, overrides: Sequence[str] = ()) -> tuple[Algorithm, OffPolicyConfig]:
    """The algorithm called `name` and its default config with the `key=value` overrides applied."""
    algorithm = lookup(name)
    return algorithm, apply_overrides(algorithm.config_cls(), overrides)


__all__ = ["ALGORITHMS", "Agent", "Algorithm", "lookup", "resolve"]
