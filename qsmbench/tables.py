"""The summary table: its rows (with their bootstrap CIs), summary.csv and the readable summary.md.

One module for the columns and for the text that explains them, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qsmbench.aggregates import Aggregate
from qsmbench.bootstrap import Estimates, interval_estimates, iqm_and_mean
from qsmbench.plot_settings import PlotSettings
from qsmbench.scores import Group, final_score
from qsmbench.storage import plural

COUNT_COLUMNS = ("tasks", "seeds", "incomplete", "diverged", "final_step", "last_evals")  # integers, empty where n/a
TABLE_COLUMNS = (
    "scope", "task", "algo", "score", "tasks", "seeds", "incomplete", "diverged", "final_step", "last_evals",
    "iqm", "iqm_ci_low", "iqm_ci_high", "mean", "mean_ci_low", "mean_ci_high",
    "median", "median_ci_low", "median_ci_high", "optimality_gap", "optimality_gap_ci_low", "optimality_gap_ci_high",
)  # fmt: skip


def summary_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as summary.csv holds them: TABLE_COLUMNS, with counts as integers that may be empty."""
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype({column: "Int64" for column in COUNT_COLUMNS})


def task_rows(groups: list[Group], final_at: dict[str, int], settings: PlotSettings) -> list[dict[str, Any]]:
    """One row per task, algorithm and scale (return, and normalised score where there is a reference)."""
    finals: dict[Hashable, np.ndarray] = {}
    for g in groups:
        at, last = final_at[g.task], settings.last_evals
        finals[g.task, g.algo, "return"] = final_score(g.returns, g.steps, at, last)[:, None]
        if settings.normalize == "reference" and g.scores is not None:
            finals[g.task, g.algo, "normalised"] = final_score(g.scores, g.steps, at, last)[:, None]
    estimates = interval_estimates(finals, iqm_and_mean, settings)
    group = {(g.task, g.algo): g for g in groups}
    rows = []
    for task, algo, scale in finals:
        g = group[task, algo]
        rows.append(
            {
                "scope": "task", "task": task, "algo": algo, "score": scale, "tasks": 1, "seeds": len(g.seeds),
                "incomplete": len(g.incomplete), "diverged": len(g.diverged), "final_step": final_at[task],
                "last_evals": settings.last_evals,
                **estimate_columns(["iqm", "mean"], estimates, (task, algo, scale)),
            }
        )  # fmt: skip
    return rows


def raw_scale_note(tasks: list[str]) -> str:
    """Raw returns compare algorithms, not tasks: say so when an aggregate mixes tasks."""
    return "tasks on mixed scales" if len(tasks) > 1 else "one task"


def aggregate_rows(result: Aggregate, settings: PlotSettings) -> list[dict[str, Any]]:
    columns = [name.lower().replace(" ", "_") for name in result.metric_names]
    scale = "normalised" if settings.normalize == "reference" else f"return ({raw_scale_note(result.tasks)})"
    return [
        {
            "scope": "aggregate", "task": " + ".join(result.tasks), "algo": algo, "score": scale,
            "tasks": len(result.tasks), "seeds": result.runs, "last_evals": settings.last_evals,
            **estimate_columns(columns, result.metrics, algo),
        }
        for algo in result.algos
    ]  # fmt: skip


def estimate_columns(names: list[str], estimates: Estimates, key: Hashable) -> dict[str, float]:
    """{name, name_ci_low, name_ci_high} for each metric of one key."""
    point, interval = estimates.points[key], estimates.intervals[key]
    columns: dict[str, float] = {}
    for i, name in enumerate(names):
        columns |= {name: float(point[i]), f"{name}_ci_low": float(interval[0, i]), f"{name}_ci_high": float(interval[1, i])}
    return columns


def write_tables(
    table: pd.DataFrame, result: Aggregate | None, settings: PlotSettings, warnings: list[str], out_dir: Path
) -> list[Path]:
    """summary.csv (every row and CI bound) and summary.md (the same, readable, with the warnings as notes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "summary.csv", out_dir / "summary.md"
    table.to_csv(csv_path, index=False)
    md_path.write_text(markdown(table, result, settings, warnings), encoding="utf-8")
    return [csv_path, md_path]


def markdown(table: pd.DataFrame, result: Aggregate | None, settings: PlotSettings, warnings: list[str]) -> str:
    lines = [
        "# qsmbench results summary",
        "",
        f"Final score of a run: the mean of its last {plural(settings.last_evals, 'evaluation')} at or before the final step, "
        "the last evaluation step that every algorithm on the task reached. IQM (interquartile mean) and mean over "
        f"seeds with 95% stratified bootstrap confidence intervals (percentile, {plural(settings.reps, 'resample')}, seed "
        f"{settings.seed}). Normalised score: 0 = random, 1 = expert (fixed reference scores; DeepMind Control "
        "return / 1000; offline runs: D4RL normalised score / 100).",
    ]
    tasks = table[table.scope == "task"]
    for scale, title in (("return", "Final evaluation return per task"), ("normalised", "Normalised final score per task")):
        rows = tasks[tasks.score == scale]
        if not rows.empty:
            lines += ["", f"## {title}", "", "| task | algorithm | seeds | final step | IQM [95% CI] | mean [95% CI] |"]
            lines += ["|---|---|---:|---:|---|---|"]
            lines += [
                f"| {r.task} | {r.algo} | {seeds_text(r)} | {int(r.final_step)} | {ci_text(r, 'iqm')} | {ci_text(r, 'mean')} |"
                for r in rows.itertuples()
            ]
    lines += ["", *aggregate_markdown(table, result, settings)]
    if warnings:
        lines += ["", "## Notes", "", *(f"- {warning}" for warning in warnings)]
    return "\n".join(lines) + "\n"


def aggregate_markdown(table: pd.DataFrame, result: Aggregate | None, settings: PlotSettings) -> list[str]:
    if result is None:
        return ["## Aggregate over tasks", "", "None: no task has scores on a common scale (see the warnings)."]
    raw = f"raw return ({raw_scale_note(result.tasks)})"
    scale = "normalised score" if settings.normalize == "reference" else raw
    metrics = [name.lower().replace(" ", "_") for name in result.metric_names]
    rows = table[table.scope == "aggregate"]
    return [
        f"## Aggregate over {plural(len(result.tasks), 'task')}: final {scale}",
        "",
        f"Tasks: {', '.join(result.tasks)}; {plural(result.runs, 'run')} per task and algorithm. Stratified bootstrap over runs "
        "within each task.",
        "",
        "| algorithm | " + " | ".join(f"{name} [95% CI]" for name in result.metric_names) + " |",
        "|---|" + "---|" * len(metrics),
        *(f"| {r.algo} | " + " | ".join(ci_text(r, name) for name in metrics) + " |" for r in rows.itertuples()),
    ]


def seeds_text(row: Any) -> str:
    """Seeds scored, with those incomplete (used up to a shared step) and those left out as diverged."""
    notes = []
    if row.incomplete:
        notes.append(f"{row.incomplete} incomplete")
    if row.diverged:
        notes.append(f"{row.diverged} diverged, left out")
    return f"{row.seeds} ({'; '.join(notes)})" if notes else str(row.seeds)


def ci_text(row: Any, name: str) -> str:
    digits = 3 if row.score == "normalised" else 1
    value, low, high = getattr(row, name), getattr(row, f"{name}_ci_low"), getattr(row, f"{name}_ci_high")
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
