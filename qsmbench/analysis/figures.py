"""Figures of `qsmbench plot`, drawn from a finished `Analysis`: PNG (200 dpi) and PDF, Agg backend.

Each method keeps one colour in every figure (colour-blind palette: the registered algorithms in the
registry's order, then variants and unregistered algorithms), methods and tasks are shown by their display
names (qsmbench.analysis.labels), an interval too thin to see is marked, and every title (unless
`FigureStyle.titles` is off) says what is shown, over how many seeds, and which interval. The aggregate figure's
score labels leave at least a digit's width between neighbours, in a panel and across panels: as many nice ticks
as fit, turned 45 or 90 degrees where two level labels would not fit a panel (one tick gives no scale). Each file is
replaced atomically (qsmbench.runs.write.replace_atomically): a plot stopped mid-write leaves the previous
figure whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, also on machines without a display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Rectangle
from matplotlib.textpath import text_to_path
from matplotlib.ticker import FuncFormatter, MaxNLocator
from rliable import plot_utils

from qsmbench.analysis.aggregates import Aggregate
from qsmbench.analysis.colors import Color, method_colors
from qsmbench.analysis.labels import method_label, task_label
from qsmbench.analysis.overlays import draw_diverged, draw_published
from qsmbench.analysis.pipeline import Analysis
from qsmbench.analysis.scores import Method, method_order
from qsmbench.analysis.sensitivity_figures import sensitivity_figures
from qsmbench.analysis.settings import FigureStyle, Progress, Score, capitalised, score_words
from qsmbench.core.messages import plural
from qsmbench.runs.layout import path_safe
from qsmbench.runs.write import replace_atomically

PNG_DPI = 200
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 11,
    "figure.titlesize": 13,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,  # TrueType in PDFs: submission systems reject Type 3 fonts
}
BAND_ALPHA = 0.2
MIN_BAR_WIDTH = 0.02  # of the x axis: a narrower interval bar (zero width: all resamples equal) gets a mark
THIN_BAR_MARKER = "D"
PAIR_SEPARATOR = "\t"  # between the two labels of a pair for rliable; labels may hold commas, not tabs
MOST_SCORE_TICKS = 4  # bins of the aggregate panels' score axis where the labels fit (rliable's default)
TICK_GAP = "0"  # the least space between neighbouring tick labels, as the text whose width it is: one digit
LINE = "lp"  # the text whose height is a tick label's: an ascender and a descender
SCORE_LABEL_TURNS = (45, 90)  # degrees the aggregate panels' score labels turn, in order, where two do not fit


@dataclass(frozen=True)
class Look:
    """What every figure shares: the colour and label of each method, the user's style, and what a run's score is
    (PlotSettings.score), which every label of a score names."""

    colors: dict[Method, Color]
    style: FigureStyle
    score: Score

    def label(self, method: Method) -> str:
        return method_label(method, self.style)

    def scored(self, name: str) -> str:
        """`final normalised score`, or `normalised score best during training (optimistic)`."""
        return score_words(self.score, name)

    def sized(self, default: tuple[float, float]) -> tuple[float, float]:
        return self.style.figsize or default


def draw_figures(analysis: Analysis, style: FigureStyle, out_dir: Path, progress: Progress) -> list[Path]:
    """Write every figure of `make_figures` as PNG and PDF into `out_dir`; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    progress(f"drawing figures ({len(analysis.groups)} learning curves)")
    with plt.rc_context(STYLE):
        paths = []
        for name, figure in make_figures(analysis, style).items():
            progress(f"saving {name} (PNG and PDF)")
            paths += save(figure, out_dir / name)
        return paths


def make_figures(analysis: Analysis, style: FigureStyle) -> dict[str, Figure]:
    """Every figure that the analysis supports (the analysis warns about those it does not), open, by file name.

    Aggregates per task (raw returns of tasks without a common scale) are one figure each, named after the task.
    """
    look = Look(method_colors(method_order(group.method for group in analysis.groups)), style, analysis.settings.score)
    figures: dict[str, Figure] = {}
    with plt.rc_context(STYLE):
        figures["learning_curves"] = learning_curves(analysis, look)
        for result in analysis.aggregates:
            suffix = f"_{path_safe(result.tasks[0])}" if analysis.scale == "per_task" else ""
            figures[f"aggregate_scores{suffix}"] = aggregate_scores(result, look)
            if result.curve is not None:
                xlabel = steps_label(all(g.offline for g in analysis.groups if g.task in result.tasks))
                figures[f"sample_efficiency{suffix}"] = sample_efficiency(result, xlabel, look)
            figures[f"performance_profile{suffix}"] = performance_profile(result, look)
            if result.improvement.points:
                figures[f"probability_of_improvement{suffix}"] = probability_of_improvement(result, look)
        figures |= sensitivity_figures(analysis.sensitivity, look)
    return figures


