"""Cross-task aggregates: which tasks and methods can be compared together, and rliable's estimates on them.

Separate from the per-task scores because it adds rules of its own: aggregates compare methods over the same
tasks, so they are computed over a complete task x method matrix; rliable needs equal runs per task only within
one method's [runs, tasks] array (methods are bootstrapped independently, and the probability of improvement and
performance profiles take different run counts per method), so each method keeps all its seeds, and a method with
unequal counts across tasks uses its own smallest count. On raw returns of tasks without a common scale
(`Scale` "per_task"), each task is an aggregate of its own.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from qsmbench.analysis.bootstrap import (
    Estimates,
    aggregate_metrics,
    interval_estimates,
    iqm_over_steps,
    performance_profiles,
    probability_of_improvement,
)
from qsmbench.analysis.scores import Group, Method, Scale, method_order, reference_meaning, run_scores, scores_on
from qsmbench.analysis.settings import PlotSettings, Progress
from qsmbench.core.messages import plural

CURVE_POINTS = 30  # points of the aggregate IQM-over-steps curve; each costs one bootstrap statistic
MIXED_SCALES = "tasks on mixed scales"


@dataclass(frozen=True)
class Aggregate:
    """Results on one set of tasks: all of rliable's estimates that the figures show."""

    tasks: list[str]
    methods: list[Method]
    runs: dict[Method, int]  # runs per task of each method (equal across tasks within a method: rliable's [runs, tasks])
    diverged: dict[Method, int]  # of those runs (summed over tasks), how many diverged and are scored by the rule
    score_name: str  # "normalised score" or "return"
    score_meaning: str  # what the values mean, e.g. "return / 1000"; "" when nothing needs saying
    metric_names: list[str]
    metrics: Estimates  # method -> [metrics]
    curve_steps: np.ndarray  # [T] steps of the IQM curve, shared by every aggregated run
    curve: Estimates | None  # method -> IQM at each of curve_steps; None with fewer than two shared steps
    taus: np.ndarray
    profiles: Estimates  # method -> fraction of runs above each tau
    reference: Method  # the method whose probability of improvement over the others is estimated
    improvement: Estimates  # baseline method -> P(reference > baseline); empty when skipped


def aggregate_cells(groups: list[Group], scale: Scale) -> tuple[list[str], list[Method], list[str]]:
    """The largest complete task x method matrix among the groups with scores on `scale`, and warnings.

    Aggregates are only comparable over the same tasks, so while a cell is missing, drop the task or the
    method with the larger fraction of missing cells (a task on a tie): a baseline run on one task only
    is dropped rather than shrinking everyone's aggregate to that task.
    """
    cells = {(group.task, group.method) for group in groups if scores_on(group, scale) is not None}
    tasks = sorted({task for task, _ in cells})
    methods = method_order(method for _, method in cells)
    warnings = [
        f"{task} has no reference scores: shown per task, left out of the aggregates"
        for task in sorted({group.task for group in groups} - set(tasks))
    ]
    while tasks and methods:
        task_gap = {task: sum((task, method) not in cells for method in methods) / len(methods) for task in tasks}
        method_gap = {method: sum((task, method) not in cells for task in tasks) / len(tasks) for method in methods}
        worst_task, worst_method = max(tasks, key=task_gap.__getitem__), max(methods, key=method_gap.__getitem__)
        if task_gap[worst_task] == 0:
            break
        if method_gap[worst_method] > task_gap[worst_task]:
            methods.remove(worst_method)
            warnings.append(f"{worst_method} left out of the aggregates: it has no runs on some of the tasks")
        else:
            tasks.remove(worst_task)
            warnings.append(f"{worst_task} left out of the aggregates: not every method has runs on it")
    return tasks, methods, warnings


def aggregates(
    groups: list[Group], final_at: dict[str, int], scale: Scale, reference: Method, settings: PlotSettings, progress: Progress
) -> tuple[list[Aggregate], list[str]]:
    """One aggregate over the tasks on a common scale, or (scale "per_task") one per task on raw returns."""
    if scale != "per_task":
        result, warnings = aggregate(groups, final_at, scale, reference, settings, progress)
        return ([result] if result else []), warnings
    results: list[Aggregate] = []
    warnings = []
    for task in sorted({group.task for group in groups}):
        result, task_warnings = aggregate([g for g in groups if g.task == task], final_at, scale, reference, settings, progress)
        results += [result] if result else []
        warnings += [f"{task}: {warning}" for warning in task_warnings]
    return results, warnings


