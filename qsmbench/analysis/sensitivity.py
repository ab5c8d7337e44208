"""Hyperparameter sensitivity: how one algorithm's score moves as one hyperparameter (or two) moves, from a sweep's runs.

A sweep's runs are variants of one algorithm (`qsm[alpha=25 diffusion_steps=10]`); their labels are free text
(`--name`), so the hyperparameters are compared as each group's runs recorded them (`Group.hyperparameters`),
never read from a label. On each task, for each algorithm with several groups:
- the *varied keys* are the hyperparameters whose values differ among its groups;
- a key's *default* is its algorithm's registry default (an algorithm the registry does not know has none);
- one key's series holds the groups whose other varied keys are all at their defaults, when they show at least
  two values of it: the others held fixed, so the change along the series is the key's alone. A key varied only
  together with another has no such groups, and no series;
- two keys whose values form a full product (every pair run, the other varied keys at defaults) get a heat map;
- a value shown by two groups (same hyperparameters, other labels or budgets) takes the first in method order,
  with a warning.
Each point is the IQM over seeds of the runs' scores (PlotSettings.score) on the analysis' scale, with the same
stratified bootstrap (and the same generator seed, so the same CI) as the group's row of the per-task table. On
the reference scale, the values run on every task of a series are also aggregated over tasks: the IQM of the runs x
tasks matrix, bootstrapped within tasks as the aggregates are. Every other algorithm's unlabelled group on the task
is a baseline. No matplotlib here (qsmbench.analysis.sensitivity_figures draws).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from qsmbench.algorithms import ALGORITHMS, resolve
from qsmbench.analysis.bootstrap import interval_estimates, iqm, pooled
from qsmbench.analysis.scores import Group, Method, Scale, algo_rank, reference_meaning, run_scores, scores_on
from qsmbench.analysis.settings import PlotSettings, Progress, Score
from qsmbench.core.messages import plural

ALL_TASKS = "all tasks"  # the task of an aggregate panel, as tables and figures name it

Rank = tuple[int, float, str]  # value_rank: equal for equal values, ordered as the axes show them
Cells = tuple[tuple[str, Method], ...]  # the (task, method) groups one estimate pools, one per task


@dataclass(frozen=True)
class Estimate:
    """IQM over runs (and tasks) with its 95% stratified bootstrap interval."""

    iqm: float
    low: float
    high: float
    seeds: int  # runs per task


@dataclass(frozen=True)
class Point:
    values: tuple[Any, ...]  # one per key of the series, as the run files hold them
    default: bool  # every key at its registry default
    estimate: Estimate


@dataclass(frozen=True)
class Baseline:
    method: Method  # another algorithm, unlabelled
    estimate: Estimate


@dataclass(frozen=True)
class Panel:
    """One task's points, or (task ALL_TASKS) their aggregate over `tasks`."""

    task: str
    tasks: tuple[str, ...]
    score_name: str  # "normalised score" or "return"
    score_meaning: str  # e.g. "0 = random, 1 = expert"; "" for returns
    points: list[Point]
    baselines: list[Baseline]


@dataclass(frozen=True)
class Sensitivity:
    """One algorithm's score against one key (a line) or two (a heat map), one panel per task, then the aggregate."""

    algo: str
    keys: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]  # per key, its values on any panel in value order: the axes
    defaults: dict[str, Any]  # the registry default of each key that has one
    panels: list[Panel]
    score: Score  # what a run's score is (PlotSettings.score), which every label of one names

    def is_default(self, key: str, value: Any) -> bool:
        return key in self.defaults and value_rank(self.defaults[key]) == value_rank(value)


def value_text(value: Any) -> str:
    """A value as ticks and tables show it: text as it is, a whole float as the integer it is (M_q 25, as its label
    `alpha=25` says), anything else as JSON (`0.0003`, `[256, 256]`, `true`)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def value_rank(value: Any) -> Rank:
    """Sort key and identity of a value: numbers numerically (25 and 25.0 are one value), then others by their text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, value_text(value))


def registry_defaults(algo: str) -> dict[str, Any]:
    """The algorithm's default hyperparameters as a run file holds them (JSON: tuples as lists), so they compare
    with a file's values; none for an algorithm the registry does not know."""
    if algo not in ALGORITHMS:
        return {}
    _, config = resolve(algo)
    return json.loads(json.dumps(dataclasses.asdict(config)))


def sensitivities(
    scored: list[Group], final_at: dict[str, int], scale: Scale, settings: PlotSettings, progress: Progress
) -> tuple[list[Sensitivity], list[str]]:
    """Every sensitivity series of the scored groups, with its estimates, and warnings (values run twice)."""
    found: dict[tuple[str, tuple[str, ...]], dict[str, dict[tuple[Rank, ...], Group]]] = {}
    warnings: list[str] = []
    for (task, algo), groups in by_task_and_algo(scored).items():
        warnings += same_settings_warnings(groups)
        for keys, at in series_on_task(groups, registry_defaults(algo)).items():
            found.setdefault((algo, keys), {})[task] = at
    if found:
        progress(f"bootstrapping hyperparameter sensitivity ({plural(len(found), 'figure')}, {plural(settings.reps, 'resample')})")
    scores = {(g.task, g.method): run_scores(panel_scores(g, scale), g.steps, final_at[g.task], settings) for g in scored}
    ordered = sorted(found.items(), key=lambda item: (algo_rank(item[0][0]), len(item[0][1]), item[0][1]))
    return [series(algo, keys, per_task, scored, scores, scale, settings) for (algo, keys), per_task in ordered], warnings