def save(figure: Figure, stem: Path) -> list[Path]:
    """`stem`.png and `stem`.pdf, each replaced atomically: a plot stopped mid-write (a kill, a full disk) leaves
    the last plot's figure whole, never a truncated one under its name."""
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    replace_atomically(png, lambda handle: figure.savefig(handle, format="png", dpi=PNG_DPI, bbox_inches="tight"))
    replace_atomically(pdf, lambda handle: figure.savefig(handle, format="pdf", bbox_inches="tight"))
    plt.close(figure)
    return [png, pdf]


def scale_label(result: Aggregate) -> str:
    """`normalised score (return / 1000)`: the score and what its values mean."""
    return f"{result.score_name} ({result.score_meaning})" if result.score_meaning else result.score_name


def count_text(counts: list[int]) -> str:
    """'5' or '3-5': the number of seeds behind a figure."""
    low, high = min(counts), max(counts)
    return f"{low}" if low == high else f"{low}\u2013{high}"


def runs_text(result: Aggregate) -> str:
    """'10' or '7\u201310': the runs per task behind an aggregate (each method keeps its own)."""
    return count_text(list(result.runs.values()))


def steps_label(offline: bool) -> str:
    """Offline runs count gradient steps on a fixed dataset; online runs count environment steps."""
    return "Training steps" if offline else "Environment steps"


def step_text(value: float, _position: object = None) -> str:
    """Axis ticks in environment steps: 250k, 1M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def tasks_text(result: Aggregate, look: Look) -> str:
    """'Cheetah Run' for one task, '3 tasks' for several."""
    return task_label(result.tasks[0], look.style) if len(result.tasks) == 1 else plural(len(result.tasks), "task")


def learning_curves(analysis: Analysis, look: Look) -> Figure:
    """One panel per task: each method's mean evaluation return over seeds with a 95% bootstrap band."""
    tasks = sorted({group.task for group in analysis.groups})
    columns = min(3, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    figsize = look.sized((4.8 * columns, 3.6 * rows))
    figure, axes = plt.subplots(rows, columns, figsize=figsize, squeeze=False, layout="constrained")
    published: dict[str, ErrorbarContainer] = {}  # legend text -> marker of each published number drawn
    for ax, task in zip(axes.flat, tasks):
        for group in (g for g in analysis.groups if g.task == task):
            mean = analysis.curve_bands.points[task, group.method]
            low, high = analysis.curve_bands.intervals[task, group.method]
            color = look.colors[group.method]
            ax.plot(group.steps, mean, color=color, linewidth=2, label=look.label(group.method))
            ax.fill_between(group.steps, low, high, color=color, alpha=BAND_ALPHA, linewidth=0)
            draw_diverged(ax, group, color)
        published |= draw_published(ax, analysis.published, task, look.score, len(published))
        offline = all(g.offline for g in analysis.groups if g.task == task)
        ax.set(title=task_label(task, look.style), xlabel=steps_label(offline), ylabel="Evaluation return")
        ax.xaxis.set_major_formatter(FuncFormatter(step_text))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(tasks) :]:
        ax.set_visible(False)
    handles = {look.label(method): plt.Line2D([], [], color=color, linewidth=2) for method, color in look.colors.items()} | published
    figure.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=2 if published else len(handles), frameon=False)
    if look.style.titles:
        seeds = count_text([len(group.seeds) for group in analysis.groups])
        figure.suptitle(f"Evaluation return: mean over {seeds} seeds, 95% bootstrap CI")
    return figure


