"""The algorithm registry: adding an algorithm is one new file and one entry here."""

from algorithms import diffusion_ql, qsm, sac, td3
from algorithms.base import Agent, Algorithm

ALGORITHMS: dict[str, Algorithm] = {
    algorithm.name: algorithm for algorithm in (sac.ALGORITHM, td3.ALGORITHM, qsm.ALGORITHM, diffusion_ql.ALGORITHM)
}

__all__ = ["ALGORITHMS", "Agent", "Algorithm"]
