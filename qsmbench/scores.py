"""Run files -> groups of aligned learning curves -> final scores, on a scale fixed before any data is seen.

Separate from the bootstrap: everything here is deterministic, so the rules that decide which numbers are
compared (which steps, which budget, which reference) can be read and tested without rliable.
"""

from __future__ import annotations

import csv
import importlib.resources
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from qsmbench.algorithms import ALGORITHMS
from qsmbench.plot_settings import Normalize
from qsmbench.storage import OFFLINE_SCORE, RunFile, plural

DMC_PREFIX = "dm_control/"
DMC_MAX_RETURN = 1000.0


def algo_rank(algo: str) -> tuple[int, str]:
    """Sort key: the registry's order, then algorithms it does not know alphabetically (legends, colours)."""
    registered = list(ALGORITHMS)
    return (registered.index(algo) if algo in ALGORITHMS else len(registered), algo)


def algo_order(algos: Iterable[str]) -> list[str]:
    return sorted(set(algos), key=algo_rank)


@dataclass(frozen=True)
class Reference:
    random: float
    expert: float
    source: str


def reference_scores() -> dict[str, Reference]:
    """The shipped per-task random and expert returns (package data, so it works from an installed wheel).

    Keyed by the file's `env` column: the environment id, which is the task of an online run.
    """
    text = importlib.resources.files("qsmbench").joinpath("data/reference_scores.csv").read_text(encoding="utf-8")
    return {
        row["env"]: Reference(float(row["random_score"]), float(row["expert_score"]), row["source"])
        for row in csv.DictReader(text.splitlines())
    }


@dataclass(frozen=True)
class Group:
    """The runs of one algorithm on one task, aligned on the evaluation steps that all of them reached."""

    task: str
    algo: str
    seeds: tuple[int, ...]
    incomplete: tuple[str, ...]  # "seed (status)" of each run that is not complete
    diverged: tuple[str, ...]  # "seed (where)" of each run left out because it went non-finite
    offline: bool
    steps: np.ndarray  # [T]
    returns: np.ndarray  # [seeds, T] evaluation returns
    scores: np.ndarray | None  # [seeds, T] on the cross-task scale; None without a reference


def build_groups(runs: list[RunFile], normalize: Normalize) -> tuple[list[Group], list[str]]:
    """Group runs by (task, algorithm), align them, and attach each group's cross-task scores."""
    references = reference_scores()
    by_key: dict[tuple[str, str], list[RunFile]] = {}
    for run in runs:
        by_key.setdefault((run.task, run.algo), []).append(run)
    groups: list[Group] = []
    warnings: list[str] = []
    for (task, algo), members in sorted(by_key.items(), key=lambda item: (item[0][0], algo_rank(item[0][1]))):
        members.sort(key=lambda run: run.seed)
        warnings += config_warnings(task, algo, members)
        diverged = {run.seed: why for run in members if (why := divergence(run))}
        if diverged:
            listed = capped([f"seed {seed} ({why})" for seed, why in diverged.items()], ", ")
            warnings.append(f"{task} / {algo}: {len(diverged)} of {plural(len(members), 'seed')} diverged, left out: {listed}")
        members = [run for run in members if run.seed not in diverged]
        if not members:
            continue
        steps = sorted(set.intersection(*(set(run.curve["step"]) for run in members)))
        if not steps:
            warnings.append(f"{task} / {algo}: its runs share no evaluation step; left out")
            continue
        offline = all(OFFLINE_SCORE in run.curve.columns for run in members)
        returns = aligned(members, steps, "eval_return")
        scores = cross_task_scores(task, members, steps, returns, offline, normalize, references)
        incomplete = tuple(f"{run.seed} ({run.status})" for run in members if run.status != "complete")
        seeds = tuple(run.seed for run in members)
        diverged_text = tuple(f"{seed} ({why})" for seed, why in diverged.items())
        groups.append(Group(task, algo, seeds, incomplete, diverged_text, offline, np.array(steps), returns, scores))
    return groups, warnings


