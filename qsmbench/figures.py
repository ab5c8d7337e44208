"""Figures of `qsmbench plot`, drawn from a finished `Analysis`: PNG (200 dpi) and PDF, Agg backend.

Each algorithm keeps one colour in every figure (colour-blind palette, in the registry's order, then the
unregistered algorithms alphabetically), and every title says what is shown, over how many seeds, and which
interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, also on machines without a display

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
from rliable import plot_utils  # noqa: E402

from qsmbench.aggregates import Aggregate  # noqa: E402
from qsmbench.algorithms import ALGORITHMS  # noqa: E402
from qsmbench.analysis import Analysis  # noqa: E402
from qsmbench.plot_settings import Progress  # noqa: E402
from qsmbench.scores import algo_order  # noqa: E402
from qsmbench.storage import plural  # noqa: E402
from qsmbench.tables import raw_scale_note  # noqa: E402

Color = tuple[float, float, float]

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


def draw_figures(analysis: Analysis, out_dir: Path, progress: Progress) -> list[Path]:
    """Write every figure that the analysis supports (the analysis warns about those it does not)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = algo_colors(algo_order(group.algo for group in analysis.groups))
    figures: dict[str, Figure] = {}
    progress(f"drawing figures ({len(analysis.groups)} learning curves)")
    with plt.rc_context(STYLE):
        figures["learning_curves"] = learning_curves(analysis, colors)
        result = analysis.aggregate
        if result is not None:
            scale = score_scale(analysis, result)
            figures["aggregate_scores"] = aggregate_scores(result, scale, colors)
            if result.curve is not None:
                xlabel = steps_label(all(g.offline for g in analysis.groups if g.task in result.tasks))
                figures["sample_efficiency"] = sample_efficiency(result, scale, xlabel, colors)
            figures["performance_profile"] = performance_profile(result, scale, colors)
            if result.improvement.points:
                improvement_of = analysis.settings.improvement_of
                figures["probability_of_improvement"] = probability_of_improvement(result, improvement_of, colors)
        paths = []
        for name, figure in figures.items():
            progress(f"saving {name} (PNG and PDF)")
            paths += save(figure, out_dir / name)
        return paths


def algo_colors(algos: list[str]) -> dict[str, Color]:
    """Fixed colours for the registered algorithms, whichever are shown; the next ones for the others."""
    palette = sns.color_palette("colorblind", 10)
    slots = {algo: i for i, algo in enumerate(algo_order([*ALGORITHMS, *algos]))}
    return {algo: palette[slots[algo] % len(palette)] for algo in algos}


def save(figure: Figure, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    figure.savefig(paths[0], dpi=PNG_DPI, bbox_inches="tight")
    figure.savefig(paths[1], bbox_inches="tight")
    plt.close(figure)
    return paths


@dataclass(frozen=True)
class Scale:
    """How the cross-task score is named in labels, and what its values mean."""

    name: str
    meaning: str


def score_scale(analysis: Analysis, result: Aggregate) -> Scale:
    if analysis.settings.normalize == "none":
        return Scale("raw return", raw_scale_note(result.tasks))
    return Scale("normalised score", "0 = random, 1 = expert")


def count_text(counts: list[int]) -> str:
    """'5' or '3-5': the number of seeds behind a figure."""
    low, high = min(counts), max(counts)
    return f"{low}" if low == high else f"{low}\u2013{high}"


def steps_label(offline: bool) -> str:
    """Offline runs count gradient steps on a fixed dataset; online runs count environment steps."""
    return "Training steps" if offline else "Environment steps"


def step_text(value: float, _position: object = None) -> str:
    """Axis ticks in environment steps: 250k, 1M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def learning_curves(analysis: Analysis, colors: dict[str, Color]) -> Figure:
    """One panel per task: each algorithm's mean evaluation return over seeds with a 95% bootstrap band."""
    tasks = sorted({group.task for group in analysis.groups})
    columns = min(3, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.8 * columns, 3.6 * rows), squeeze=False, layout="constrained")
    for ax, task in zip(axes.flat, tasks):
        for group in (g for g in analysis.groups if g.task == task):
            mean = analysis.curve_bands.points[task, group.algo]
            low, high = analysis.curve_bands.intervals[task, group.algo]
            ax.plot(group.steps, mean, color=colors[group.algo], linewidth=2, label=group.algo)
            ax.fill_between(group.steps, low, high, color=colors[group.algo], alpha=BAND_ALPHA, linewidth=0)
        offline = all(g.offline for g in analysis.groups if g.task == task)
        ax.set(title=task, xlabel=steps_label(offline), ylabel="Evaluation return")
        ax.xaxis.set_major_formatter(FuncFormatter(step_text))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(tasks) :]:
        ax.set_visible(False)
    handles = {algo: plt.Line2D([], [], color=color, linewidth=2) for algo, color in colors.items()}
    figure.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=len(handles), frameon=False)
    seeds = count_text([len(group.seeds) for group in analysis.groups])
    figure.suptitle(f"Evaluation return: mean over {seeds} seeds, 95% bootstrap CI")
    return figure