def aggregate_scores(result: Aggregate, look: Look) -> Figure:
    """rliable's interval-estimate plot: median, IQM, mean (and optimality gap) of the final scores.

    rliable sizes the figure by the number of methods and uses poster-size fonts, which collide for two or
    three methods; the size, fonts and labels are set again here and laid out with tight_layout, and the score
    ticks are spaced by SpacedTicks. rliable keys the rows by the names it shows, so the estimates are passed
    under the methods' labels.
    """
    methods = result.methods[::-1]  # rliable draws the first at the bottom
    labels = [look.label(method) for method in methods]
    figure, axes = plot_utils.plot_interval_estimates(
        {look.label(method): result.metrics.points[method] for method in methods},
        {look.label(method): result.metrics.intervals[method] for method in methods},
        metric_names=result.metric_names,
        algorithms=labels,
        colors={look.label(method): look.colors[method] for method in methods},
        xlabel="",
    )
    figure.set_size_inches(*look.sized((3.2 * len(result.metric_names), 1.9 + 0.45 * len(methods))))
    for ax in np.atleast_1d(axes):
        ax.xaxis.set_major_locator(SpacedTicks(MOST_SCORE_TICKS))
        ax.tick_params(axis="x", labelsize="medium")
        ax.tick_params(axis="y", labelsize="large")
        ax.title.set_fontsize("large")
        mark_thin_bars(ax)
    figure.supxlabel(capitalised(look.scored(scale_label(result))))
    if look.style.titles:
        figure.suptitle(
            f"Aggregate {look.scored(result.score_name)} over {tasks_text(result, look)}, {runs_text(result)} runs per task\n"
            "point estimate (black) and 95% stratified bootstrap CI"
        )
    figure.tight_layout()
    turn_crowded_labels(figure, list(np.atleast_1d(axes)))
    return figure


class SpacedTicks(MaxNLocator):
    """Nice ticks, at most `most` bins, fewer where neighbouring labels would leave less than TICK_GAP between them.

    Labels that merely touch read as one number ("-1500-1350" under each panel of six methods at `--figsize 6,4`).
    The axis' width and its labels' turn are read at every draw, so the ticks suit the laid-out figure at any size
    it is saved at; the last resort is a single tick, which cannot collide.
    """

    def __init__(self, most: int) -> None:
        super().__init__(nbins=most)
        self.most = most

    def __call__(self) -> np.ndarray:
        low, high = self.axis.get_view_interval()
        for bins, least in [*((bins, 2) for bins in range(self.most, 0, -1)), (1, 1)]:
            self.set_params(nbins=bins, min_n_ticks=least)
            ticks = self.tick_values(low, high)
            if self.spaced(inside(ticks, self.axis)):
                break
        return ticks

    def spaced(self, shown: np.ndarray) -> bool:
        """Whether the labels of the ticks `shown` leave TICK_GAP between neighbours, in points: beside each
        other when level, across the text's direction when turned. Level labels also keep half of it inside
        their panel's edges, so that the last label of one panel and the first of the next never meet."""
        label = self.axis.majorTicks[0].label1  # not get_major_ticks: it calls the locator
        font, turn = label.get_fontproperties(), math.radians(label.get_rotation())
        to_points = 72 / self.axis.axes.figure.dpi
        pixels = self.axis.axes.transData.transform(np.column_stack([shown, np.zeros_like(shown)]))[:, 0]
        distances = np.abs(np.diff(pixels)) * to_points
        gap = text_size(TICK_GAP, font)[0]
        if turn:
            return bool(np.all(distances * math.sin(turn) >= text_size(LINE, font)[1] + gap))
        if not len(shown):
            return True
        widths = np.array([text_size(text, font)[0] for text in self.axis.get_major_formatter().format_ticks(list(shown))])
        edges = self.axis.axes.bbox
        margins = np.array([min(pixels) - edges.x0, edges.x1 - max(pixels)]) * to_points
        inside_panel = np.all(margins >= widths[[np.argmin(pixels), np.argmax(pixels)]] / 2 + gap / 2)
        return bool(inside_panel and np.all(distances - (widths[1:] + widths[:-1]) / 2 >= gap))


def inside(ticks: np.ndarray, axis: Axis) -> np.ndarray:
    """The ticks within the axis' view limits: those drawn."""
    low, high = sorted(axis.get_view_interval())
    return ticks[(ticks >= low) & (ticks <= high)]


def text_size(text: str, font: FontProperties) -> tuple[float, float]:
    """Width and height (descent included) of `text` in `font`, in points: the same at every dpi."""
    width, height, _descent = text_to_path.get_text_width_height_descent(text, font, ismath=False)
    return width, height


def turn_crowded_labels(figure: Figure, axes: list[Axes]) -> None:
    """Turn every panel's score labels by the first of SCORE_LABEL_TURNS that gives each panel two ticks where
    level labels leave one: a single tick gives no scale. Labels such as -1400 and -1200 do not fit side by side
    in the one-inch panels of the README's study at `--figsize 6,4`; turned, they fit closer."""
    for turn in SCORE_LABEL_TURNS:
        if all(len(inside(ax.xaxis.get_majorticklocs(), ax.xaxis)) >= 2 for ax in axes):
            return
        for ax in axes:
            ax.tick_params(axis="x", labelrotation=turn)
            for label in ax.get_xticklabels():
                label.set(horizontalalignment="right", rotation_mode="anchor")
        figure.tight_layout()