def by_task_and_algo(groups: list[Group]) -> dict[tuple[str, str], list[Group]]:
    """Groups of one algorithm on one task, in method order (the unlabelled one first): what a sweep compares."""
    cells: dict[tuple[str, str], list[Group]] = {}
    for group in groups:
        cells.setdefault((group.task, group.algo), []).append(group)
    return cells


def rank_of(group: Group, key: str) -> Rank | None:
    """The rank of the group's value of `key`; None when its runs did not record the key."""
    return value_rank(group.hyperparameters[key]) if key in group.hyperparameters else None


def varied_keys(groups: list[Group]) -> list[str]:
    """The hyperparameters whose values differ among the groups, alphabetically."""
    keys = sorted({key for group in groups for key in group.hyperparameters})
    return [key for key in keys if len({rank_of(group, key) for group in groups}) > 1]


def at_default(group: Group, key: str, defaults: dict[str, Any]) -> bool:
    return key in defaults and rank_of(group, key) == value_rank(defaults[key])


def sweep(groups: list[Group], keys: tuple[str, ...], varied: list[str], defaults: dict[str, Any]) -> dict[tuple[Rank, ...], Group]:
    """The groups whose varied keys other than `keys` are at their defaults, by their values of `keys` (the first
    group of a value when two share it)."""
    at: dict[tuple[Rank | None, ...], Group] = {}
    for group in groups:
        ranks = tuple(rank_of(group, key) for key in keys)
        held = all(at_default(group, key, defaults) for key in varied if key not in keys)
        if held and all(rank is not None for rank in ranks):
            at.setdefault(ranks, group)
    return at


def series_on_task(groups: list[Group], defaults: dict[str, Any]) -> dict[tuple[str, ...], dict[tuple[Rank, ...], Group]]:
    """One algorithm's series on one task: each varied key with at least two values at the others' defaults, and
    each pair of varied keys run as a full product (at least two values each) at the others' defaults."""
    varied = varied_keys(groups)
    found: dict[tuple[str, ...], dict[tuple[Rank, ...], Group]] = {}
    for key in varied:
        at = sweep(groups, (key,), varied, defaults)
        if len(at) >= 2:
            found[(key,)] = at
    for pair in combinations(varied, 2):
        at = sweep(groups, pair, varied, defaults)
        firsts, seconds = {ranks[0] for ranks in at}, {ranks[1] for ranks in at}
        if len(firsts) >= 2 and len(seconds) >= 2 and len(at) == len(firsts) * len(seconds):
            found[pair] = at
    return found


def same_settings_warnings(groups: list[Group]) -> list[str]:
    """Name the groups of one algorithm on one task trained with the same hyperparameters (other labels or budgets):
    a sensitivity series shows the first of them."""
    first: dict[str, Group] = {}
    warnings = []
    for group in groups:
        settings = json.dumps(group.hyperparameters, sort_keys=True)
        if settings in first:
            warnings.append(
                f"{group.name}: the same hyperparameters as {first[settings].method}; sensitivity figures show {first[settings].method}"
            )
        first.setdefault(settings, group)
    return warnings


def panel_scores(group: Group, scale: Scale) -> np.ndarray:
    """The group's evaluations on the analysis' scale; raw returns on a task without a reference (a panel of its own)."""
    values = scores_on(group, scale)
    return group.returns if values is None else values


def score_text(groups: Iterable[Group], scale: Scale) -> tuple[str, str]:
    """The score name and what its values mean, for a panel of these groups (one task, or several on the reference scale)."""
    groups = list(groups)
    if scale != "reference" or any(group.normalised is None for group in groups):
        return "return", ""
    meanings = dict(reference_meaning(group) for group in groups)
    if len(meanings) == 1:
        return "normalised score", next(iter(meanings.values()))
    return "normalised score", "; ".join(f"{kind}: {meaning}" for kind, meaning in meanings.items())


def pooled_iqm(scores: np.ndarray) -> np.ndarray:
    """[reps, runs, tasks] -> [reps]: the IQM over runs and tasks, as rliable's aggregate_iqm."""
    return iqm(pooled(scores), axis=1)


