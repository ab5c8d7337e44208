"""Every method's colour, the same in every figure of every plot: the registered algorithms keep theirs
whichever are shown, so a reader can follow one algorithm across figures and papers' worth of plots."""

from __future__ import annotations

import seaborn as sns

from qsmbench.algorithms import ALGORITHMS
from qsmbench.analysis.scores import Method

Color = tuple[float, float, float]
COLORBLIND_COLORS = 10  # seaborn's colour-blind palette has 10 distinct colours
GOLDEN_HUE = (5**0.5 - 1) / 2  # the fraction of the hue circle between successive extra colours


def method_colors(methods: list[Method]) -> dict[Method, Color]:
    """Fixed colours for the registered algorithms, whichever are shown; the next ones, in order, for
    variants and unregistered algorithms. Every method its own colour: past the colour-blind palette's 10,
    hues a golden angle apart, so a colour never depends on how many methods a figure shows (evenly spaced
    hues gave the 11th registered algorithm another colour in every figure with another count)."""
    fixed = [Method(algo) for algo in ALGORITHMS]
    slots = {method: i for i, method in enumerate([*fixed, *(m for m in methods if m not in fixed)])}
    base = sns.color_palette("colorblind", COLORBLIND_COLORS)

    def color(slot: int) -> Color:
        return base[slot] if slot < len(base) else sns.husl_palette(1, h=((slot - len(base)) * GOLDEN_HUE) % 1)[0]

    return {method: color(slots[method]) for method in methods}
