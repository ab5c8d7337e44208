"""The summary table: its rows (with their bootstrap CIs), summary.csv and the readable summary.md.

One module for the columns and for the text that explains them, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qsmbench.analysis.aggregates import Aggregate
from qsmbench.analysis.bootstrap import MIN_SEEDS, Estimates, interval_estimates, iqm_and_mean
from qsmbench.analysis.published import PUBLISHED_COLUMNS, Published
from qsmbench.analysis.scores import DMC_MAX_RETURN, DMC_PREFIX, Group, Method, Scale, reference_scores, run_scores
from qsmbench.analysis.sensitivity import Sensitivity, sensitivity_rows
from qsmbench.analysis.settings import OPTIMISTIC, PlotSettings, capitalised, score_words
from qsmbench.core.messages import plural
from qsmbench.runs.write import replace_atomically

COUNT_COLUMNS = ("tasks", "seeds", "incomplete", "diverged", "final_step", "last_evals")  # integers, empty where n/a
# `score` is the scale (return or normalised); `score_rule` what a run's score is (final or best, PlotSettings.score),
# with `last_evals` empty under best
TABLE_COLUMNS = (
    "scope", "task", "algo", "variant", "score", "tasks", "seeds", "incomplete", "diverged", "diverged_rule", "final_step",
    "score_rule", "last_evals",
    "iqm", "iqm_ci_low", "iqm_ci_high", "mean", "mean_ci_low", "mean_ci_high",
    "median", "median_ci_low", "median_ci_high", "optimality_gap", "optimality_gap_ci_low", "optimality_gap_ci_high",
)


def summary_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as summary.csv holds them: TABLE_COLUMNS, with counts as integers that may be empty."""
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype({column: "Int64" for column in COUNT_COLUMNS})


def task_rows(groups: list[Group], final_at: dict[str, int], scale: Scale, settings: PlotSettings) -> list[dict[str, Any]]:
    """One row per task, method and scale (return, and normalised score where there is a reference)."""
    finals: dict[Hashable, np.ndarray] = {}
    for g in groups:
        at = final_at[g.task]
        finals[g.task, g.method, "return"] = run_scores(g.returns, g.steps, at, settings)[:, None]
        if scale == "reference" and g.normalised is not None:
            finals[g.task, g.method, "normalised"] = run_scores(g.normalised, g.steps, at, settings)[:, None]
    estimates = interval_estimates(finals, iqm_and_mean, settings)
    group = {(g.task, g.method): g for g in groups}
    rows = []
    for task, method, score in finals:
        g = group[task, method]
        rows.append(
            {
                "scope": "task", "task": task, **method_columns(method), "score": score, "tasks": 1,
                "seeds": len(g.seeds), "incomplete": len(g.incomplete), "diverged": len(g.diverged),
                "diverged_rule": settings.diverged, "final_step": final_at[task], **rule_columns(settings),
                **estimate_columns(["iqm", "mean"], estimates, (task, method, score)),
            }
        )
    return rows


def rule_columns(settings: PlotSettings) -> dict[str, Any]:
    """`score_rule`, and `last_evals` where it applies (final scores; None, an empty cell, under best)."""
    return {"score_rule": settings.score, "last_evals": settings.last_evals if settings.score == "final" else None}


def method_columns(method: Method) -> dict[str, str]:
    return {"algo": method.algo, "variant": method.variant}


def scale_column(result: Aggregate) -> str:
    """The `score` column of an aggregate row: 'normalised', 'return' or 'return (tasks on mixed scales)'."""
    score = "normalised" if result.score_name == "normalised score" else "return"
    return f"{score} ({result.score_meaning})" if result.score_meaning and score == "return" else score


def aggregate_rows(result: Aggregate, settings: PlotSettings) -> list[dict[str, Any]]:
    columns = [name.lower().replace(" ", "_") for name in result.metric_names]
    return [
        {
            "scope": "aggregate", "task": " + ".join(result.tasks), **method_columns(method),
            "score": scale_column(result), "tasks": len(result.tasks), "seeds": result.runs[method],
            "diverged": result.diverged[method], "diverged_rule": settings.diverged, **rule_columns(settings),
            **estimate_columns(columns, result.metrics, method),
        }
        for method in result.methods
    ]


def estimate_columns(names: list[str], estimates: Estimates, key: Hashable) -> dict[str, float]:
    """{name, name_ci_low, name_ci_high} for each metric of one key."""
    point, interval = estimates.points[key], estimates.intervals[key]
    columns: dict[str, float] = {}
    for i, name in enumerate(names):
        columns |= {name: float(point[i]), f"{name}_ci_low": float(interval[0, i]), f"{name}_ci_high": float(interval[1, i])}
    return columns