def aggregate_scores(result: Aggregate, scale: Scale, colors: dict[str, Color]) -> Figure:
    """rliable's interval-estimate plot: median, IQM, mean (and optimality gap) of the final scores.

    rliable sizes the figure by the number of algorithms and uses poster-size fonts, which collide for two or
    three algorithms; the size, fonts and labels are set again here and laid out with tight_layout.
    """
    figure, axes = plot_utils.plot_interval_estimates(
        result.metrics.points,
        result.metrics.intervals,
        metric_names=result.metric_names,
        algorithms=result.algos[::-1],  # rliable draws the first at the bottom
        colors=colors,
        xlabel="",
    )
    figure.set_size_inches(3.2 * len(result.metric_names), 1.9 + 0.45 * len(result.algos))
    for ax in axes:
        ax.tick_params(axis="x", labelsize="medium")
        ax.tick_params(axis="y", labelsize="large")
        ax.title.set_fontsize("large")
    figure.supxlabel(f"Final {scale.name} ({scale.meaning})")
    figure.suptitle(
        f"Aggregate final {scale.name} over {plural(len(result.tasks), 'task')}, {result.runs} runs per task\n"
        "point estimate (black) and 95% stratified bootstrap CI"
    )
    figure.tight_layout()
    return figure


def sample_efficiency(result: Aggregate, scale: Scale, xlabel: str, colors: dict[str, Color]) -> Figure:
    """rliable's IQM-over-steps curve."""
    assert result.curve is not None
    figure, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    plot_utils.plot_sample_efficiency_curve(
        result.curve_steps,
        result.curve.points,
        result.curve.intervals,
        algorithms=result.algos,
        colors=colors,
        xlabel=xlabel,
        ylabel=f"IQM {scale.name}",
        ax=ax,
        labelsize="large",
        ticklabelsize="large",
        marker="",
    )
    ax.xaxis.set_major_formatter(FuncFormatter(step_text))
    ax.legend(loc="best", frameon=False)
    ax.set_title(
        f"IQM of {scale.name} over {plural(len(result.tasks), 'task')}, {result.runs} seeds per task\n"
        f"95% stratified bootstrap CI; {scale.meaning}"
    )
    return figure


def performance_profile(result: Aggregate, scale: Scale, colors: dict[str, Color]) -> Figure:
    """rliable's score distribution: the fraction of runs whose final score exceeds each threshold tau."""
    figure, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    plot_utils.plot_performance_profiles(
        {algo: result.profiles.points[algo] for algo in result.algos},
        result.taus,
        performance_profile_cis=result.profiles.intervals,
        colors=colors,
        xlabel=f"Final {scale.name} \u03c4 ({scale.meaning})",
        ylabel="Fraction of runs with score > \u03c4",
        ax=ax,
        labelsize="large",
        ticklabelsize="large",
    )
    ax.legend(loc="best", frameon=False)
    ax.set_title(
        f"Performance profile: final {scale.name}, {plural(len(result.tasks), 'task')} \u00d7 {result.runs} runs\n"
        "95% stratified bootstrap CI"
    )
    return figure


def probability_of_improvement(result: Aggregate, improvement_of: str, colors: dict[str, Color]) -> Figure:
    """rliable's P(improvement_of > baseline) bars, one per baseline, coloured by the baseline."""
    pairs = list(result.improvement.points)[::-1]  # rliable draws the first at the bottom
    figure, ax = plt.subplots(figsize=(6, 1.2 + 0.6 * len(pairs)), layout="constrained")
    plot_utils.plot_probability_of_improvement(
        {pair: result.improvement.points[pair] for pair in pairs},
        result.improvement.intervals,
        ax=ax,
        colors=[colors[pair.split(",")[1]] for pair in pairs],
        xlabel=f"P({improvement_of} > baseline)",
        left_ylabel="",
        right_ylabel="",
        labelsize="large",
        ticklabelsize="large",
    )
    ax.set_title(
        f"Probability of improvement of {improvement_of} over each baseline\n"
        f"final scores on {plural(len(result.tasks), 'task')}, "
        f"{result.runs} runs per task, 95% stratified bootstrap CI"
    )
    return figure
