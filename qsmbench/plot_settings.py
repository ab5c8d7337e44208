"""The choices behind every number that `qsmbench plot` writes, in one frozen dataclass.

A module of its own because every stage of the plot reads them (scores, bootstrap, aggregates, tables)
and the command line and grid files build them: defined below all of those, it causes no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from qsmbench.config import require

Normalize = Literal["reference", "none"]
Progress = Callable[[str], None]  # called with a short message before each stage that may take a while


@dataclass(frozen=True)
class PlotSettings:
    """The choices behind every number in the tables and figures."""

    normalize: Normalize = "reference"  # "none": aggregate raw returns
    last_evals: int = 5  # a run's final score is the mean of its last `last_evals` evaluations
    reps: int = 2000  # bootstrap resamples
    seed: int = 0  # NumPy seed set before each bootstrap
    improvement_of: str = "qsm"  # the probability of improvement of this algorithm over each other one

    def __post_init__(self) -> None:
        choices = ", ".join(get_args(Normalize))
        require(self.normalize in get_args(Normalize), f"normalize must be one of {choices}, got {self.normalize!r}")
        require(self.last_evals >= 1, f"last_evals must be at least 1, got {self.last_evals}")
        require(self.reps >= 1, f"reps must be at least 1, got {self.reps}")
        require(self.improvement_of.strip() != "", "improvement_of must name an algorithm, got an empty name")
