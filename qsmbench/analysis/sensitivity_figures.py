"""The sensitivity figures of `qsmbench plot`, drawn from qsmbench.analysis.sensitivity's series.

A line per hyperparameter (`sensitivity_<algo>_<key>`) and a heat map per pair run as a full product
(`sensitivity_<algo>_<key1>_<key2>`), one panel per task and one over all tasks where the values were aggregated.
Values sit at evenly spaced positions, labelled with the values themselves: a sweep's values (1e-4, 3e-4, 1e-3;
or `[256, 256]`) are chosen, not sampled, so their spacing carries no meaning a numeric axis would show. The
registry default is marked wherever it was run, since a sweep reads as "how far from the default does it hold".
Other algorithms' unlabelled runs on the task are horizontal bands (95% CI) with a line at their IQM: the bar
the sweep has to clear. Apart from figures.py, which lays out the other figures, to keep each module short.
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from qsmbench.analysis.colors import method_colors
from qsmbench.analysis.labels import task_label
from qsmbench.analysis.scores import Method
from qsmbench.analysis.sensitivity import ALL_TASKS, Panel, Sensitivity, value_rank, value_text
from qsmbench.analysis.settings import capitalised
from qsmbench.runs.layout import path_safe

if TYPE_CHECKING:  # figures.py imports this module to draw these figures among its own
    from qsmbench.analysis.figures import Look

BAND_ALPHA = 0.15
DEFAULT_MARKER = "*"  # the registry default's point, larger than the others
POINT_MARKER = "o"
DEFAULT_GID = "default"  # the gid of a line series' default point and of a heat map's default cell outline
DEFAULT_TICK = "(default)"
COLUMNS = 3  # panels per row
LABEL_CHARACTERS = 28  # a score axis' label wraps after about this many, to stay beside its panel


def sensitivity_figures(found: list[Sensitivity], look: Look) -> dict[str, Figure]:
    """Each series' figure, by file name: `sensitivity_<algo>_<key>` (a heat map: `..._<key1>_<key2>`)."""
    return {
        "_".join(["sensitivity", path_safe(item.algo), *map(path_safe, item.keys)]): (
            heat_map(item, look) if len(item.keys) == 2 else lines(item, look)
        )
        for item in found
    }