def mark_thin_bars(ax: Axes) -> None:
    """A diamond in the bar's colour on every interval bar narrower than MIN_BAR_WIDTH of the axis: a
    zero-width interval (every resample equal, e.g. P = 1) otherwise draws nothing in its method's colour.
    Not clipped, so a mark at the axis' end (P = 0 or 1) shows whole."""
    low, high = ax.get_xlim()
    for bar in ax.patches:
        if isinstance(bar, Rectangle) and bar.get_width() < MIN_BAR_WIDTH * (high - low):
            center_x, center_y = bar.get_x() + bar.get_width() / 2, bar.get_y() + bar.get_height() / 2
            color = bar.get_facecolor()[:3]
            ax.plot(center_x, center_y, marker=THIN_BAR_MARKER, markersize=9, color=color, clip_on=False, zorder=3)


def sample_efficiency(result: Aggregate, xlabel: str, look: Look) -> Figure:
    """rliable's IQM-over-steps curve."""
    assert result.curve is not None
    figure, ax = plt.subplots(figsize=look.sized((7, 4.5)), layout="constrained")
    plot_utils.plot_sample_efficiency_curve(
        result.curve_steps,
        {look.label(method): result.curve.points[method] for method in result.methods},
        {look.label(method): result.curve.intervals[method] for method in result.methods},
        algorithms=[look.label(method) for method in result.methods],
        colors={look.label(method): look.colors[method] for method in result.methods},
        xlabel=xlabel,
        ylabel=f"IQM {result.score_name}",
        ax=ax,
        labelsize="large",
        ticklabelsize="large",
        marker="",
    )
    ax.xaxis.set_major_formatter(FuncFormatter(step_text))
    ax.legend(loc="best", frameon=False)
    if look.style.titles:
        meaning = f"; {result.score_meaning}" if result.score_meaning else ""
        ax.set_title(
            f"IQM of {result.score_name} over {tasks_text(result, look)}, {runs_text(result)} seeds per task\n"
            f"95% stratified bootstrap CI{meaning}"
        )
    return figure


def performance_profile(result: Aggregate, look: Look) -> Figure:
    """rliable's score distribution: the fraction of runs whose final score exceeds each threshold tau."""
    figure, ax = plt.subplots(figsize=look.sized((7, 4.5)), layout="constrained")
    plot_utils.plot_performance_profiles(
        {look.label(method): result.profiles.points[method] for method in result.methods},
        result.taus,
        performance_profile_cis={look.label(method): result.profiles.intervals[method] for method in result.methods},
        colors={look.label(method): look.colors[method] for method in result.methods},
        xlabel=f"{capitalised(look.scored(scale_label(result)))} \u03c4",
        ylabel="Fraction of runs with score > \u03c4",
        ax=ax,
        labelsize="large",
        ticklabelsize="large",
    )
    ax.legend(loc="best", frameon=False)
    if look.style.titles:
        ax.set_title(
            f"Performance profile: {look.scored(result.score_name)}, {tasks_text(result, look)} \u00d7 {runs_text(result)} runs\n"
            "95% stratified bootstrap CI"
        )
    return figure


def probability_of_improvement(result: Aggregate, look: Look) -> Figure:
    """rliable's P(reference > baseline) bars, one per baseline, coloured by the baseline."""
    reference = look.label(result.reference)
    baselines = list(result.improvement.points)[::-1]  # rliable draws the first at the bottom
    pairs = {f"{reference}{PAIR_SEPARATOR}{look.label(baseline)}": baseline for baseline in baselines}
    figure, ax = plt.subplots(figsize=look.sized((6, 1.2 + 0.6 * len(pairs))), layout="constrained")
    plot_utils.plot_probability_of_improvement(
        {pair: result.improvement.points[baseline] for pair, baseline in pairs.items()},
        {pair: result.improvement.intervals[baseline] for pair, baseline in pairs.items()},
        pair_separator=PAIR_SEPARATOR,
        ax=ax,
        colors=[look.colors[baseline] for baseline in baselines],
        xlabel=f"P({reference} > baseline)",
        left_ylabel="",
        right_ylabel="",
        labelsize="large",
        ticklabelsize="large",
    )
    mark_thin_bars(ax)
    if look.style.titles:
        ax.set_title(
            f"Probability of improvement of {reference} over each baseline\n"
            f"{look.scored('scores')} on {tasks_text(result, look)}, {runs_text(result)} runs per task, 95% stratified bootstrap CI"
        )
    return figure
