"""What the learning-curve figure draws over the mean curves and their bands: each diverged seed's own curve up to
its divergence, and the published numbers that match a task (qsmbench.analysis.published). Kept apart from
figures.py, which lays the panels out, so that each overlay reads as one short function."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.container import ErrorbarContainer

from qsmbench.analysis.colors import Color
from qsmbench.analysis.published import Published
from qsmbench.analysis.scores import Group
from qsmbench.analysis.settings import Score

DIVERGED_GID = "diverged"  # the gid of a diverged seed's own line in the learning curves
PUBLISHED_GID = "published"  # the gid of a published number's marker in the learning curves
PUBLISHED_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # one per published row of a panel, in black


def draw_diverged(ax: Axes, group: Group, color: Color) -> None:
    """Each diverged seed's own evaluations up to its divergence, thin and dashed, with a cross where it stops:
    the mean above scores it by the plot's rule (or leaves it out), and the reader sees where it failed."""
    for steps, returns in group.before_divergence.values():
        ax.plot(steps, returns, color=color, linewidth=0.8, linestyle="--", alpha=0.7, gid=DIVERGED_GID)
        ax.plot(steps[-1:], returns[-1:], color=color, marker="x", markersize=6, linestyle="", gid=f"{DIVERGED_GID} end")


def draw_published(
    ax: Axes, published: Published | None, task: str, score: Score, drawn_before: int
) -> dict[str, ErrorbarContainer]:
    """Each published number matched to `task` as a black marker at its budget, its mean +- std (no bar where the
    source gives no std), each with its own marker shape after the `drawn_before` of the other panels; returns the
    legend entries, by their text."""
    if published is None:
        return {}
    drawn: dict[str, ErrorbarContainer] = {}
    for i, row in enumerate(published.matched.get(task, [])):
        marker = ax.errorbar(
            [row.steps], [row.mean], yerr=None if row.std is None else [row.std], color="black", capsize=4, linestyle="",
            marker=PUBLISHED_MARKERS[(drawn_before + i) % len(PUBLISHED_MARKERS)], markersize=7, zorder=4,
        )
        marker.lines[0].set_gid(PUBLISHED_GID)  # the marker itself, not its error bar's caps
        drawn[row.label(score)] = marker
    return drawn
