"""The aggregate figure's x tick labels, as a reader sees them: a visible gap between neighbours in every panel.

Rendered with Agg at the default size and at `--figsize 6,4`, on raw Pendulum returns (-1500 .. -150) and on
normalised scores, with six methods and long labels that leave each panel narrow.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.figure import Figure
from matplotlib.text import Text

from qsmbench.analysis import figures
from qsmbench.analysis.pipeline import analyse
from qsmbench.analysis.settings import FigureStyle, PlotSettings
from qsmbench.runs.format import RunHeader, RunMetadata
from qsmbench.runs.layout import path_safe, run_path
from qsmbench.runs.read import read_results
from qsmbench.runs.write import write_run

STEPS = list(range(0, 5001, 1000))
SEEDS = 3
LEVELS = {"qsm": 1.0, "sac": 0.8, "td3": 0.55, "dql": 0.35, "dipo": 0.15, "qvpo": 0.0}  # from worst (0) to best (1)
LABELS = {"qsm": "QSM (ours, alpha=50)", "dipo": "DIPO (diffusion actor)"}
RAW = ("Pendulum-v1", -1500.0, -150.0)  # no reference score: aggregated on raw returns
NORMALISED = ("Hopper-v4", 100.0, 3000.0)  # D4RL references: aggregated as normalised scores


def write_task(root: Path, task: str, worst: float, best: float) -> None:
    """Six methods whose final returns lie between `worst` and `best`, with some spread between seeds."""
    for algo, level in LEVELS.items():
        for seed in range(SEEDS):
            returns = worst + level * (best - worst) + 0.03 * (best - worst) * np.sin(seed + np.arange(len(STEPS)))
            rows = pd.DataFrame({"task": task, "algo": algo, "seed": seed, "step": STEPS, "eval_return": returns})
            header = RunHeader(algo=algo, task=task, env_id=task, run_config={"steps": STEPS[-1]})
            write_run(run_path(root, task, path_safe(algo), seed), rows, RunMetadata(header, seed, "complete"))


def aggregate_figure(root: Path, figsize: tuple[float, float] | None, labels: dict[str, str]) -> Figure:
    """The aggregate figure that `plot` saves for the only task under `root`, drawn."""
    analysis = analyse(read_results(root).runs, PlotSettings(reps=50), lambda _message: None)
    with plt.rc_context(figures.STYLE):
        kept = figures.make_figures(analysis, FigureStyle(labels=labels, figsize=figsize))
        for name in [name for name in kept if not name.startswith("aggregate_scores")]:
            plt.close(kept.pop(name))
        (figure,) = kept.values()
        figure.canvas.draw()
    return figure


def shown_labels(ax: Axes) -> list[Text]:
    """The x tick labels drawn: those of ticks inside the axis' limits, with text."""
    low, high = sorted(ax.get_xlim())
    return [label for label in ax.get_xticklabels() if label.get_text() and low <= label.get_position()[0] <= high]


def digit_width(label: Text, renderer: RendererBase) -> float:
    """The width in pixels of one digit in the tick labels' font: the smallest gap a reader sees as one."""
    width, _height, _descent = renderer.get_text_width_height_descent("0", label.get_fontproperties(), ismath=False)
    return width


def corners(label: Text, renderer: RendererBase) -> np.ndarray:
    """The four corners in pixels of a label's box as drawn, turned with its text (its window extent is the
    level box around the turned one)."""
    turn = label.get_rotation()
    label.set_rotation(0)
    level = label.get_window_extent(renderer)
    label.set_rotation(turn)
    drawn = label.get_window_extent(renderer)
    angle = np.radians(turn)
    along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    origin = np.array([drawn.x0 + level.height * max(-across[0], 0.0), drawn.y0 + level.width * max(-along[1], 0.0)])
    width, height = level.width * along, level.height * across
    return np.array([origin, origin + width, origin + width + height, origin + height])


