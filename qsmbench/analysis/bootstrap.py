"""Stratified bootstrap confidence intervals, vectorised over resamples, with rliable's definitions.

The estimates are those of rliable (Agarwal et al., NeurIPS 2021): a score array `[runs, tasks, ...]`
is resampled by drawing runs with replacement within each task (rliable's `StratifiedBootstrap`;
two algorithms compared are resampled independently, as its `StratifiedIndependentBootstrap`), the
statistic is computed on every resample, and the 95% interval is the 2.5th and 97.5th percentiles
(its `percentile` method).

What differs is speed: rliable calls the statistic once per resample in Python (and SciPy's
Mann-Whitney per task), which made 40 groups at 2,000 resamples take about a minute. Here all
resamples are one array `[reps, runs, tasks, ...]` (in chunks, to bound memory), and each statistic
takes that leading axis. The metrics are rliable's own functions wherever that costs little: the
aggregate median and mean take the whole batch (with the resample axis last, where their axis-0
reductions leave it), the aggregate IQM and optimality gap, which reduce over every axis, are called
once per resample (about 0.3 s per method at 2,000 resamples). Where there are many estimates (the
per-task IQM of every group, the IQM at every step of a curve, the probability of improvement) the
statistic calls the SciPy function rliable's calls, batched with an axis: `trim_mean` (IQM) and
`mannwhitneyu` (U / (n m), averaged over tasks); rliable's per-resample calls would make the paper
grid's plot take minutes. `tests/analysis/test_plot.py` checks every estimate against rliable itself.
SciPy takes a second to import, so it is imported when a statistic first runs, not with this module.
Each key draws from its own generator seeded with `PlotSettings.seed`, so a key's CI depends only on
its own scores, and the same inputs always give the same CIs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from qsmbench.analysis.settings import PlotSettings, Progress
from qsmbench.core.messages import plural

CONFIDENCE = 0.95
MIN_SEEDS = 3  # with fewer runs, resampling them gives intervals that describe nothing
PROFILE_POINTS = 101  # thresholds tau of a performance profile
CHUNK_VALUES = 8_000_000  # resampled values held at once (64 MB of float64)

Statistic = Callable[[np.ndarray], np.ndarray]  # [reps, runs, tasks, ...] -> [reps, ...]


@dataclass(frozen=True)
class Estimates:
    """Point estimates and CIs of shape [2, ...] (row 0 lower, row 1 upper) per key, as rliable returns them."""

    points: dict[Any, np.ndarray]
    intervals: dict[Any, np.ndarray]


def stratified_resamples(scores: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """[runs, tasks, ...] -> [reps, runs, tasks, ...]: each task's runs drawn with replacement."""
    runs, tasks = scores.shape[:2]
    index = rng.integers(0, runs, size=(reps, runs, tasks))
    return scores[index, np.arange(tasks)]


