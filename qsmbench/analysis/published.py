"""Published numbers beside ours (`qsmbench plot --published`): reading qsmbench/data/published.csv (or the file of
`--published-file`), checking every row, and matching each to the plotted tasks.

A row is shown only where it measures what our table measures: the same environment (a Gymnasium id's `-vN`
suffix ignored, as papers ran v1, v2 or v3 of what we run as v4; DeepMind Control ids exactly), the same metric
(`PlotSettings.score`: final or best) and the same budget (the task's final step, scores.final_steps). Every
label names the source's own environment id, so a version difference stays visible. The file is data only:
read with the csv module, never executed.
"""

from __future__ import annotations

import csv
import importlib.resources
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from qsmbench.analysis.labels import VERSION_SUFFIX
from qsmbench.analysis.scores import DMC_PREFIX
from qsmbench.analysis.settings import OPTIMISTIC, PlotSettings, Score
from qsmbench.core.errors import ConfigError
from qsmbench.core.messages import plural

PUBLISHED_COLUMNS = (
    "task", "algorithm", "metric", "steps", "seeds", "mean", "std", "source", "table", "implementation", "note",
)
SHIPPED = "qsmbench/data/published.csv"  # how messages name the shipped file
REQUIRED_TEXT = ("task", "algorithm", "source")  # columns that may not be empty


@dataclass(frozen=True)
class PublishedRow:
    """One published number: `mean` (+- `std`, None where the source gives none) of `algorithm` on the source's
    environment `task`, by `metric` after `steps` environment steps over `seeds` seeds."""

    task: str
    algorithm: str
    metric: str
    steps: int
    seeds: int
    mean: float
    std: float | None
    source: str
    table: str
    implementation: str
    note: str

    def label(self, score: Score) -> str:
        """`TD3, Fujimoto et al. 2018 Table 1 (Hopper-v1), 10 seeds`, as legends and summary.md name it; under
        `--score best` followed by `, best during training (optimistic)`."""
        where = f"{self.source} {self.table}".strip()
        text = f"{self.algorithm}, {where} ({self.task}), {plural(self.seeds, 'seed')}"
        return f"{text}, {OPTIMISTIC}" if score == "best" else text


@dataclass(frozen=True)
class Published:
    """The rows of a published-numbers file matched to the plotted tasks."""

    file: str  # as messages name it
    rows: int  # rows in the file
    matched: dict[str, list[PublishedRow]]  # our task -> the rows that match it, in the file's order
    unmatched: str  # one line: how many rows matched no task, metric and budget and why; "" when all did


def published_source(settings: PlotSettings) -> tuple[str, str]:
    """(name for messages, text) of the file `settings` asks for: `published_file`, else the shipped one."""
    if settings.published_file:
        path = Path(settings.published_file)
        try:
            return str(path), path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"--published-file {path}: cannot read it ({error})") from None
    text = importlib.resources.files("qsmbench").joinpath("data/published.csv").read_text(encoding="utf-8")
    return SHIPPED, text


def read_published(settings: PlotSettings) -> tuple[str, list[PublishedRow]]:
    name, text = published_source(settings)
    return name, parse_published(text, name)


def parse_published(text: str, name: str) -> list[PublishedRow]:
    """Every row of a published-numbers file, checked; a ConfigError naming the file and line for the first bad one."""
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        raise ConfigError(f"{name}: empty; expected the header {','.join(PUBLISHED_COLUMNS)}")
    header = [column.strip() for column in header]
    missing = [column for column in PUBLISHED_COLUMNS if column not in header]
    unknown = [column for column in header if column not in PUBLISHED_COLUMNS]
    if missing or unknown or tuple(header) != PUBLISHED_COLUMNS:
        problem = (
            f"missing column {missing[0]!r}" if missing else f"unknown column {unknown[0]!r}" if unknown else "columns out of order"
        )
        raise ConfigError(f"{name}, line 1: {problem}; expected the header {','.join(PUBLISHED_COLUMNS)}")
    rows = []
    for fields in reader:
        if not any(field.strip() for field in fields):
            continue  # a blank line
        where = f"{name}, line {reader.line_num}"
        if len(fields) != len(PUBLISHED_COLUMNS):
            raise ConfigError(f"{where}: {len(fields)} fields, expected {len(PUBLISHED_COLUMNS)} ({','.join(PUBLISHED_COLUMNS)})")
        rows.append(checked_row(dict(zip(PUBLISHED_COLUMNS, (field.strip() for field in fields))), where))
    return rows


def checked_row(values: dict[str, str], where: str) -> PublishedRow:
    for column in REQUIRED_TEXT:
        if not values[column]:
            raise ConfigError(f"{where}: {column} is empty")
    metrics = get_args(Score)
    if values["metric"] not in metrics:
        raise ConfigError(f"{where}: metric must be one of {', '.join(metrics)}, got {values['metric']!r}")
    std = number(values["std"], "std", where) if values["std"] else None
    if std is not None and std < 0:
        raise ConfigError(f"{where}: std must be empty or at least 0, got {values['std']!r}")
    return PublishedRow(
        task=values["task"], algorithm=values["algorithm"], metric=values["metric"],
        steps=count(values["steps"], "steps", where), seeds=count(values["seeds"], "seeds", where),
        mean=number(values["mean"], "mean", where), std=std, source=values["source"], table=values["table"],
        implementation=values["implementation"], note=values["note"],
    )


def count(text: str, column: str, where: str) -> int:
    """A positive whole number written in digits (`1000000`; not `1e6`, `1_000_000` or `-5`)."""
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{where}: {column} must be a positive whole number, got {text!r}")
    return int(text)


def number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {column} must be a finite number, got {text!r}")
    return value


def environment(task: str) -> str:
    """What a row and a plotted task must share: a Gymnasium id without its `-vN` suffix (`Hopper-v1` and
    `Hopper-v4` are both `Hopper`), a DeepMind Control id whole."""
    return task if task.startswith(DMC_PREFIX) else VERSION_SUFFIX.sub("", task)


def match_published(name: str, rows: list[PublishedRow], final_at: dict[str, int], tasks: list[str], score: Score) -> Published:
    """Each row beside every plotted task of its environment whose final step is the row's `steps`, when its metric
    is `score`; the others counted by the first reason they fail (task, metric, budget)."""
    matched: dict[str, list[PublishedRow]] = {}
    reasons: Counter[str] = Counter()
    for row in rows:
        same_env = [task for task in tasks if environment(task) == environment(row.task)]
        if not same_env:
            reasons["on no plotted environment"] += 1
        elif row.metric != score:
            reasons[f"by metric {row.metric}, not --score {score}"] += 1
        elif not (at_budget := [task for task in same_env if final_at.get(task) == row.steps]):
            reasons["at a budget other than the task's final step"] += 1
        else:
            for task in at_budget:
                matched.setdefault(task, []).append(row)
    left = sum(reasons.values())
    unmatched = (
        f"{left} of {plural(len(rows), 'row')} of {name} matched nothing: "
        + "; ".join(f"{n} {why}" for why, n in reasons.most_common())
        if left
        else ""
    )
    return Published(name, len(rows), matched, unmatched)


def published_warnings(published: Published | None) -> list[str]:
    """A warning when `--published` matched nothing: no marker and no row would otherwise say why."""
    if published is None or published.matched:
        return []
    if not published.rows:
        return [f"--published: {published.file} has no rows"]
    return [f"--published: none of the published numbers match a plotted task, metric and budget ({published.unmatched})"]
