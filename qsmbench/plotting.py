"""`qsmbench plot RESULTS_DIR`: tables and paper-ready figures from a tree of run files.

The computation lives in qsmbench.analysis and the drawing in qsmbench.figures; this module only checks the
arguments and ties them together. matplotlib and rliable are imported on first use, so importing this module
(as the CLI does) stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qsmbench.analysis import Normalize, Progress, Settings, analyse, load_runs, write_tables


@dataclass(frozen=True)
class PlotReport:
    """What `plot_results` wrote and what the user should know about."""

    out_dir: Path
    files: list[Path]  # tables, then figures (each as PNG and PDF)
    warnings: list[str]  # files skipped, incomplete runs, tasks left out, figures skipped, ...
    skipped: list[Path]  # run files that could not be used


def plot_results(
    results_dir: Path,
    out_dir: Path | None = None,
    normalize: Normalize = Settings.normalize,
    last_evals: int = Settings.last_evals,
    reps: int = Settings.reps,
    seed: int = Settings.seed,
    progress: Progress | None = None,
) -> PlotReport:
    """Read every run file under `results_dir` and write summary.csv, summary.md and the figures.

    `out_dir` defaults to RESULTS_DIR/figures. `normalize="reference"` aggregates across tasks on scores
    normalised by fixed reference returns (tasks without one are left out of the aggregates); "none" aggregates
    raw returns. The final score of a run is the mean of its last `last_evals` evaluations. Every bootstrap
    uses `reps` resamples and NumPy seed `seed`, so two calls on the same files give identical CIs.
    `progress`, when given, is called with a short message before each stage that may take a while.
    Raises ConfigError on bad arguments or when there is no readable run.
    """
    settings = Settings(normalize, last_evals, reps, seed)
    say = progress or (lambda _message: None)
    runs, warnings, skipped = load_runs(Path(results_dir))
    say(f"read {len(runs)} runs")
    analysis = analyse(runs, settings, say)
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / "figures"
    files = write_tables(analysis, out)

    from qsmbench.figures import draw_figures  # matplotlib and rliable's plotting: seconds to import

    files += draw_figures(analysis, out, say)
    return PlotReport(out, files, warnings + analysis.warnings, skipped)