def write_tables(
    table: pd.DataFrame,
    results: list[Aggregate],
    protocol: list[str],
    warnings: list[str],
    out_dir: Path,
    published: Published | None = None,
    sensitivity: Sequence[Sensitivity] = (),
) -> list[Path]:
    """summary.csv (every row and CI bound) and summary.md (the same, readable, with the warnings as notes), each
    replaced atomically: a plot stopped mid-write (a kill, a full disk) leaves the last plot's file whole. With
    `--published`, also published.csv: the published rows matched to a task (its own schema, so summary.csv keeps
    one), headed by PUBLISHED_TABLE_COLUMNS, and empty but for its header when none matched. Where a sweep gives a
    sensitivity series, also sensitivity.csv (SENSITIVITY_COLUMNS: its own schema too)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "summary.csv", out_dir / "summary.md"
    text = markdown(table, results, protocol, warnings, published, sensitivity).encode("utf-8")
    replace_atomically(csv_path, lambda handle: table.to_csv(handle, index=False))
    replace_atomically(md_path, lambda handle: handle.write(text))
    paths = [csv_path, md_path]
    if published is not None:
        published_path = out_dir / "published.csv"
        rows = published_table(published)
        replace_atomically(published_path, lambda handle: rows.to_csv(handle, index=False))
        paths.append(published_path)
    if sensitivity:
        sensitivity_path = out_dir / "sensitivity.csv"
        points = sensitivity_table(sensitivity)
        replace_atomically(sensitivity_path, lambda handle: points.to_csv(handle, index=False))
        paths.append(sensitivity_path)
    return paths


# sensitivity.csv: one row per algorithm, hyperparameter (a heat map's two joined by " × "), task or "all tasks" and
# value; `tasks` counts the tasks pooled, `seeds` the runs per task, `default` whether the value is the registry's
SENSITIVITY_COLUMNS = (
    "algo", "key", "task", "value", "score", "score_rule", "tasks", "seeds", "iqm", "iqm_ci_low", "iqm_ci_high", "default",
)


def sensitivity_table(sensitivity: Sequence[Sensitivity]) -> pd.DataFrame:
    return pd.DataFrame(sensitivity_rows(sensitivity), columns=list(SENSITIVITY_COLUMNS))


def sensitivity_markdown(sensitivity: Sequence[Sensitivity]) -> list[str]:
    """The sensitivity rows, readable: what each point is, then one line per point."""
    rule = sensitivity[0].score
    rows = sensitivity_table(sensitivity).itertuples()
    return [
        "## Sensitivity",
        "",
        f"IQM of the {score_words(rule, 'scores')} over seeds, with 95% stratified bootstrap CI, of each algorithm's "
        "variants that differ in one hyperparameter (the others at the registry defaults) or in two run as a full "
        "product (`a \u00d7 b`). `all tasks`: the values run on every task, pooled over runs x tasks (normalised "
        "scores). Default: the registry's value.",
        "",
        "| algorithm | hyperparameter | task | value | seeds | IQM [95% CI] | default |",
        "|---|---|---|---|---:|---|---|",
        *(
            f"| {r.algo} | {r.key} | {r.task} | {r.value.replace('|', '/')} | {r.seeds} | {ci_text(r, 'iqm')} | "
            f"{'yes' if r.default else 'no'} |"
            for r in rows
        ),
    ]


# published.csv of a plot: the task it is shown beside, then the source's row as qsmbench/data/published.csv holds it
# (its `task` renamed `published_task`: the environment id the source ran)
PUBLISHED_TABLE_COLUMNS = ("task", "published_task", *PUBLISHED_COLUMNS[1:])


def published_table(published: Published) -> pd.DataFrame:
    rows = [
        {"task": task, "published_task": row.task, **{column: getattr(row, column) for column in PUBLISHED_COLUMNS[1:]}}
        for task in sorted(published.matched)
        for row in published.matched[task]
    ]
    return pd.DataFrame(rows, columns=list(PUBLISHED_TABLE_COLUMNS)).astype({"steps": "Int64", "seeds": "Int64"})


PUBLISHED_HEADING = "Published numbers (matched: task, metric, budget)"


def published_markdown(table: pd.DataFrame, published: Published) -> list[str]:
    """Each task's matched published rows under its own rows of returns, and one line on the rows that did not match."""
    rule = table.score_rule.iloc[0] if not table.empty else "final"
    lines = [
        f"## {PUBLISHED_HEADING}",
        "",
        f"Rows of {published.file} on the task's environment (a Gymnasium `-vN` suffix ignored: the source's id is in "
        f"each row), by the same metric ({score_words(rule, 'evaluation return')}) at the task's final step. Published "
        "numbers mix protocols (training or evaluation returns, best or final, other environment versions): compare "
        "with care.",
        "",
    ]
    if published.matched:
        lines += ["| task | method or source | seeds | IQM [95% CI] | mean [95% CI] or mean \u00b1 std |", "|---|---|---:|---|---|"]
    ours = table[(table.scope == "task") & (table.score == "return")]
    for task in sorted(published.matched):
        lines += [
            f"| {task} | {method_text(r)} | {seeds_text(r)} | {ci_text(r, 'iqm')} | {ci_text(r, 'mean')} |"
            for r in ours[ours.task == task].itertuples()
        ]
        for row in published.matched[task]:
            spread = f" \u00b1 {row.std:.1f}" if row.std is not None else " (no std published)"
            lines.append(f"| {task} | {row.label(rule).replace('|', '/')} | {row.seeds} | n/a | {row.mean:.1f}{spread} |")
    if not published.matched:
        lines.append("None matched." if published.rows else f"None: {published.file} has no rows.")
    if published.unmatched:
        lines += ["", published.unmatched + "."]
    return lines