def bootstrap(
    scores: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The point estimate and percentile CI of `statistic` over stratified resamples of each array in `scores`.

    Arrays are resampled independently, one after another from one generator; `statistic` takes one
    batch of resamples per array, each with a leading resample axis.
    """
    rng = np.random.default_rng(seed)
    point = statistic(*(array[None] for array in scores))[0]
    per_resample = math.prod(array.shape[0] for array in scores) * max(array[0].size for array in scores)
    chunk = max(1, CHUNK_VALUES // per_resample)  # a pair compares every run of one with every run of the other
    samples = [
        statistic(*(stratified_resamples(array, min(chunk, reps - start), rng) for array in scores))
        for start in range(0, reps, chunk)
    ]
    tail = 100 * (1 - CONFIDENCE) / 2
    return point, np.percentile(np.concatenate(samples), [tail, 100 - tail], axis=0)


def interval_estimates(score_dict: dict[Hashable, Any], statistic: Statistic, settings: PlotSettings) -> Estimates:
    """Stratified bootstrap CIs of `statistic` for each key: an array, or a tuple of arrays compared."""
    points, intervals = {}, {}
    for key, scores in score_dict.items():
        arrays = scores if isinstance(scores, tuple) else (scores,)
        points[key], intervals[key] = bootstrap(arrays, statistic, settings.reps, settings.seed)
    return Estimates(points, intervals)


def pooled(scores: np.ndarray) -> np.ndarray:
    """[reps, runs, tasks, ...] -> [reps, runs * tasks, ...]: runs and tasks as one axis, as rliable pools them."""
    return scores.reshape(scores.shape[0], -1, *scores.shape[3:])


def iqm(values: np.ndarray, axis: int) -> np.ndarray:
    """Interquartile mean along `axis`: scipy.stats.trim_mean, which rliable's aggregate_iqm calls."""
    from scipy.stats import trim_mean

    return trim_mean(values, 0.25, axis=axis)


def iqm_and_mean(scores: np.ndarray) -> np.ndarray:
    """[reps, runs, tasks] -> [reps, 2]: IQM and mean over runs and tasks."""
    values = pooled(scores)
    return np.stack([iqm(values, axis=1), values.mean(axis=1)], axis=-1)


def mean_over_runs(scores: np.ndarray) -> np.ndarray:
    """[reps, runs, 1, T] -> [reps, T]: the learning curve's mean over seeds."""
    return scores.mean(axis=1)[:, 0]


def iqm_over_steps(scores: np.ndarray) -> np.ndarray:
    """[reps, runs, tasks, T] -> [reps, T]: the IQM pooled over runs and tasks at each step."""
    return iqm(pooled(scores), axis=1)


def per_resample(metric: Callable[[np.ndarray], Any]) -> Statistic:
    """An rliable metric of one [runs, tasks] array as a statistic of a batch: called on each resample."""
    return lambda scores: np.array([metric(sample) for sample in scores], dtype=float)


def resamples_last(metric: Callable[[np.ndarray], Any]) -> Statistic:
    """An rliable metric that reduces axis 0 (runs), then axis 0 (tasks), given the batch with the resample
    axis last, so one call computes every resample."""
    return lambda scores: np.asarray(metric(np.moveaxis(scores, 0, -1)), dtype=float)


def aggregate_metrics(normalised: bool) -> tuple[list[str], Statistic]:
    """rliable's median, IQM, mean and (on normalised scores, where 1 is a target) optimality gap."""
    from rliable import metrics

    names = ["Median", "IQM", "Mean", "Optimality Gap"]
    funcs: list[Statistic] = [  # each [reps, runs, tasks] -> [reps]
        resamples_last(metrics.aggregate_median),
        per_resample(metrics.aggregate_iqm),
        resamples_last(metrics.aggregate_mean),
        per_resample(metrics.aggregate_optimality_gap),
    ]
    if not normalised:  # a gap to a return of 1 means nothing on raw returns
        names, funcs = names[:3], funcs[:3]
    return names, lambda scores: np.stack([func(scores) for func in funcs], axis=-1)


def performance_profiles(
    finals: dict[Hashable, np.ndarray], normalised: bool, settings: PlotSettings
) -> tuple[np.ndarray, Estimates]:
    """Score distributions (fraction of runs above tau) over a tau range covering all final scores."""
    values = np.concatenate([scores.ravel() for scores in finals.values()])
    low, high = values.min(), values.max()
    if normalised:  # show the whole 0-to-1 range
        low, high = min(0.0, low), max(1.0, high)
    taus = np.linspace(low, high, PROFILE_POINTS)
    profile = lambda scores: (pooled(scores)[..., None] > taus).mean(axis=1)
    return taus, interval_estimates(finals, profile, settings)


def improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> np.ndarray:
    """[reps, n, tasks], [reps, m, tasks] -> [reps]: P(X > Y) per task, averaged over tasks, as rliable's
    probability_of_improvement: the Mann-Whitney U statistic (ties count half) / (n m)."""
    from scipy.stats import mannwhitneyu

    u = mannwhitneyu(scores_x, scores_y, alternative="greater", axis=1).statistic
    return (u / (scores_x.shape[1] * scores_y.shape[1])).mean(axis=-1)


def probability_of_improvement(
    finals: dict[Hashable, np.ndarray], reference: Hashable, settings: PlotSettings, progress: Progress
) -> tuple[Estimates, str | None]:
    """P(X > Y) for X = `reference` and each other method Y (keyed by Y), or a note saying why there is none."""
    baselines = [method for method in finals if method != reference]
    if reference not in finals or not baselines:
        missing = f"no {reference} runs" if reference not in finals else "no baseline runs"
        return Estimates({}, {}), f"probability of improvement skipped: {missing} in the aggregates"
    pairs: dict[Hashable, Any] = {baseline: (finals[reference], finals[baseline]) for baseline in baselines}
    progress(f"bootstrapping probability of improvement ({plural(len(pairs), 'pair')})")
    return interval_estimates(pairs, improvement, settings), None
