"""What `qsmbench plot` computes: run files -> aligned learning curves -> final scores -> bootstrap CIs -> tables.

This module runs the stages in order (qsmbench.scores, .bootstrap, .aggregates, .tables) and warns about
what the user should know; the figures are drawn from its result by qsmbench.figures. No matplotlib here,
and no rliable (only the figures import them), so importing it stays cheap for the command line.

The rules, decided once here and stated in the tables and figure titles:
- A group is the runs (seeds) of one algorithm on one task (what a run learns and is filed under: a
  Gymnasium id online, a dataset id offline). Its learning curve uses the evaluation steps that every one of
  its runs reached, so an incomplete run (status != complete) shortens its group's curve instead of being
  dropped; such runs are listed in a warning.
- A seed that diverged (status `diverged`, or non-finite evaluation values in a file of an older version)
  enters no number: it is named in a warning and counted in the table's `diverged` column.
- A group whose runs were trained with different settings (algo_config, or the run settings that change
  results) is pooled as asked, with a warning naming each differing setting and the seeds of each value.
- Algorithms are compared at equal budgets: on each task the final score of a run is the mean of its last K
  evaluations at or before the task's final step, the last step that every algorithm on that task reached.
- Scores are normalised with fixed references, never with the data being plotted: an offline run's
  `eval_normalized_score` / 100; DeepMind Control return / 1000; otherwise (R - random) / (expert - random)
  from qsmbench/data/reference_scores.csv. Tasks without a reference are shown per task only.
- Aggregates need a complete task x algorithm matrix with equal runs per task; see `aggregate_cells`.
- The probability of improvement compares one algorithm (`PlotSettings.improvement_of`) with each other
  algorithm in the aggregates; it is skipped, with a note, when that algorithm has no runs there.
- Algorithms are listed (and coloured) in the registry's order, then unregistered ones alphabetically.
- Bootstraps are rliable's stratified percentile bootstrap, vectorised over resamples (qsmbench.bootstrap);
  each estimate draws from its own generator seeded with `PlotSettings.seed`, so a group's CI depends only
  on its own runs and the same inputs always give the same CIs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from qsmbench.aggregates import Aggregate, aggregate
from qsmbench.bootstrap import Estimates, interval_estimates, mean_over_runs
from qsmbench.config import ConfigError
from qsmbench.plot_settings import PlotSettings, Progress
from qsmbench.scores import Group, build_groups, capped, final_steps
from qsmbench.storage import RunFile, plural
from qsmbench.tables import aggregate_rows, summary_table, task_rows


@dataclass(frozen=True)
class Analysis:
    """Everything the tables and figures show, computed once."""

    groups: list[Group]
    final_steps: dict[str, int]  # task -> the step its final scores are taken at
    settings: PlotSettings
    table: pd.DataFrame  # columns TABLE_COLUMNS
    curve_bands: Estimates  # (task, algo) -> mean over seeds at each group step
    aggregate: Aggregate | None
    warnings: list[str]


def analyse(runs: list[RunFile], settings: PlotSettings, progress: Progress) -> Analysis:
    """Align, score and bootstrap: the whole computation behind `qsmbench plot`, without drawing."""
    groups, warnings = build_groups(runs, settings.normalize)
    if not groups:
        raise ConfigError("no task and algorithm has runs that share an evaluation step")
    warnings += incomplete_warnings(groups) + budget_warnings(groups)
    final_at = final_steps(groups)
    progress(f"bootstrapping learning-curve bands ({plural(len(groups), 'curve')}, {plural(settings.reps, 'resample')})")
    bands = interval_estimates({(g.task, g.algo): g.returns[:, None, :] for g in groups}, mean_over_runs, settings)
    progress(
        f"bootstrapping per-task final scores ({plural(len(groups), 'task/algorithm pair')}, "
        f"{plural(settings.reps, 'resample')})"
    )
    rows = task_rows(groups, final_at, settings)
    result, aggregate_warnings = aggregate(groups, final_at, settings, progress)
    if result is not None:
        rows += aggregate_rows(result, settings)
    return Analysis(groups, final_at, settings, summary_table(rows), bands, result, warnings + aggregate_warnings)


def incomplete_warnings(groups: list[Group]) -> list[str]:
    listed = [f"{g.task} / {g.algo} seeds {capped(list(g.incomplete), ', ')}" for g in groups if g.incomplete]
    if not listed:
        return []
    return ["incomplete runs, used up to the evaluation steps their group shares: " + capped(listed, "; ")]


def budget_warnings(groups: list[Group]) -> list[str]:
    steps = final_steps(groups)
    return [
        f"{g.task}: final scores compare algorithms at step {steps[g.task]}, the last one all of them reached; "
        f"{g.algo} ran to {int(g.steps[-1])}"
        for g in groups
        if g.steps[-1] > steps[g.task]
    ]
