"""The choices behind every number that `qsmbench plot` writes, and how its figures are labelled.

A module of its own because every stage of the plot reads them (scores, bootstrap, aggregates, tables,
figures) and the command line and grid files build them: defined below all of those, it causes no import
cycle, and the command line gets them without importing matplotlib.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from qsmbench.core.config import require

Normalize = Literal["auto", "reference", "none"]
Diverged = Literal["untrained", "last", "exclude"]  # how a seed that diverged is scored; see scores.build_groups
Score = Literal["final", "best"]  # what one number of a run is; see scores.run_scores
Progress = Callable[[str], None]  # called with a short message before each stage that may take a while


@dataclass(frozen=True)
class PlotSettings:
    """The choices behind every number in the tables and figures."""

    # auto: "reference" when every task has reference scores, else raw returns aggregated one task at a time;
    # reference: fixed reference scores (tasks without one are left out of the aggregates); none: raw returns
    normalize: Normalize = "auto"
    last_evals: int = 5  # a run's final score is the mean of its last `last_evals` evaluations after step 0
    reps: int = 2000  # bootstrap resamples
    seed: int = 0  # NumPy seed set before each bootstrap
    reference: str = ""  # P(improvement) of this method over each other one; "" = the first in the registry's order
    # untrained: a diverged seed scores its own step-0 evaluation after its divergence (a NaN policy is no better
    # than an untrained one); last: its last finite evaluation; exclude: it enters no number (survivors only)
    diverged: Diverged = "untrained"
    # final: the mean of the last `last_evals` evaluations; best: each run's best evaluation during training, the
    # metric of CGPO's and QVPO's tables, biased upward (the maximum of noisy evaluations) and labelled optimistic
    score: Score = "final"
    # published numbers beside ours (qsmbench.analysis.published), where task, metric and budget match: from
    # `published_file` when it names a CSV (which implies `published`), else from qsmbench/data/published.csv
    published: bool = False
    published_file: str = ""

    def __post_init__(self) -> None:
        choices = ", ".join(get_args(Normalize))
        require(self.normalize in get_args(Normalize), f"normalize must be one of {choices}, got {self.normalize!r}")
        rules = ", ".join(get_args(Diverged))
        require(self.diverged in get_args(Diverged), f"diverged must be one of {rules}, got {self.diverged!r}")
        scores = ", ".join(get_args(Score))
        require(self.score in get_args(Score), f"score must be one of {scores}, got {self.score!r}")
        require(self.last_evals >= 1, f"last_evals must be at least 1, got {self.last_evals}")
        require(self.reps >= 1, f"reps must be at least 1, got {self.reps}")
        require(self.reference == self.reference.strip(), f"reference must be a method's name, got {self.reference!r}")
        require("\0" not in self.published_file, "published_file contains a NUL character, which no path can hold")

    @property
    def compares_published(self) -> bool:
        """Whether published numbers are shown: `published`, or a `published_file` named."""
        return self.published or bool(self.published_file)


OPTIMISTIC = "best during training (optimistic)"  # how every figure and table names a `best` score


def score_words(rule: Score, name: str) -> str:
    """What a score is called in every figure and table: `final normalised score`, or under `best`
    `normalised score best during training (optimistic)`, never a best point called final."""
    return f"final {name}" if rule == "final" else f"{name} {OPTIMISTIC}"


def capitalised(text: str) -> str:
    """`final return` -> `Final return`, for the start of a label or heading (the rest keeps its case)."""
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class FigureStyle:
    """How the figures name and size things; changes no number."""

    labels: Mapping[str, str] = field(default_factory=dict)  # algorithm or task id -> the name figures show
    titles: bool = True  # the title above each figure that says what is shown, over how many seeds
    figsize: tuple[float, float] | None = None  # inches, for every figure; None: sized by its content

    def __post_init__(self) -> None:
        for key, text in self.labels.items():
            require(key.strip() != "" and text.strip() != "", f"a label needs a name and a text, got {key!r}={text!r}")
        if self.figsize is not None:
            width, height = self.figsize
            require(0 < width <= 100 and 0 < height <= 100, f"figsize must be two sizes in (0, 100] inches, got {width},{height}")
