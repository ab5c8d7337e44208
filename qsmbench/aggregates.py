"""Cross-task aggregates: which tasks and algorithms can be compared together, and rliable's estimates on them.

Separate from the per-task scores because it adds one rule of its own: rliable needs [runs, tasks] arrays,
so an aggregate is only computed over a complete task x algorithm matrix with equal runs per cell.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from qsmbench.bootstrap import (
    Estimates,
    aggregate_metrics,
    interval_estimates,
    iqm_over_steps,
    performance_profiles,
    probability_of_improvement,
)
from qsmbench.plot_settings import PlotSettings, Progress
from qsmbench.scores import Group, algo_order, final_score
from qsmbench.storage import plural

CURVE_POINTS = 30  # points of the aggregate IQM-over-steps curve; each costs one bootstrap statistic


@dataclass(frozen=True)
class Aggregate:
    """Cross-task results on the common task set: all of rliable's estimates that the figures show."""

    tasks: list[str]
    algos: list[str]
    runs: int  # runs per task, equal for every algorithm and task (rliable needs [runs, tasks] arrays)
    metric_names: list[str]
    metrics: Estimates  # algo -> [metrics]
    curve_steps: np.ndarray  # [T] steps of the IQM curve, shared by every aggregated run
    curve: Estimates | None  # algo -> IQM at each of curve_steps; None with fewer than two shared steps
    taus: np.ndarray
    profiles: Estimates  # algo -> fraction of runs above each tau
    improvement: Estimates  # "<improvement_of>,<other>" -> P(improvement_of > other); empty when skipped


def aggregate_cells(groups: list[Group]) -> tuple[list[str], list[str], list[str]]:
    """The largest complete task x algorithm matrix among the groups with cross-task scores, and warnings.

    Aggregates are only comparable over the same tasks, so while a cell is missing, drop the task or the
    algorithm with the larger fraction of missing cells (a task on a tie): a baseline run on one task only
    is dropped rather than shrinking everyone's aggregate to that task.
    """
    cells = {(group.task, group.algo) for group in groups if group.scores is not None}
    tasks = sorted({task for task, _ in cells})
    algos = algo_order(algo for _, algo in cells)
    warnings = [
        f"{task} has no reference scores: shown per task, left out of the aggregates"
        for task in sorted({group.task for group in groups} - set(tasks))
    ]
    while tasks and algos:
        task_gap = {task: sum((task, algo) not in cells for algo in algos) / len(algos) for task in tasks}
        algo_gap = {algo: sum((task, algo) not in cells for task in tasks) / len(tasks) for algo in algos}
        worst_task, worst_algo = max(tasks, key=task_gap.__getitem__), max(algos, key=algo_gap.__getitem__)
        if task_gap[worst_task] == 0:
            break
        if algo_gap[worst_algo] > task_gap[worst_task]:
            algos.remove(worst_algo)
            warnings.append(f"{worst_algo} left out of the aggregates: it has no runs on some of the tasks")
        else:
            tasks.remove(worst_task)
            warnings.append(f"{worst_task} left out of the aggregates: not every algorithm has runs on it")
    return tasks, algos, warnings


def aggregate(
    groups: list[Group], final_at: dict[str, int], settings: PlotSettings, progress: Progress
) -> tuple[Aggregate | None, list[str]]:
    """rliable's aggregate metrics, IQM curve, performance profiles and probability of improvement."""
    tasks, algos, warnings = aggregate_cells(groups)
    if not tasks:
        return None, [*warnings, "no task has scores on a common scale: aggregate figures and rows skipped"]
    cell = {(group.task, group.algo): group for group in groups}
    runs = min(len(cell[task, algo].seeds) for task in tasks for algo in algos)
    if any(len(cell[task, algo].seeds) > runs for task in tasks for algo in algos):
        warnings.append(f"aggregates use the first {plural(runs, 'seed')} of every task and algorithm (rliable needs equal counts)")
    members = {algo: [cell[task, algo] for task in tasks] for algo in algos}
    finals: dict[Hashable, np.ndarray] = {
        algo: np.stack([final_score(g.scores[:runs], g.steps, final_at[g.task], settings.last_evals) for g in gs], axis=1)
        for algo, gs in members.items()
    }
    names, func = aggregate_metrics(settings.normalize)
    progress(
        f"bootstrapping aggregate metrics ({plural(len(algos), 'algorithm')} x {plural(len(tasks), 'task')}, "
        f"{plural(settings.reps, 'resample')})"
    )
    metric_estimates = interval_estimates(finals, func, settings)
    curve_steps = thin(sorted(set.intersection(*(set(g.steps) for gs in members.values() for g in gs))), CURVE_POINTS)
    curve = None
    if len(curve_steps) >= 2:
        progress(f"bootstrapping the IQM curve ({len(curve_steps)} steps)")
        curves: dict[Hashable, np.ndarray] = {
            algo: np.stack([g.scores[:runs][:, np.isin(g.steps, curve_steps)] for g in gs], axis=1)
            for algo, gs in members.items()
        }
        curve = interval_estimates(curves, iqm_over_steps, settings)
    else:
        warnings.append("sample-efficiency curve skipped: the aggregated runs share fewer than two evaluation steps")
    progress("bootstrapping performance profiles")
    taus, profiles = performance_profiles(finals, settings)
    improvement, note = probability_of_improvement(finals, settings, progress)
    warnings += [note] if note else []
    return Aggregate(tasks, algos, runs, names, metric_estimates, curve_steps, curve, taus, profiles, improvement), warnings


def thin(steps: list[int], points: int) -> np.ndarray:
    """At most `points` of `steps`, evenly spread, first and last kept."""
    if len(steps) <= points:
        return np.array(steps, dtype=int)
    return np.array(steps)[np.unique(np.linspace(0, len(steps) - 1, points).round().astype(int))]