def divergence(run: RunFile) -> str | None:
    """Why a run cannot be scored: its status says it diverged, or (files of older versions) it holds
    non-finite evaluation values. None for a usable run."""
    if run.metadata.divergence is not None:
        return str(run.metadata.divergence)
    columns = [column for column in ("eval_return", OFFLINE_SCORE) if column in run.curve.columns]
    if not np.isfinite(run.curve[columns].to_numpy(dtype=float)).all():
        return "non-finite evaluation values"
    return None


# run_config fields that change what a run learns; seeds, seed_start, out and device do not
RESULT_RUN_FIELDS = ("env", "dataset", "steps", "eval_every", "eval_episodes")


def config_warnings(task: str, algo: str, runs: list[RunFile]) -> list[str]:
    """A warning for each setting on which the runs pooled into one group differ, with the seeds of each value."""
    settings: dict[str, dict[str, list[int]]] = {}
    for run in runs:
        header = run.metadata.header
        values = {**{f"run.{key}": header.run_config.get(key) for key in RESULT_RUN_FIELDS}, **header.algo_config}
        for key, value in values.items():
            settings.setdefault(key, {}).setdefault(repr(value), []).append(run.seed)
    return [
        f"{task} / {algo} pools runs trained with different {key}: "
        + capped([f"{shortened(value)} (seeds {seed_ranges(seeds)})" for value, seeds in by_value.items()], "; ")
        for key, by_value in settings.items()
        if len(by_value) > 1
    ]


LISTED = 10  # items one warning names; the rest are counted, so a warning about thousands of seeds stays one line
SHOWN_CHARS = 60  # of a setting's value


def capped(items: list[str], separator: str) -> str:
    """The first LISTED items, then how many more: 'a, b, c and 7 more'."""
    more = f" and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return separator.join(items[:LISTED]) + more


def shortened(text: str) -> str:
    """A setting's value as printed in a warning: a value thousands of characters long is cut (values are
    compared whole before, so two that differ only past the cut still warn)."""
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text):,} characters)"


def seed_ranges(seeds: list[int]) -> str:
    """Sorted seeds with each run of three or more consecutive seeds as a range: '0, 1, 4-9, 12'."""
    runs: list[list[int]] = []
    for seed in seeds:
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    parts = [f"{run[0]}-{run[-1]}" if len(run) >= 3 else ", ".join(map(str, run)) for run in runs]
    return capped(parts, ", ")


def aligned(runs: list[RunFile], steps: list[int], column: str) -> np.ndarray:
    """`column` of each run at `steps`: [runs, steps]. A run's curve is sorted by step, one row each
    (read_run), so a binary search finds the rows without building a pandas index per run."""
    return np.stack(
        [run.curve[column].to_numpy(dtype=float)[np.searchsorted(run.curve["step"].to_numpy(), steps)] for run in runs]
    )


def cross_task_scores(
    task: str,
    runs: list[RunFile],
    steps: list[int],
    returns: np.ndarray,
    offline: bool,
    normalize: Normalize,
    references: dict[str, Reference],
) -> np.ndarray | None:
    """The scale on which tasks are aggregated: fixed references only, never the data being plotted."""
    if normalize == "none":
        return returns
    if offline:
        return aligned(runs, steps, OFFLINE_SCORE) / 100.0
    if task.startswith(DMC_PREFIX):
        return returns / DMC_MAX_RETURN
    reference = references.get(task)
    if reference is None:
        return None
    return (returns - reference.random) / (reference.expert - reference.random)


def final_steps(groups: list[Group]) -> dict[str, int]:
    """Per task, the last evaluation step that every algorithm reached: final scores compare equal budgets."""
    steps: dict[str, int] = {}
    for group in groups:
        steps[group.task] = min(steps.get(group.task, int(group.steps[-1])), int(group.steps[-1]))
    return steps


def final_score(values: np.ndarray, steps: np.ndarray, final_step: int, last_evals: int) -> np.ndarray:
    """Each run's mean over its last `last_evals` evaluations at or before `final_step`: [runs]."""
    return values[:, steps <= final_step][:, -last_evals:].mean(axis=1)
