"""The algorithm registry: adding an algorithm is one new file and one line here."""

from algorithms import sac, td3
from algorithms.base import Agent, Algorithm

ALGORITHMS: dict[str, Algorithm] = {algorithm.name: algorithm for algorithm in (sac.ALGORITHM, td3.ALGORITHM)}

__all__ = ["ALGORITHMS", "Agent", "Algorithm"]
