"""`qsmbench plot`: tables and figures of a results tree, and the parsing of its figure options."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from qsmbench.analysis.report import plot_results
from qsmbench.analysis.settings import FigureStyle, PlotSettings
from qsmbench.core.errors import ConfigError
from qsmbench.core.messages import plural
from qsmbench.runs.layout import FIGURES_DIR


def plot(
    results_dir: Annotated[Path, typer.Argument(help="Directory of run files, searched at any depth.")],
    out: Annotated[Path | None, typer.Option(help=f"Output directory (default: RESULTS_DIR/{FIGURES_DIR}).")] = None,
    normalize: Annotated[
        str,
        typer.Option(
            help="auto: reference scores when every task has them, else raw returns aggregated per task; "
            "reference: fixed reference scores (D4RL, DMC return / 1000); none: raw returns across tasks."
        ),
    ] = PlotSettings.normalize,
    last_evals: Annotated[
        int, typer.Option(help="A run's final score: mean of its last N evaluations (never step 0); unused by --score best.")
    ] = PlotSettings.last_evals,
    reps: Annotated[int, typer.Option(help="Bootstrap resamples for every confidence interval.")] = PlotSettings.reps,
    reference: Annotated[
        str | None,
        typer.Option(
            help="Probability of improvement of this method over each other one: an algorithm (qsm) or a variant "
            "(qsm\\[alpha=120]); default: the first in the registry's order.",
            metavar="METHOD",
        ),
    ] = None,
    diverged: Annotated[
        str,
        typer.Option(
            help="A seed that diverged, after its divergence: untrained (its step-0 evaluation), last (its last finite "
            "evaluation) or exclude (left out of every number)."
        ),
    ] = PlotSettings.diverged,
    score: Annotated[
        str,
        typer.Option(
            help="A run's score: final (the mean of its last --last-evals evaluations) or best (its best evaluation "
            "during training, as CGPO and QVPO report it: optimistic, biased upward, and labelled so everywhere)."
        ),
    ] = PlotSettings.score,
    published: Annotated[
        bool,
        typer.Option(
            help="Published numbers beside ours (the shipped data/published.csv): rows in summary.md and published.csv, "
            "and markers (mean +- std) on the learning curves, only where task (version suffix ignored), --score and budget match."
        ),
    ] = PlotSettings.published,
    published_file: Annotated[
        Path | None,
        typer.Option(help="Compare with this CSV of published numbers instead of the shipped one (implies --published).", metavar="CSV"),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            help='Show algorithm, variant or task NAME as TEXT in the figures (repeatable), e.g. qsm="QSM (ours)".',
            metavar="NAME=TEXT",
        ),
    ] = None,
    titles: Annotated[bool, typer.Option(help="A title above each figure saying what it shows.")] = FigureStyle.titles,
    figsize: Annotated[
        str | None, typer.Option(help="The size of every figure in inches (default: sized by its content).", metavar="W,H")
    ] = None,
) -> None:
    """Tables (summary.csv, summary.md) and figures with rliable: IQM, curves, profiles, P(improvement)."""
    settings = PlotSettings(
        normalize=normalize, last_evals=last_evals, reps=reps, reference=reference or "", diverged=diverged, score=score,
        published=published, published_file=str(published_file or ""),
    )
    style = FigureStyle(labels=parse_labels(label or []), titles=titles, figsize=parse_figsize(figsize))
    console = Console(stderr=True)
    with console.status("qsmbench plot: reading runs") as status:
        say = lambda message: status.update(f"qsmbench plot: {message}")
        report = plot_results(results_dir, settings, out, progress=say, style=style)
    for warning in report.warnings:
        print(f"qsmbench: warning: {warning}", file=sys.stderr)
    tables = [path.name for path in report.files if path.suffix in (".md", ".csv")]
    figure_files = plural(len(report.files) - len(tables), "figure file")
    print(f"tables and figures: {report.out_dir} ({', '.join(sorted(tables, key=TABLE_ORDER.index))}, {figure_files})")


TABLE_ORDER = ["summary.md", "summary.csv", "published.csv"]  # as the command's last line lists them


def parse_labels(given: list[str]) -> dict[str, str]:
    """`--label qsm="QSM (ours)"` -> {"qsm": "QSM (ours)"}; a variant's name keeps its `=`:
    `--label "qsm[alpha=120]=QSM, alpha 120"` -> {"qsm[alpha=120]": "QSM, alpha 120"}. A name given twice is refused."""
    labels: dict[str, str] = {}
    for item in given:
        match = re.fullmatch(r"\s*([^=\[\]]+(?:\[[^\]]*\])?)\s*=(.*)", item, flags=re.S)
        if not match:
            raise ConfigError(f"--label {item!r}: expected NAME=TEXT, e.g. qsm=\"QSM (ours)\"")
        name, text = match[1].strip(), match[2].strip()
        if name in labels:
            raise ConfigError(f"--label {name} is given twice")
        labels[name] = text
    return labels


def parse_figsize(given: str | None) -> tuple[float, float] | None:
    """`--figsize 6,4` -> (6.0, 4.0) inches."""
    if given is None:
        return None
    try:
        width, height = (float(part) for part in given.split(","))
    except ValueError:
        raise ConfigError(f"--figsize {given!r}: expected W,H in inches, e.g. 6,4") from None
    return width, height