def panel_grid(item: Sensitivity, look: Look, size: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    """One panel per task (and the aggregate), COLUMNS to a row; the spare ones hidden."""
    columns = min(COLUMNS, len(item.panels))
    rows = math.ceil(len(item.panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=look.sized((size[0] * columns, size[1] * rows)), squeeze=False, layout="constrained")
    for ax in axes.flat[len(item.panels) :]:
        ax.set_visible(False)
    return figure, list(axes.flat[: len(item.panels)])


def panel_title(panel: Panel, look: Look) -> str:
    """The task's display name, or `All tasks (3 tasks)` for the aggregate."""
    return f"All tasks ({len(panel.tasks)} tasks)" if panel.task == ALL_TASKS else task_label(panel.task, look.style)


def score_axis(panel: Panel, look: Look) -> str:
    """`IQM final normalised score (0 = random, 1 = expert)`: the statistic, the score rule and the scale, wrapped
    (an aggregate's scale names each kind of reference, too long for one line beside a panel)."""
    scale = f"{panel.score_name} ({panel.score_meaning})" if panel.score_meaning else panel.score_name
    return "\n".join(textwrap.wrap(capitalised(f"IQM {look.scored(scale)}"), LABEL_CHARACTERS))


def tick_labels(item: Sensitivity, axis: int) -> list[str]:
    """The values of key `axis` as ticks, the registry default's marked `(default)` on a line of its own."""
    key = item.keys[axis]
    return [value_text(v) + (f"\n{DEFAULT_TICK}" if item.is_default(key, v) else "") for v in item.values[axis]]


def positions(item: Sensitivity, axis: int) -> dict[Any, int]:
    """Each value's evenly spaced position along key `axis`, by its rank."""
    return {value_rank(value): i for i, value in enumerate(item.values[axis])}


def seeds_text(item: Sensitivity) -> str:
    """'5' or '3-5': the seeds behind the figure's points."""
    counts = [point.estimate.seeds for panel in item.panels for point in panel.points]
    low, high = min(counts), max(counts)
    return f"{low}" if low == high else f"{low}\u2013{high}"


def lines(item: Sensitivity, look: Look) -> Figure:
    """The algorithm's IQM at each value of one key, with its CI, the default marked, other algorithms as bands."""
    color = method_colors([Method(item.algo)])[Method(item.algo)]
    at = positions(item, 0)
    figure, axes = panel_grid(item, look, (4.8, 4.0))
    handles: dict[str, Any] = {look.label(Method(item.algo)): Line2D([], [], color=color, marker=POINT_MARKER)}
    for ax, panel in zip(axes, item.panels):
        handles |= draw_baselines(ax, panel, look)
        x = [at[value_rank(point.values[0])] for point in panel.points]
        iqm = np.array([point.estimate.iqm for point in panel.points])
        spread = np.array([[iqm_ - p.estimate.low, p.estimate.high - iqm_] for iqm_, p in zip(iqm, panel.points)]).T
        ax.plot(x, iqm, color=color, linewidth=1.2, zorder=3)
        ax.errorbar(x, iqm, yerr=spread, color=color, marker=POINT_MARKER, linestyle="", capsize=4, zorder=4)
        for position, point in zip(x, panel.points):
            if point.default:
                ax.plot(position, point.estimate.iqm, marker=DEFAULT_MARKER, markersize=16, color=color,
                        markeredgecolor="black", linestyle="", zorder=5, gid=DEFAULT_GID)
                handles["registry default"] = Line2D([], [], marker=DEFAULT_MARKER, markersize=12, color=color,
                                                     markeredgecolor="black", linestyle="")
        ax.set_xticks(range(len(item.values[0])), tick_labels(item, 0))
        ax.set_xlim(-0.5, len(item.values[0]) - 0.5)
        ax.set(title=panel_title(panel, look), xlabel=item.keys[0], ylabel=score_axis(panel, look))
        ax.grid(alpha=0.3, axis="y")
    figure.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
    if look.style.titles:
        figure.suptitle(
            f"{look.label(Method(item.algo))}: sensitivity to {item.keys[0]}, {look.scored('score')}\n"
            f"IQM over {seeds_text(item)} seeds per task, 95% stratified bootstrap CI"
        )
    return figure


def draw_baselines(ax: Axes, panel: Panel, look: Look) -> dict[str, Any]:
    """Each other algorithm's IQM as a dashed line over its CI band, in its colour; returns the legend entries."""
    drawn = {}
    for baseline in panel.baselines:
        color, estimate = look.colors[baseline.method], baseline.estimate
        ax.axhspan(estimate.low, estimate.high, color=color, alpha=BAND_ALPHA, linewidth=0)
        ax.axhline(estimate.iqm, color=color, linestyle="--", linewidth=1.5)
        label = look.label(baseline.method)
        drawn[label] = (Patch(color=color, alpha=BAND_ALPHA * 2), Line2D([], [], color=color, linestyle="--"))
    return drawn


def heat_map(item: Sensitivity, look: Look) -> Figure:
    """The algorithm's IQM at each pair of values of two keys, annotated, the default cell outlined."""
    across, down = positions(item, 0), positions(item, 1)
    figure, axes = panel_grid(item, look, (max(4.8, 2.4 + 0.9 * len(across)), 2.8 + 0.7 * len(down)))
    for ax, panel in zip(axes, item.panels):
        cells = np.full((len(down), len(across)), np.nan)
        for point in panel.points:
            cells[down[value_rank(point.values[1])], across[value_rank(point.values[0])]] = point.estimate.iqm
        image = ax.imshow(cells, cmap="viridis", origin="lower", aspect="auto")
        figure.colorbar(image, ax=ax, label=score_axis(panel, look))
        low, high = np.nanmin(cells), np.nanmax(cells)
        for point in panel.points:
            x, y = across[value_rank(point.values[0])], down[value_rank(point.values[1])]
            light = high > low and point.estimate.iqm < (low + high) / 2  # viridis is dark at the low end
            ax.text(x, y, f"{point.estimate.iqm:.3g}", ha="center", va="center", color="white" if light else "black")
            if point.default:
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5, gid=DEFAULT_GID))
        ax.set_xticks(range(len(across)), tick_labels(item, 0))
        ax.set_yticks(range(len(down)), tick_labels(item, 1))
        ax.set(title=panel_title(panel, look), xlabel=item.keys[0], ylabel=item.keys[1])
    if look.style.titles:
        figure.suptitle(
            f"{look.label(Method(item.algo))}: sensitivity to {item.keys[0]} \u00d7 {item.keys[1]}, {look.scored('score')}\n"
            f"IQM over {seeds_text(item)} seeds per task; registry default outlined in red"
        )
    return figure