def gap(left: np.ndarray, right: np.ndarray) -> float:
    """The distance in pixels between two boxes turned alike: the largest gap between their shadows on either
    side's direction (negative where they overlap)."""
    sides = [left[1] - left[0], left[3] - left[0]]
    shadows = [(left @ side / np.linalg.norm(side), right @ side / np.linalg.norm(side)) for side in sides]
    return max(max(b.min() - a.max(), a.min() - b.max()) for a, b in shadows)


def assert_gapped(figure: Figure) -> None:
    """Every panel shows at least two labels (a scale), and every pair of neighbouring labels, in a panel and
    across panels, leaves at least one digit's width between them (across the text where the labels are turned)."""
    renderer = figure.canvas.get_renderer()
    boxes: list[np.ndarray] = []
    for ax in figure.axes:
        labels = shown_labels(ax)
        assert len(labels) >= 2, (ax.get_title(), [label.get_text() for label in labels])
        boxes += [corners(label, renderer) for label in labels]
    least = digit_width(shown_labels(figure.axes[0])[0], renderer)
    texts = [label.get_text() for ax in figure.axes for label in shown_labels(ax)]
    assert all(gap(left, right) >= least for left, right in itertools.pairwise(boxes)), texts
    plt.close(figure)


@pytest.mark.parametrize("figsize", [None, (6.0, 4.0)], ids=["default", "6x4"])
@pytest.mark.parametrize("task", [RAW, NORMALISED], ids=["raw", "normalised"])
def test_neighbouring_tick_labels_of_the_aggregate_figure_leave_a_visible_gap(
    task: tuple[str, float, float], figsize: tuple[float, float] | None, tmp_path: Path
) -> None:
    """'-1500-1350' under Median, IQM and Mean read as one number: the labels touched without overlapping."""
    write_task(tmp_path, *task)
    assert_gapped(aggregate_figure(tmp_path, figsize, LABELS))


README_STUDIES = {  # final returns of each method of the README's study: spread out, and close together at several
    # places (as run on 2026-12-06: a tick at a panel's right edge met the next panel's first, "-1350-1500")
    "apart": ({("qsm", ""): -1150.0, ("qsm", "alpha=120"): -1300.0, ("sac", ""): -1450.0}, 80.0),
    **{
        f"close{shift:+.0f}": ({("qsm", ""): -1420.0 + shift, ("qsm", "alpha=120"): -1457.0 + shift, ("sac", ""): -1443.0 + shift}, 60.0)
        for shift in np.arange(0.0, 100.0, 12.5)
    },
}


@pytest.mark.parametrize("study", README_STUDIES.values(), ids=README_STUDIES.keys())
def test_the_readme_study_shows_a_scale_under_each_panel(study: tuple[dict[tuple[str, str], float], float], tmp_path: Path) -> None:
    """The README's CPU-sized study: `QSM (ours)`, `QSM (ours) [alpha=120]` and `SAC` on Pendulum at
    `--figsize 6,4`. Two level labels such as -1400 and -1200 do not fit a panel; one alone gives no scale; and
    a label at a panel's edge ran into the next panel's first ("-1350-1500")."""
    task, (levels, spread) = RAW[0], study
    for (algo, variant), level in levels.items():
        for seed in range(SEEDS):
            returns = level + spread * np.sin(seed + np.arange(len(STEPS)))
            rows = pd.DataFrame({"task": task, "algo": algo, "seed": seed, "step": STEPS, "eval_return": returns})
            config = {"alpha": 120} if variant else {}
            header = RunHeader(algo=algo, task=task, env_id=task, run_config={"steps": STEPS[-1]}, algo_config=config, variant=variant)
            method = f"{algo}.{path_safe(variant)}" if variant else algo
            write_run(run_path(tmp_path, task, method, seed), rows, RunMetadata(header, seed, "complete"))
    assert_gapped(aggregate_figure(tmp_path, (6.0, 4.0), {"qsm": "QSM (ours)"}))
