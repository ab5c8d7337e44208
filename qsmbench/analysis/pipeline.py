"""What `qsmbench plot` computes: run files -> aligned learning curves -> final scores -> bootstrap CIs -> tables.

This module runs the stages in order (qsmbench.analysis.scores, .bootstrap, .aggregates, .tables) and warns about
what the user should know; the figures are drawn from its result by qsmbench.analysis.figures. No matplotlib here,
and no rliable (only the figures import them), so importing it stays cheap for the command line.

The rules, decided once here and stated in the tables and figure titles:
- A group is the runs (seeds) of one method on one task: a method is an algorithm, or a variant of it (the
  run's `--name`, or a label of its `--set` values), so ablations are separate groups. The task is what a
  run learns and is filed under (a Gymnasium id online, a dataset id offline). A group's learning curve
  uses the evaluation steps that every one of its runs reached, so an incomplete run (status != complete)
  shortens its group's curve instead of being dropped; such runs are listed in a warning.
- The runs of one group must have been trained with the same hyperparameters and budget (steps,
  update_every, action_repeat, eval_every, eval_episodes); otherwise plot stops with a one-line error naming two such files.
- A seed that diverged (status `diverged`, or non-finite evaluation values in a file of an older version)
  is a failed run, not a missing one: `PlotSettings.diverged` scores it after its divergence as its own
  step-0 evaluation (`untrained`, the default) or its last finite one (`last`), or leaves it out of every
  number (`exclude`). It is named in a warning, counted in the table's `diverged` column next to the rule
  (`diverged_rule`), and its learning curve is drawn up to its divergence.
- Methods are compared at equal budgets: on each task the final score of a run is the mean of its last K
  evaluations after step 0 (the untrained policy) and at or before the task's final step, the last step
  that every method on that task reached. Fewer than K such evaluations are warned about; none, and the
  group has no final score. `PlotSettings.score` "best" takes each run's highest evaluation in the same
  window instead (the papers' "best during training"), labelled optimistic in every table and figure.
- A group with fewer than 3 seeds is warned about and marked in the table: its intervals mean nothing.
- Scores are normalised with fixed references, never with the data being plotted: an offline run's
  `eval_normalized_score` / 100; DeepMind Control return / 1000; otherwise (R - random) / (expert - random)
  from qsmbench/data/reference_scores.csv. `auto` (the default) aggregates raw returns one task at a time
  when some task has no reference; see `scores.resolve_scale`.
- Aggregates need a complete task x method matrix (see `aggregate_cells`); each method keeps all its seeds, cut
  to its own common count when its tasks have different counts (with a warning): no method loses seeds to another.
- summary.md starts with this protocol as it applied (`tables.protocol_lines`).
- The probability of improvement compares one method (`PlotSettings.reference`, by default the first in
  the registry's order) with each other method in the aggregates; a name with no runs is an error, and the
  estimate is skipped, with a note, when that method is not in an aggregate.
- Methods are listed (and coloured) in the registry's order, then unregistered algorithms alphabetically,
  each algorithm's variants after it.
- `PlotSettings.published` (or a `published_file`) reads published numbers (qsmbench.analysis.published) before
  anything else, so a malformed file stops the plot at once, and sets each beside the tasks whose environment
  (Gymnasium `-vN` suffix ignored), score rule and final step it matches; a warning when none matches.
- Runs of one algorithm on a task that differ in hyperparameters (a sweep's variants) also give its sensitivity to
  each one varied alone, the others at their registry defaults, and heat maps of pairs run as a full product
  (qsmbench.analysis.sensitivity): compared by the hyperparameters the run files hold, never by their labels.
- Bootstraps are rliable's stratified percentile bootstrap, vectorised over resamples (qsmbench.analysis.bootstrap);
  each estimate draws from its own generator seeded with `PlotSettings.seed`, so a group's CI depends only
  on its own runs and the same inputs always give the same CIs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from qsmbench.analysis.aggregates import Aggregate, aggregates
from qsmbench.analysis.bootstrap import MIN_SEEDS, Estimates, interval_estimates, mean_over_runs
from qsmbench.analysis.published import Published, match_published, published_warnings, read_published
from qsmbench.analysis.scores import (
    Group,
    Method,
    Scale,
    build_groups,
    capped,
    final_steps,
    method_order,
    resolve_scale,
    scored_groups,
)
from qsmbench.analysis.sensitivity import Sensitivity, sensitivities
from qsmbench.analysis.settings import PlotSettings, Progress, Score, score_words
from qsmbench.analysis.tables import aggregate_rows, protocol_lines, summary_table, task_rows
from qsmbench.core.errors import ConfigError
from qsmbench.core.messages import plural
from qsmbench.runs.format import RunFile


@dataclass(frozen=True)
class Analysis:
    """Everything the tables and figures show, computed once."""

    groups: list[Group]
    final_steps: dict[str, int]  # task -> the step its final scores are taken at
    settings: PlotSettings
    scale: Scale  # what the aggregates compare (settings.normalize, with "auto" resolved)
    table: pd.DataFrame  # columns TABLE_COLUMNS
    protocol: list[str]  # what the numbers stand on, as summary.md states it first
    curve_bands: Estimates  # (task, method) -> mean over seeds at each group step
    aggregates: list[Aggregate]  # one over the tasks on a common scale, or one per task (scale "per_task")
    warnings: list[str]
    sensitivity: list[Sensitivity]  # each algorithm's score against its varied hyperparameters (qsmbench.analysis.sensitivity)
    published: Published | None = None  # published numbers matched to the tasks (`--published`); None without it


def analyse(runs: list[RunFile], settings: PlotSettings, progress: Progress) -> Analysis:
    """Align, score and bootstrap: the whole computation behind `qsmbench plot`, without drawing."""
    published_rows = read_published(settings) if settings.compares_published else None  # a bad file stops us first
    groups, warnings = build_groups(runs, settings.diverged)
    if not groups:
        raise ConfigError("no task and algorithm has runs that share an evaluation step")
    reference = resolve_reference(settings.reference, groups)
    warnings += incomplete_warnings(groups) + budget_warnings(groups, settings.score) + few_seeds_warnings(groups)
    final_at = final_steps(groups)
    published = None
    if published_rows is not None:
        tasks = sorted({group.task for group in groups})
        published = match_published(*published_rows, final_at, tasks, settings.score)
    scored, final_warnings = scored_groups(groups, final_at, settings)
    scale = resolve_scale(settings.normalize, groups)
    warnings += scale_warnings(settings, scale, groups)
    progress(f"bootstrapping learning-curve bands ({plural(len(groups), 'curve')}, {plural(settings.reps, 'resample')})")
    bands = interval_estimates({(g.task, g.method): g.returns[:, None, :] for g in groups}, mean_over_runs, settings)
    progress(
        f"bootstrapping per-task {score_words(settings.score, 'scores')} ({plural(len(scored), 'task/method pair')}, "
        f"{plural(settings.reps, 'resample')})"
    )
    rows = task_rows(scored, final_at, scale, settings)
    results, aggregate_warnings = aggregates(scored, final_at, scale, reference, settings, progress)
    for result in results:
        rows += aggregate_rows(result, settings)
    sensitivity, sensitivity_warnings = sensitivities(scored, final_at, scale, settings, progress)
    warnings += final_warnings + aggregate_warnings + sensitivity_warnings + published_warnings(published)
    protocol = protocol_lines(groups, scale, settings)
    return Analysis(
        groups, final_at, settings, scale, summary_table(rows), protocol, bands, results, warnings, sensitivity, published
    )


def resolve_reference(name: str, groups: list[Group]) -> Method:
    """The method named by `--reference` (`qsm`, or `qsm[alpha=120]` for a variant), or by default the first
    in the registry's order; a one-line error naming the choices when no group has that name."""
    methods = method_order(group.method for group in groups)
    if not name:
        return methods[0]
    named = [method for method in methods if str(method) == name]
    if not named:
        raise ConfigError(f"--reference {name}: no runs of it here; choose from {', '.join(map(str, methods))}")
    return named[0]