def protocol_lines(groups: list[Group], scale: Scale, settings: PlotSettings) -> list[str]:
    """What every number of the summary stands on, as summary.md states it first: the final-score rule, the
    divergence rule, the seeds of each method, the bootstrap, and the normalisation with its sources."""
    rule = {
        "untrained": "scored, after its divergence, as its own step-0 (untrained) evaluation",
        "last": "scored, after its divergence, as its last finite evaluation",
        "exclude": "left out of every number (the survivors alone are scored)",
    }[settings.diverged]
    budget = "the last evaluation step every method on the task reached (equal budgets per task)"
    score = {
        "final": f"- Final score of a run: the mean of its last {plural(settings.last_evals, 'evaluation')} after step 0 and at "
        f"or before the task's final step, {budget}.",
        "best": f"- Score of a run, {OPTIMISTIC}: its highest evaluation after step 0 and at or before the task's final "
        f"step, {budget}. The metric of CGPO's and QVPO's tables, and optimistic: the maximum of many noisy evaluations "
        "is biased upward, the more so the noisier a method (`--score final`, the default, averages the last evaluations).",
    }[settings.score]
    return [
        "## Protocol",
        "",
        score,
        f"- Diverged seeds (`--diverged {settings.diverged}`): a seed whose training went non-finite is {rule}.",
        f"- Seeds per method: {'; '.join(seed_counts(groups))}. Aggregates keep every seed of each method (its common "
        "count across tasks).",
        f"- Intervals: 95% stratified bootstrap (percentile), {plural(settings.reps, 'resample')}, seed {settings.seed}; "
        f"with fewer than {MIN_SEEDS} seeds they are not meaningful. IQM: interquartile mean.",
        f"- Normalisation ({scale}): {normalisation_text(groups, scale)}.",
    ]


def seed_counts(groups: list[Group]) -> list[str]:
    """'qsm: 10 seeds per task (3 diverged)' for each method, in the table's order."""
    counts: dict[Method, list[int]] = {}
    diverged: dict[Method, int] = {}
    for g in groups:
        counts.setdefault(g.method, []).append(len(g.seeds))
        diverged[g.method] = diverged.get(g.method, 0) + len(g.diverged)
    texts = []
    for method, seeds in counts.items():
        low, high = min(seeds), max(seeds)
        number = f"{low} seed{'s' * (high != 1)}" if low == high else f"{low}\u2013{high} seeds"
        texts.append(f"{method}: {number} per task" + (f" ({diverged[method]} diverged)" if diverged[method] else ""))
    return texts


def normalisation_text(groups: list[Group], scale: Scale) -> str:
    """Which fixed reference each task's normalised score uses, with its source; raw returns say so."""
    if scale != "reference":
        return "none, raw returns" + (", aggregated one task at a time" if scale == "per_task" else "")
    references = reference_scores()
    texts = {}
    for g in groups:
        if g.offline:
            texts[g.task] = f"{g.task}: D4RL normalised score / 100"
        elif g.task.startswith(DMC_PREFIX):
            texts[g.task] = f"{g.task}: return / {DMC_MAX_RETURN:g} (DeepMind Control's maximum return)"
        elif g.task in references:
            ref = references[g.task]
            texts[g.task] = f"{g.task}: (R - random) / (expert - random), random {ref.random:g}, expert {ref.expert:g} ({ref.source})"
        else:
            texts[g.task] = f"{g.task}: no reference, left out of the aggregates"
    return "; ".join(texts[task] for task in sorted(texts))


