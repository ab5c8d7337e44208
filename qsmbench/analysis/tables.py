"""The summary table: its rows (with their bootstrap CIs), summary.csv and the readable summary.md.

One module for the columns and for the text that explains them, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qsmbench.analysis.aggregates import Aggregate
from qsmbench.analysis.bootstrap import MIN_SEEDS, Estimates, interval_estimates, iqm_and_mean
from qsmbench.analysis.scores import Group, Method, Scale, final_score
from qsmbench.analysis.settings import PlotSettings
from qsmbench.core.messages import plural
from qsmbench.runs.write import replace_atomically

COUNT_COLUMNS = ("tasks", "seeds", "incomplete", "diverged", "final_step", "last_evals")  # integers, empty where n/a
TABLE_COLUMNS = (
    "scope", "task", "algo", "variant", "score", "tasks", "seeds", "incomplete", "diverged", "final_step", "last_evals",
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
        at, last = final_at[g.task], settings.last_evals
        finals[g.task, g.method, "return"] = final_score(g.returns, g.steps, at, last)[:, None]
        if scale == "reference" and g.normalised is not None:
            finals[g.task, g.method, "normalised"] = final_score(g.normalised, g.steps, at, last)[:, None]
    estimates = interval_estimates(finals, iqm_and_mean, settings)
    group = {(g.task, g.method): g for g in groups}
    rows = []
    for task, method, score in finals:
        g = group[task, method]
        rows.append(
            {
                "scope": "task", "task": task, **method_columns(method), "score": score, "tasks": 1,
                "seeds": len(g.seeds), "incomplete": len(g.incomplete), "diverged": len(g.diverged),
                "final_step": final_at[task], "last_evals": settings.last_evals,
                **estimate_columns(["iqm", "mean"], estimates, (task, method, score)),
            }
        )
    return rows


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
            "score": scale_column(result), "tasks": len(result.tasks), "seeds": result.runs,
            "last_evals": settings.last_evals, **estimate_columns(columns, result.metrics, method),
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
    table: pd.DataFrame, results: list[Aggregate], settings: PlotSettings, warnings: list[str], out_dir: Path
) -> list[Path]:
    """summary.csv (every row and CI bound) and summary.md (the same, readable, with the warnings as notes), each
    replaced atomically: a plot stopped mid-write (a kill, a full disk) leaves the last plot's file whole."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "summary.csv", out_dir / "summary.md"
    text = markdown(table, results, settings, warnings).encode("utf-8")
    replace_atomically(csv_path, lambda handle: table.to_csv(handle, index=False))
    replace_atomically(md_path, lambda handle: handle.write(text))
    return [csv_path, md_path]


def markdown(table: pd.DataFrame, results: list[Aggregate], settings: PlotSettings, warnings: list[str]) -> str:
    lines = [
        "# qsmbench results summary",
        "",
        f"Final score of a run: the mean of its last {plural(settings.last_evals, 'evaluation')} after step 0 and at or before "
        "the final step, the last evaluation step that every method on the task reached. IQM (interquartile mean) "
        f"and mean over seeds with 95% stratified bootstrap confidence intervals (percentile, "
        f"{plural(settings.reps, 'resample')}, seed {settings.seed}); with fewer than {MIN_SEEDS} seeds they are not meaningful. "
        "Normalised "
        "score, on fixed references: Gymnasium MuJoCo (R - random) / (expert - random), 0 = random, 1 = expert; "
        "DeepMind Control return / 1000; offline runs D4RL normalised score / 100.",
    ]
    tasks = table[table.scope == "task"]
    for scale, title in (("return", "Final evaluation return per task"), ("normalised", "Normalised final score per task")):
        rows = tasks[tasks.score == scale]
        if not rows.empty:
            lines += ["", f"## {title}", "", "| task | method | seeds | final step | IQM [95% CI] | mean [95% CI] |"]
            lines += ["|---|---|---:|---:|---|---|"]
            lines += [
                f"| {r.task} | {method_text(r)} | {seeds_text(r)} | {int(r.final_step)} | {ci_text(r, 'iqm')} | "
                f"{ci_text(r, 'mean')} |"
                for r in rows.itertuples()
            ]
    if not results:
        lines += ["", "## Aggregate over tasks", "", "None: no task has scores on a common scale (see the notes)."]
    for result in results:
        lines += ["", *aggregate_markdown(table, result)]
    if warnings:
        lines += ["", "## Notes", "", *(f"- {warning}" for warning in warnings)]
    return "\n".join(lines) + "\n"


def aggregate_markdown(table: pd.DataFrame, result: Aggregate) -> list[str]:
    meaning = f" ({result.score_meaning})" if result.score_meaning else ""
    metrics = [name.lower().replace(" ", "_") for name in result.metric_names]
    rows = table[(table.scope == "aggregate") & (table.task == " + ".join(result.tasks))]
    few = f" Fewer than {MIN_SEEDS} runs per task: the intervals are not meaningful." if result.runs < MIN_SEEDS else ""
    return [
        f"## Aggregate over {plural(len(result.tasks), 'task')}: final {result.score_name}{meaning}",
        "",
        f"Tasks: {', '.join(result.tasks)}; {plural(result.runs, 'run')} per task and method. Stratified bootstrap over runs "
        f"within each task.{few}",
        "",
        "| method | " + " | ".join(f"{name} [95% CI]" for name in result.metric_names) + " |",
        "|---|" + "---|" * len(metrics),
        *(f"| {method_text(r)} | " + " | ".join(ci_text(r, name) for name in metrics) + " |" for r in rows.itertuples()),
    ]


def method_text(row: Any) -> str:
    """A row's method as `--reference` names it: `qsm`, or `qsm[alpha=120]`."""
    variant = row.variant if isinstance(row.variant, str) else ""
    return str(Method(row.algo, variant))


def seeds_text(row: Any) -> str:
    """Seeds scored, with those incomplete (used up to a shared step) and those left out as diverged."""
    notes = []
    if row.seeds < MIN_SEEDS:
        notes.append(f"fewer than {MIN_SEEDS}: CI not meaningful")
    if row.incomplete:
        notes.append(f"{row.incomplete} incomplete")
    if row.diverged:
        notes.append(f"{row.diverged} diverged, left out")
    return f"{row.seeds} ({'; '.join(notes)})" if notes else str(row.seeds)


def ci_text(row: Any, name: str) -> str:
    digits = 3 if row.score == "normalised" else 1
    value, low, high = getattr(row, name), getattr(row, f"{name}_ci_low"), getattr(row, f"{name}_ci_high")
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