def estimates(cells: list[Cells], scores: dict[tuple[str, Method], np.ndarray], settings: PlotSettings) -> dict[Cells, Estimate]:
    """Each pooled set of groups' IQM and CI, its runs cut to their smallest count per task (the first seeds, as
    the aggregates cut them): a per-task point is its table row's IQM, with the same interval."""
    matrices = {}
    for key in cells:
        runs = min(len(scores[cell]) for cell in key)
        matrices[key] = np.stack([scores[cell][:runs] for cell in key], axis=1)
    found = interval_estimates(matrices, pooled_iqm, settings)
    return {
        key: Estimate(float(found.points[key]), float(found.intervals[key][0]), float(found.intervals[key][1]), len(matrices[key]))
        for key in cells
    }


def baselines_on(tasks: tuple[str, ...], algo: str, scored: list[Group], scale: Scale) -> list[Method]:
    """Every other algorithm's unlabelled method that has a group on each task (with scores, on the reference scale
    when several tasks are pooled)."""
    present: dict[Method, set[str]] = {}
    for g in scored:
        if g.algo != algo and not g.variant and g.task in tasks and (len(tasks) == 1 or scores_on(g, scale) is not None):
            present.setdefault(g.method, set()).add(g.task)
    return [method for method, on in present.items() if on == set(tasks)]


def series(
    algo: str,
    keys: tuple[str, ...],
    per_task: dict[str, dict[tuple[Rank, ...], Group]],
    scored: list[Group],
    scores: dict[tuple[str, Method], np.ndarray],
    scale: Scale,
    settings: PlotSettings,
) -> Sensitivity:
    """The series' panels: one per task, then (reference scale, two tasks or more) the values every task ran."""
    defaults = {key: value for key, value in registry_defaults(algo).items() if key in keys}
    panels = []
    for tasks, points in layouts(per_task, scale).items():
        baselines = {method: tuple((task, method) for task in tasks) for method in baselines_on(tasks, algo, scored, scale)}
        found = estimates([*points.values(), *baselines.values()], scores, settings)
        first = per_task[tasks[0]]  # the values' groups on one of the tasks, for their hyperparameters
        name, meaning = score_text((g for task in tasks for g in per_task[task].values()), scale)
        panels.append(
            Panel(
                task=tasks[0] if len(tasks) == 1 else ALL_TASKS,
                tasks=tasks,
                score_name=name,
                score_meaning=meaning,
                points=[point(keys, first[ranks], defaults, found[points[ranks]]) for ranks in sorted(points)],
                baselines=[Baseline(method, found[cells]) for method, cells in baselines.items()],
            )
        )
    groups = [g for at in per_task.values() for g in at.values()]
    return Sensitivity(algo, keys, axes(keys, groups), defaults, panels, settings.score)


def layouts(per_task: dict[str, dict[tuple[Rank, ...], Group]], scale: Scale) -> dict[tuple[str, ...], dict[tuple[Rank, ...], Cells]]:
    """Each panel's tasks, and the groups each of its points pools: one task's own, then on the reference scale (where
    every group has a reference) the values every task ran, when at least two did, over two tasks or more."""
    tasks = tuple(sorted(per_task))
    found = {(task,): {ranks: ((task, g.method),) for ranks, g in per_task[task].items()} for task in tasks}
    comparable = all(g.normalised is not None for at in per_task.values() for g in at.values())
    common = set.intersection(*(set(per_task[task]) for task in tasks))
    if scale == "reference" and comparable and len(tasks) >= 2 and len(common) >= 2:
        found[tasks] = {ranks: tuple((task, per_task[task][ranks].method) for task in tasks) for ranks in common}
    return found


def point(keys: tuple[str, ...], group: Group, defaults: dict[str, Any], estimate: Estimate) -> Point:
    return Point(tuple(group.hyperparameters[key] for key in keys), all(at_default(group, key, defaults) for key in keys), estimate)


def axes(keys: tuple[str, ...], groups: list[Group]) -> tuple[tuple[Any, ...], ...]:
    """Each key's values over the series' groups, one per value, in value order."""
    values: list[tuple[Any, ...]] = []
    for key in keys:
        distinct = {value_rank(g.hyperparameters[key]): g.hyperparameters[key] for g in groups}
        values.append(tuple(distinct[rank] for rank in sorted(distinct)))
    return tuple(values)


KEY_SEPARATOR = " \u00d7 "  # between the two keys (and values) of a heat map's rows


def sensitivity_rows(found: Iterable[Sensitivity]) -> list[dict[str, Any]]:
    """One row per algorithm, key (a heat map's two joined), task or ALL_TASKS, and value: sensitivity.csv's rows."""
    return [
        {
            "algo": item.algo, "key": KEY_SEPARATOR.join(item.keys), "task": panel.task,
            "value": KEY_SEPARATOR.join(value_text(value) for value in p.values),
            "score": "normalised" if panel.score_name == "normalised score" else "return", "score_rule": item.score,
            "tasks": len(panel.tasks), "seeds": p.estimate.seeds, "iqm": p.estimate.iqm, "iqm_ci_low": p.estimate.low,
            "iqm_ci_high": p.estimate.high, "default": p.default,
        }
        for item in found
        for panel in item.panels
        for p in panel.points
    ]