def scale_warnings(settings: PlotSettings, scale: Scale, groups: list[Group]) -> list[str]:
    """Say why `auto` chose raw returns: the reader of a per-task aggregate should know it is not normalised."""
    if settings.normalize != "auto" or scale != "per_task":
        return []
    missing = sorted({group.task for group in groups if group.normalised is None})
    return [
        f"{capped(missing, ', ')} {'has' if len(missing) == 1 else 'have'} no reference scores: aggregates are on raw "
        "returns, one task at a time (--normalize auto; --normalize reference leaves such tasks out instead)"
    ]


def incomplete_warnings(groups: list[Group]) -> list[str]:
    listed = [f"{g.name} seeds {capped(list(g.incomplete), ', ')}" for g in groups if g.incomplete]
    if not listed:
        return []
    return ["incomplete runs, used up to the evaluation steps their group shares: " + capped(listed, "; ")]


def budget_warnings(groups: list[Group], rule: Score) -> list[str]:
    steps = final_steps(groups)
    return [
        f"{g.task}: {score_words(rule, 'scores')} compare methods at step {steps[g.task]}, the last one all of them reached; "
        f"{g.method} ran to {int(g.steps[-1])}"
        for g in groups
        if g.task in steps and g.steps[-1] > steps[g.task]
    ]


def few_seeds_warnings(groups: list[Group]) -> list[str]:
    """rliable's bootstrap resamples seeds: with one or two, its 95% interval describes nothing."""
    return [
        f"{g.name}: {len(g.seeds)} seed{'s' * (len(g.seeds) != 1)}, fewer than {MIN_SEEDS}: its confidence intervals "
        "are not meaningful"
        for g in groups
        if len(g.seeds) < MIN_SEEDS
    ]