def markdown(
    table: pd.DataFrame,
    results: list[Aggregate],
    protocol: list[str],
    warnings: list[str],
    published: Published | None = None,
    sensitivity: Sequence[Sensitivity] = (),
) -> str:
    lines = ["# qsmbench results summary", "", *protocol]
    tasks = table[table.scope == "task"]
    for scale in ("return", "normalised"):
        rows = tasks[tasks.score == scale]
        if not rows.empty:
            heading = task_title(scale, rows.score_rule.iloc[0])  # the rule that scored these rows
            lines += ["", f"## {heading}", "", "| task | method | seeds | final step | IQM [95% CI] | mean [95% CI] |"]
            lines += ["|---|---|---:|---:|---|---|"]
            lines += [
                f"| {r.task} | {method_text(r)} | {seeds_text(r)} | {int(r.final_step)} | {ci_text(r, 'iqm')} | "
                f"{ci_text(r, 'mean')} |"
                for r in rows.itertuples()
            ]
    if published is not None:
        lines += ["", *published_markdown(table, published)]
    if not results:
        lines += ["", "## Aggregate over tasks", "", "None: no task has scores on a common scale (see the notes)."]
    for result in results:
        lines += ["", *aggregate_markdown(table, result)]
    if sensitivity:
        lines += ["", *sensitivity_markdown(sensitivity)]
    if warnings:
        lines += ["", "## Notes", "", *(f"- {warning}" for warning in warnings)]
    return "\n".join(lines) + "\n"


def task_title(scale: str, rule: Any) -> str:
    """The heading of the per-task rows on one scale: `Final evaluation return per task`, `Normalised final score per
    task`, or their `best during training (optimistic)` forms."""
    if scale == "return":
        return f"{capitalised(score_words(rule, 'evaluation return'))} per task"
    return f"Normalised {score_words(rule, 'score')} per task"


def aggregate_markdown(table: pd.DataFrame, result: Aggregate) -> list[str]:
    meaning = f" ({result.score_meaning})" if result.score_meaning else ""
    metrics = [name.lower().replace(" ", "_") for name in result.metric_names]
    rows = table[(table.scope == "aggregate") & (table.task == " + ".join(result.tasks))]
    few_methods = [str(method) for method, runs in result.runs.items() if runs < MIN_SEEDS]
    few = f" Fewer than {MIN_SEEDS} runs per task ({', '.join(few_methods)}): their intervals are not meaningful." if few_methods else ""
    scored = score_words(rows.score_rule.iloc[0], result.score_name + meaning)  # the rule that scored these rows
    return [
        f"## Aggregate over {plural(len(result.tasks), 'task')}: {scored}",
        "",
        f"Tasks: {', '.join(result.tasks)}. Each method's runs per task in `seeds`, of which `diverged` diverged and are "
        f"scored by the rule above. Stratified bootstrap over runs within each task.{few}",
        "",
        "| method | seeds | diverged | " + " | ".join(f"{name} [95% CI]" for name in result.metric_names) + " |",
        "|---|---:|---:|" + "---|" * len(metrics),
        *(
            f"| {method_text(r)} | {r.seeds} | {r.diverged} | " + " | ".join(ci_text(r, name) for name in metrics) + " |"
            for r in rows.itertuples()
        ),
    ]


def method_text(row: Any) -> str:
    """A row's method as `--reference` names it: `qsm`, or `qsm[alpha=120]`."""
    variant = row.variant if isinstance(row.variant, str) else ""
    return str(Method(row.algo, variant))


def seeds_text(row: Any) -> str:
    """Seeds scored, with those incomplete (used up to a shared step) and those diverged, with their rule."""
    notes = []
    if row.seeds < MIN_SEEDS:
        notes.append(f"fewer than {MIN_SEEDS}: CI not meaningful")
    if row.incomplete:
        notes.append(f"{row.incomplete} incomplete")
    if row.diverged:
        notes.append(f"{row.diverged} diverged, {DIVERGED_NOTE[row.diverged_rule]}")
    return f"{row.seeds} ({'; '.join(notes)})" if notes else str(row.seeds)


DIVERGED_NOTE = {"untrained": "scored as untrained", "last": "scored at last finite evaluation", "exclude": "left out"}


def ci_text(row: Any, name: str) -> str:
    digits = 3 if row.score == "normalised" else 1
    value, low, high = getattr(row, name), getattr(row, f"{name}_ci_low"), getattr(row, f"{name}_ci_high")
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
