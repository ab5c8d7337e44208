"""`qsmbench plot RESULTS_DIR`: tables and paper-ready figures from a tree of run files.

Reading lives in qsmbench.runs.read, the computation in qsmbench.analysis.pipeline and the drawing in qsmbench.analysis.figures;
this module only ties them together. matplotlib and rliable are imported on first use, so importing this
module (as the CLI does) does not pay for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qsmbench.analysis.labels import check_labels
from qsmbench.analysis.pipeline import analyse
from qsmbench.analysis.settings import FigureStyle, PlotSettings, Progress
from qsmbench.analysis.tables import write_tables
from qsmbench.core.messages import plural
from qsmbench.runs.layout import figures_dir
from qsmbench.runs.read import read_results
from qsmbench.runs.write import check_own_paths


@dataclass(frozen=True)
class PlotReport:
    """What `plot_results` wrote and what the user should know about."""

    out_dir: Path
    files: list[Path]  # tables, then figures (each as PNG and PDF)
    warnings: list[str]  # files skipped, incomplete runs, tasks left out, figures skipped, ...
    skipped: list[Path]  # run files that could not be used


def plot_results(
    results_dir: Path,
    settings: PlotSettings = PlotSettings(),
    out_dir: Path | None = None,
    progress: Progress | None = None,
    style: FigureStyle = FigureStyle(),
) -> PlotReport:
    """Read every run file under `results_dir` and write summary.csv, summary.md and the figures, each replaced
    atomically (a plot stopped mid-write leaves the previous plot's files whole, and no temporary).

    `out_dir` defaults to RESULTS_DIR/_figures (FIGURES_DIR; the underscore keeps pyarrow's dataset discovery
    off it), which must not be a symbolic link: anyone who can write a shared results directory could otherwise
    send the figures over another user's files. `settings` holds every choice behind the numbers (see
    PlotSettings); with the same settings, two calls on the same files give identical CIs. `progress`, when
    given, is called with a short message before each stage that may take a while. `style` names and sizes
    the figures (labels, titles, size) and changes no number.
    Raises ConfigError, before writing anything, when there is no readable run or a setting does not fit
    the results (runs of one group trained differently, an unknown --reference or --label).
    """
    out = Path(out_dir) if out_dir is not None else figures_dir(results_dir)
    if out == figures_dir(results_dir):
        check_own_paths(Path(results_dir), [out], [])  # a shared results directory's _figures must not lead elsewhere
    say = progress or (lambda _message: None)
    tree = read_results(Path(results_dir), say)
    say(f"read {plural(len(tree.runs), 'run')}")
    check_labels(style, tree.runs)
    analysis = analyse(tree.runs, settings, say)
    files = write_tables(
        analysis.table, analysis.aggregates, analysis.protocol, analysis.warnings, out, analysis.published, analysis.sensitivity
    )

    from qsmbench.analysis.figures import draw_figures  # matplotlib and rliable's plotting: seconds to import

    files += draw_figures(analysis, style, out, say)
    return PlotReport(out, files, tree.warnings + analysis.warnings, tree.skipped)