def aggregate(
    groups: list[Group], final_at: dict[str, int], scale: Scale, reference: Method, settings: PlotSettings, progress: Progress
) -> tuple[Aggregate | None, list[str]]:
    """rliable's aggregate metrics, IQM curve, performance profiles and probability of improvement."""
    tasks, methods, warnings = aggregate_cells(groups, scale)
    if not tasks:
        return None, [*warnings, "no task has scores on a common scale: aggregate figures and rows skipped"]
    cell = {(group.task, group.method): group for group in groups}
    members = {method: [cell[task, method] for task in tasks] for method in methods}
    runs = {method: min(len(g.seeds) for g in gs) for method, gs in members.items()}
    warnings += unequal_warnings(members, runs)
    scores = {(g.task, g.method): scores_on(g, scale)[: runs[g.method]] for gs in members.values() for g in gs}
    diverged = {method: sum(len(set(g.seeds[: runs[method]]) & set(g.diverged)) for g in gs) for method, gs in members.items()}
    finals: dict[Hashable, np.ndarray] = {
        method: np.stack([run_scores(scores[g.task, method], g.steps, final_at[g.task], settings) for g in gs], axis=1)
        for method, gs in members.items()
    }
    normalised = scale == "reference"
    names, func = aggregate_metrics(normalised)
    progress(
        f"bootstrapping aggregate metrics ({plural(len(methods), 'method')} x {plural(len(tasks), 'task')}, "
        f"{plural(settings.reps, 'resample')})"
    )
    metric_estimates = interval_estimates(finals, func, settings)
    curve_steps = thin(sorted(set.intersection(*(set(g.steps) for gs in members.values() for g in gs))), CURVE_POINTS)
    curve = None
    if len(curve_steps) >= 2:
        progress(f"bootstrapping the IQM curve ({len(curve_steps)} steps)")
        curves: dict[Hashable, np.ndarray] = {
            method: np.stack([scores[g.task, method][:, np.isin(g.steps, curve_steps)] for g in gs], axis=1)
            for method, gs in members.items()
        }
        curve = interval_estimates(curves, iqm_over_steps, settings)
    else:
        warnings.append("sample-efficiency curve skipped: the aggregated runs share fewer than two evaluation steps")
    progress("bootstrapping performance profiles")
    taus, profiles = performance_profiles(finals, normalised, settings)
    improvement, note = probability_of_improvement(finals, reference, settings, progress)
    warnings += [note] if note else []
    name, meaning = scale_text(scale, [cell[task, methods[0]] for task in tasks])
    result = Aggregate(
        tasks, methods, runs, diverged, name, meaning, names, metric_estimates, curve_steps, curve, taus, profiles, reference, improvement
    )
    return result, warnings


def unequal_warnings(members: dict[Method, list[Group]], runs: dict[Method, int]) -> list[str]:
    """Name each method whose seed counts differ across tasks, and the tasks it has more seeds on: those are cut
    to its common count (its own only; no other method loses a seed)."""
    warnings = []
    for method, groups in members.items():
        more = [f"{g.task} ({len(g.seeds)})" for g in groups if len(g.seeds) > runs[method]]
        if more:
            warnings.append(
                f"{method}: aggregates use its common count of {plural(runs[method], 'seed')} per task, the first of "
                f"each task's seeds; it has more on {', '.join(more)}"
            )
    return warnings


def scale_text(scale: Scale, groups: list[Group]) -> tuple[str, str]:
    """The aggregate's score name and what its values mean; with several kinds of reference, each one
    named with the tasks it applies to."""
    if scale == "reference":
        meanings = dict(reference_meaning(group) for group in groups)
        if len(meanings) == 1:
            return "normalised score", next(iter(meanings.values()))
        return "normalised score", "; ".join(f"{kind}: {meaning}" for kind, meaning in meanings.items())
    return "return", MIXED_SCALES if len(groups) > 1 else ""


def thin(steps: list[int], points: int) -> np.ndarray:
    """At most `points` of `steps`, evenly spread, first and last kept."""
    if len(steps) <= points:
        return np.array(steps, dtype=int)
    return np.array(steps)[np.unique(np.linspace(0, len(steps) - 1, points).round().astype(int))]
