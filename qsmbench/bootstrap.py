"""Bootstrap confidence intervals with rliable: reproducible, and each key's independent of the others.

rliable 1.2 ignores `random_state` and draws from NumPy's global generator, so every estimate here goes
through `seeded_per_key`. rliable takes seconds to import, so it is imported inside the functions that
bootstrap: importing this module stays cheap for the command line.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from qsmbench.plot_settings import Normalize, PlotSettings, Progress

CONFIDENCE = 0.95
PROFILE_POINTS = 101  # thresholds tau of a performance profile


@dataclass(frozen=True)
class Estimates:
    """rliable's output: point estimates and CIs of shape [2, ...] (row 0 lower, row 1 upper) per key."""

    points: dict[Any, np.ndarray]
    intervals: dict[Any, np.ndarray]


def seeded_per_key(
    score_dict: dict[Hashable, Any], estimate: Callable[[dict[Hashable, Any]], tuple[dict, dict]], seed: int
) -> Estimates:
    """Run an rliable estimator one key at a time, seeding NumPy's global generator before each.

    rliable 1.2 ignores `random_state` (its resampling calls np.random.choice), so this is the only way to get
    reproducible CIs; seeding per key makes each key's CI independent of which other keys are present. The
    caller's global generator state is restored afterwards.
    """
    points: dict[Any, np.ndarray] = {}
    intervals: dict[Any, np.ndarray] = {}
    state = np.random.get_state()
    try:
        for key, scores in score_dict.items():
            np.random.seed(seed)
            point, interval = estimate({key: scores})
            points.update(point)
            intervals.update(interval)
    finally:
        np.random.set_state(state)
    return Estimates(points, intervals)


def interval_estimates(
    score_dict: dict[Hashable, Any], func: Callable[..., np.ndarray], settings: PlotSettings
) -> Estimates:
    """Stratified bootstrap CIs (percentile, 95%) of `func` for each key of `score_dict`."""
    from rliable import library as rly

    return seeded_per_key(
        score_dict,
        lambda one: rly.get_interval_estimates(one, func, reps=settings.reps, confidence_interval_size=CONFIDENCE),
        settings.seed,
    )


def iqm(values: np.ndarray) -> np.ndarray:
    """Interquartile mean along the first axis, exactly scipy.stats.trim_mean(values, 0.25, axis=0).

    rliable's aggregate_iqm is that trim_mean over all values; SciPy's per-call overhead is most of the
    cost of a 2000-resample bootstrap, hence this NumPy version.
    """
    ordered = np.sort(values, axis=0)
    cut = int(0.25 * len(ordered))
    return ordered[cut : len(ordered) - cut].mean(axis=0)


def aggregate_iqm(scores: np.ndarray) -> float:
    """[runs, tasks] -> the IQM pooled over runs and tasks (rliable's definition)."""
    return float(iqm(scores.ravel()))


def iqm_and_mean(scores: np.ndarray) -> np.ndarray:
    return np.array([aggregate_iqm(scores), scores.mean()])


def mean_over_runs(scores: np.ndarray) -> np.ndarray:
    """[runs, 1, T] -> [T]: the learning curve's mean over seeds."""
    return scores.mean(axis=0)[0]


def iqm_over_steps(scores: np.ndarray) -> np.ndarray:
    """[runs, tasks, T] -> [T]: the IQM pooled over runs and tasks at each step."""
    return iqm(scores.reshape(-1, scores.shape[-1]))


def aggregate_metrics(normalize: Normalize) -> tuple[list[str], Callable[[np.ndarray], np.ndarray]]:
    """Median, IQM, mean and (on normalised scores, where 1 = expert is a target) the optimality gap."""
    from rliable import metrics

    names = ["Median", "IQM", "Mean", "Optimality Gap"]
    funcs = [metrics.aggregate_median, aggregate_iqm, metrics.aggregate_mean, metrics.aggregate_optimality_gap]
    if normalize == "none":  # a gap to a return of 1 means nothing on raw returns
        names, funcs = names[:3], funcs[:3]
    return names, lambda scores: np.array([func(scores) for func in funcs])


def performance_profiles(finals: dict[Hashable, np.ndarray], settings: PlotSettings) -> tuple[np.ndarray, Estimates]:
    """Score distributions (fraction of runs above tau) over a tau range covering all final scores."""
    from rliable import library as rly

    values = np.concatenate([scores.ravel() for scores in finals.values()])
    low, high = values.min(), values.max()
    if settings.normalize == "reference":  # show the whole random-to-expert range
        low, high = min(0.0, low), max(1.0, high)
    taus = np.linspace(low, high, PROFILE_POINTS)
    profile = lambda one: rly.create_performance_profile(one, taus, reps=settings.reps)  # noqa: E731
    return taus, seeded_per_key(finals, profile, settings.seed)


def probability_of_improvement(
    finals: dict[Hashable, np.ndarray], settings: PlotSettings, progress: Progress
) -> tuple[Estimates, str | None]:
    """P(X > Y) for X = `settings.improvement_of` and each other algorithm Y, or a note saying why there is none.

    Keys are "X,Y", the form rliable's plot_probability_of_improvement reads.
    """
    candidate = settings.improvement_of
    baselines = [algo for algo in finals if algo != candidate]
    if candidate not in finals or not baselines:
        missing = f"no {candidate} runs" if candidate not in finals else "no baseline runs"
        return Estimates({}, {}), f"probability of improvement skipped: {missing} in the aggregates"
    from rliable import metrics

    pairs: dict[Hashable, Any] = {f"{candidate},{algo}": (finals[candidate], finals[algo]) for algo in baselines}
    progress(f"bootstrapping probability of improvement ({len(pairs)} pairs)")
    return interval_estimates(pairs, metrics.probability_of_improvement, settings), None
