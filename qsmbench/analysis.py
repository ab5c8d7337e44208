"""What `qsmbench plot` computes: run files -> aligned learning curves -> final scores -> bootstrap CIs -> tables.

No matplotlib here (figures live in qsmbench.figures). rliable takes seconds to import, so it is imported
inside the functions that bootstrap: `import qsmbench.analysis` stays cheap for the CLI.

The rules, decided once here and stated in the tables and figure titles:
- A group is the runs (seeds) of one algorithm on one task (the `env` column: a Gymnasium id, or an offline
  task name). Its learning curve uses the evaluation steps that every one of its runs reached, so an
  incomplete run (status != complete) shortens its group's curve instead of being dropped; such runs are
  listed in a warning.
- Algorithms are compared at equal budgets: on each task the final score of a run is the mean of its last K
  evaluations at or before the task's final step, the last step that every algorithm on that task reached.
- Scores are normalised with fixed references, never with the data being plotted: an offline run's
  `eval_normalized_score` / 100; DeepMind Control return / 1000; otherwise (R - random) / (expert - random)
  from qsmbench/data/reference_scores.csv. Tasks without a reference are shown per task only.
- Aggregates need a complete task x algorithm matrix with equal runs per task; see `aggregate_cells`.
- Bootstraps use rliable 1.2, which ignores `random_state` and draws from NumPy's global generator; each
  estimate seeds that generator first (and restores it afterwards), so a group's CI depends only on its
  own runs and the same inputs always give the same CIs.
"""

from __future__ import annotations

import csv
import importlib.resources
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa

from qsmbench.config import ConfigError, require
from qsmbench.storage import STATUSES, read_run

Normalize = Literal["reference", "none"]
Progress = Callable[[str], None]

ALGO_ORDER = ("qsm", "dql", "sac", "td3")  # then the others alphabetically: fixes legend order and colours
REQUIRED_COLUMNS = ("algo", "env", "seed", "step", "eval_return")
OFFLINE_SCORE = "eval_normalized_score"  # D4RL convention, 0-100
DMC_PREFIX = "dm_control/"
DMC_MAX_RETURN = 1000.0
CONFIDENCE = 0.95
CURVE_POINTS = 30  # points of the aggregate IQM-over-steps curve; each costs one bootstrap statistic
PROFILE_POINTS = 101
COUNT_COLUMNS = ("tasks", "seeds", "incomplete", "final_step", "last_evals")  # integers, empty where not applicable
TABLE_COLUMNS = (
    "scope", "env", "algo", "score", "tasks", "seeds", "incomplete", "final_step", "last_evals",
    "iqm", "iqm_ci_low", "iqm_ci_high", "mean", "mean_ci_low", "mean_ci_high",
    "median", "median_ci_low", "median_ci_high", "optimality_gap", "optimality_gap_ci_low", "optimality_gap_ci_high",
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """The choices behind every number in the tables and figures."""

    normalize: Normalize = "reference"  # "none": aggregate raw returns
    last_evals: int = 5  # a run's final score is the mean of its last `last_evals` evaluations
    reps: int = 2000  # bootstrap resamples
    seed: int = 0  # NumPy seed set before each bootstrap

    def __post_init__(self) -> None:
        choices = ", ".join(get_args(Normalize))
        require(self.normalize in get_args(Normalize), f"normalize must be one of {choices}, got {self.normalize!r}")
        require(self.last_evals >= 1, f"last_evals must be at least 1, got {self.last_evals}")
        require(self.reps >= 1, f"reps must be at least 1, got {self.reps}")


def algo_rank(algo: str) -> tuple[int, str]:
    """Sort key: qsm, dql, sac, td3 first, then the rest alphabetically."""
    return (ALGO_ORDER.index(algo) if algo in ALGO_ORDER else len(ALGO_ORDER), algo)


def algo_order(algos: Iterable[str]) -> list[str]:
    return sorted(set(algos), key=algo_rank)


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Run:
    """One seed's learning curve, one row per evaluation, sorted by step."""

    path: Path
    env: str
    algo: str
    seed: int
    status: str
    curve: pd.DataFrame


def load_runs(results_dir: Path) -> tuple[list[Run], list[str], list[Path]]:
    """Every readable run file at any depth under `results_dir`, with a warning for each file skipped.

    Raises ConfigError when there is no directory, no *.parquet file, or no readable run.
    """
    if not results_dir.is_dir():
        raise ConfigError(f"results directory {results_dir} does not exist")
    paths = sorted(results_dir.rglob("*.parquet"))
    if not paths:
        raise ConfigError(f"no run files (*.parquet) under {results_dir}")
    runs: list[Run] = []
    warnings: list[str] = []
    skipped: list[Path] = []
    first_path: dict[tuple[str, str, int], Path] = {}
    for path in paths:
        try:
            run = read_one(path)
        except ValueError as error:
            warnings.append(f"skipped {path}: {error}")
            skipped.append(path)
            continue
        key = (run.env, run.algo, run.seed)
        if key in first_path:  # e.g. a copy of a results tree inside the tree: counting it twice would fake seeds
            warnings.append(f"skipped {path}: same task, algorithm and seed as {first_path[key]}")
            skipped.append(path)
            continue
        first_path[key] = path
        runs.append(run)
    if not runs:
        raise ConfigError(f"none of the {len(paths)} .parquet files under {results_dir} is a readable qsmbench run")
    return runs, warnings, skipped


def read_one(path: Path) -> Run:
    """Read and check one run file; ValueError says why it cannot be used."""
    try:
        frame, metadata = read_run(path)
    except (OSError, ValueError, pa.ArrowException) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise ValueError(f"not a readable qsmbench run file ({reason})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"missing columns {', '.join(missing)}")
    if not isinstance(metadata, dict) or metadata.get("status") not in STATUSES:
        raise ValueError("its qsmbench metadata has no valid status")
    if frame.empty:
        raise ValueError("no evaluations yet")
    curve = frame.drop_duplicates("step", keep="last").sort_values("step", ignore_index=True)
    first = curve.iloc[0]
    return Run(path, str(first["env"]), str(first["algo"]), int(first["seed"]), str(metadata["status"]), curve)


# ---------------------------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class Reference:
    random: float
    expert: float
    source: str


def reference_scores() -> dict[str, Reference]:
    """The shipped per-task random and expert returns (package data, so it works from an installed wheel)."""
    text = importlib.resources.files("qsmbench").joinpath("data/reference_scores.csv").read_text(encoding="utf-8")
    return {
        row["env"]: Reference(float(row["random_score"]), float(row["expert_score"]), row["source"])
        for row in csv.DictReader(text.splitlines())
    }


@dataclass(frozen=True)
class Group:
    """The runs of one algorithm on one task, aligned on the evaluation steps that all of them reached."""

    env: str
    algo: str
    seeds: tuple[int, ...]
    incomplete: tuple[str, ...]  # "seed (status)" of each run that is not complete
    offline: bool
    steps: np.ndarray  # [T]
    returns: np.ndarray  # [seeds, T] evaluation returns
    scores: np.ndarray | None  # [seeds, T] on the cross-task scale; None without a reference


def build_groups(runs: list[Run], normalize: Normalize) -> tuple[list[Group], list[str]]:
    """Group runs by (task, algorithm), align them, and attach each group's cross-task scores."""
    references = reference_scores()
    by_key: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by_key.setdefault((run.env, run.algo), []).append(run)
    groups: list[Group] = []
    warnings: list[str] = []
    for (env, algo), members in sorted(by_key.items(), key=lambda item: (item[0][0], algo_rank(item[0][1]))):
        members.sort(key=lambda run: run.seed)
        steps = sorted(set.intersection(*(set(run.curve["step"]) for run in members)))
        if not steps:
            warnings.append(f"{env} / {algo}: its runs share no evaluation step; left out")
            continue
        offline = all(OFFLINE_SCORE in run.curve.columns for run in members)
        returns = aligned(members, steps, "eval_return")
        scores = cross_task_scores(env, members, steps, returns, offline, normalize, references)
        incomplete = tuple(f"{run.seed} ({run.status})" for run in members if run.status != "complete")
        seeds = tuple(run.seed for run in members)
        groups.append(Group(env, algo, seeds, incomplete, offline, np.array(steps), returns, scores))
    return groups, warnings


def aligned(runs: list[Run], steps: list[int], column: str) -> np.ndarray:
    """`column` of each run at `steps`: [runs, steps]."""
    return np.stack([run.curve.set_index("step").loc[steps, column].to_numpy(dtype=float) for run in runs])


def cross_task_scores(
    env: str,
    runs: list[Run],
    steps: list[int],
    returns: np.ndarray,
    offline: bool,
    normalize: Normalize,
    references: dict[str, Reference],
) -> np.ndarray | None:
    """The scale on which tasks are aggregated: fixed references only, never the data being plotted."""
    if normalize == "none":
        return returns
    if offline:
        return aligned(runs, steps, OFFLINE_SCORE) / 100.0
    if env.startswith(DMC_PREFIX):
        return returns / DMC_MAX_RETURN
    reference = references.get(env)
    if reference is None:
        return None
    return (returns - reference.random) / (reference.expert - reference.random)


def final_steps(groups: list[Group]) -> dict[str, int]:
    """Per task, the last evaluation step that every algorithm reached: final scores compare equal budgets."""
    steps: dict[str, int] = {}
    for group in groups:
        steps[group.env] = min(steps.get(group.env, int(group.steps[-1])), int(group.steps[-1]))
    return steps


def final_score(values: np.ndarray, steps: np.ndarray, final_step: int, last_evals: int) -> np.ndarray:
    """Each run's mean over its last `last_evals` evaluations at or before `final_step`: [runs]."""
    return values[:, steps <= final_step][:, -last_evals:].mean(axis=1)


# ---------------------------------------------------------------------------------------------- bootstrap


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


def interval_estimates(score_dict: dict[Hashable, Any], func: Callable[..., np.ndarray], settings: Settings) -> Estimates:
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


# ---------------------------------------------------------------------------------------------- aggregates


@dataclass(frozen=True)
class Aggregate:
    """Cross-task results on the common task set: all of rliable's estimates that the figures show."""

    envs: list[str]
    algos: list[str]
    runs: int  # runs per task, equal for every algorithm and task (rliable needs [runs, tasks] arrays)
    metric_names: list[str]
    metrics: Estimates  # algo -> [metrics]
    curve_steps: np.ndarray  # [T] steps of the IQM curve, shared by every aggregated run
    curve: Estimates | None  # algo -> IQM at each of curve_steps; None with fewer than two shared steps
    taus: np.ndarray
    profiles: Estimates  # algo -> fraction of runs above each tau
    improvement: Estimates  # "qsm,<baseline>" -> P(qsm > baseline)


def aggregate_cells(groups: list[Group]) -> tuple[list[str], list[str], list[str]]:
    """The largest complete task x algorithm matrix among the groups with cross-task scores, and warnings.

    Aggregates are only comparable over the same tasks, so while a cell is missing, drop the task or the
    algorithm with the larger fraction of missing cells (a task on a tie): a baseline run on one task only
    is dropped rather than shrinking everyone's aggregate to that task.
    """
    cells = {(group.env, group.algo) for group in groups if group.scores is not None}
    envs = sorted({env for env, _ in cells})
    algos = algo_order(algo for _, algo in cells)
    warnings = [
        f"{env} has no reference scores: shown per task, left out of the aggregates"
        for env in sorted({group.env for group in groups} - set(envs))
    ]
    while envs and algos:
        env_gap = {env: sum((env, algo) not in cells for algo in algos) / len(algos) for env in envs}
        algo_gap = {algo: sum((env, algo) not in cells for env in envs) / len(envs) for algo in algos}
        worst_env, worst_algo = max(envs, key=env_gap.__getitem__), max(algos, key=algo_gap.__getitem__)
        if env_gap[worst_env] == 0:
            break
        if algo_gap[worst_algo] > env_gap[worst_env]:
            algos.remove(worst_algo)
            warnings.append(f"{worst_algo} left out of the aggregates: it has no runs on some of the tasks")
        else:
            envs.remove(worst_env)
            warnings.append(f"{worst_env} left out of the aggregates: not every algorithm has runs on it")
    return envs, algos, warnings


def aggregate(
    groups: list[Group], final_at: dict[str, int], settings: Settings, progress: Progress
) -> tuple[Aggregate | None, list[str]]:
    """rliable's aggregate metrics, IQM curve, performance profiles and probability of improvement."""
    envs, algos, warnings = aggregate_cells(groups)
    if not envs:
        return None, [*warnings, "no task has scores on a common scale: aggregate figures and rows skipped"]
    cell = {(group.env, group.algo): group for group in groups}
    runs = min(len(cell[env, algo].seeds) for env in envs for algo in algos)
    if any(len(cell[env, algo].seeds) > runs for env in envs for algo in algos):
        warnings.append(f"aggregates use the first {runs} seeds of every task and algorithm (rliable needs equal counts)")
    members = {algo: [cell[env, algo] for env in envs] for algo in algos}
    finals: dict[Hashable, np.ndarray] = {
        algo: np.stack([final_score(g.scores[:runs], g.steps, final_at[g.env], settings.last_evals) for g in gs], axis=1)
        for algo, gs in members.items()
    }
    names, func = aggregate_metrics(settings.normalize)
    progress(f"bootstrapping aggregate metrics ({len(algos)} algorithms x {len(envs)} tasks, {settings.reps} resamples)")
    metric_estimates = interval_estimates(finals, func, settings)
    curve_steps = thin(sorted(set.intersection(*(set(g.steps) for gs in members.values() for g in gs))), CURVE_POINTS)
    curve = None
    if len(curve_steps) >= 2:
        progress(f"bootstrapping the IQM curve ({len(curve_steps)} steps)")
        curves: dict[Hashable, np.ndarray] = {
            algo: np.stack([g.scores[:runs][:, np.isin(g.steps, curve_steps)] for g in gs], axis=1)
            for algo, gs in members.items()
        }
        curve = interval_estimates(curves, iqm_over_steps, settings)
    else:
        warnings.append("sample-efficiency curve skipped: the aggregated runs share fewer than two evaluation steps")
    progress("bootstrapping performance profiles")
    taus, profiles = performance_profiles(finals, settings)
    improvement, note = probability_of_improvement(finals, settings, progress)
    warnings += [note] if note else []
    return Aggregate(envs, algos, runs, names, metric_estimates, curve_steps, curve, taus, profiles, improvement), warnings


def thin(steps: list[int], points: int) -> np.ndarray:
    """At most `points` of `steps`, evenly spread, first and last kept."""
    if len(steps) <= points:
        return np.array(steps, dtype=int)
    return np.array(steps)[np.unique(np.linspace(0, len(steps) - 1, points).round().astype(int))]


def aggregate_metrics(normalize: Normalize) -> tuple[list[str], Callable[[np.ndarray], np.ndarray]]:
    """Median, IQM, mean and (on normalised scores, where 1 = expert is a target) the optimality gap."""
    from rliable import metrics

    names = ["Median", "IQM", "Mean", "Optimality Gap"]
    funcs = [metrics.aggregate_median, aggregate_iqm, metrics.aggregate_mean, metrics.aggregate_optimality_gap]
    if normalize == "none":  # a gap to a return of 1 means nothing on raw returns
        names, funcs = names[:3], funcs[:3]
    return names, lambda scores: np.array([func(scores) for func in funcs])


def performance_profiles(finals: dict[Hashable, np.ndarray], settings: Settings) -> tuple[np.ndarray, Estimates]:
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
    finals: dict[Hashable, np.ndarray], settings: Settings, progress: Progress
) -> tuple[Estimates, str | None]:
    """P(qsm > baseline) for each baseline, or a note saying why there is nothing to compare."""
    baselines = [algo for algo in finals if algo != "qsm"]
    if "qsm" not in finals or not baselines:
        missing = "no qsm runs" if "qsm" not in finals else "no baseline runs"
        return Estimates({}, {}), f"probability of improvement skipped: {missing} in the aggregates"
    from rliable import metrics

    pairs: dict[Hashable, Any] = {f"qsm,{algo}": (finals["qsm"], finals[algo]) for algo in baselines}
    progress(f"bootstrapping probability of improvement ({len(pairs)} pairs)")
    return interval_estimates(pairs, metrics.probability_of_improvement, settings), None


# ---------------------------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class Analysis:
    """Everything the tables and figures show, computed once."""

    groups: list[Group]
    final_steps: dict[str, int]
    settings: Settings
    table: pd.DataFrame  # columns TABLE_COLUMNS
    curve_bands: Estimates  # (env, algo) -> mean over seeds at each group step
    aggregate: Aggregate | None
    warnings: list[str]


def analyse(runs: list[Run], settings: Settings, progress: Progress) -> Analysis:
    """Align, score and bootstrap: the whole computation behind `qsmbench plot`, without drawing."""
    groups, warnings = build_groups(runs, settings.normalize)
    if not groups:
        raise ConfigError("no task and algorithm has runs that share an evaluation step")
    warnings += incomplete_warnings(groups) + budget_warnings(groups)
    final_at = final_steps(groups)
    progress(f"bootstrapping learning-curve bands ({len(groups)} curves, {settings.reps} resamples)")
    bands = interval_estimates({(g.env, g.algo): g.returns[:, None, :] for g in groups}, mean_over_runs, settings)
    progress(f"bootstrapping per-task final scores ({len(groups)} task/algorithm pairs, {settings.reps} resamples)")
    rows = task_rows(groups, final_at, settings)
    result, aggregate_warnings = aggregate(groups, final_at, settings, progress)
    if result is not None:
        rows += aggregate_rows(result, settings)
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype({column: "Int64" for column in COUNT_COLUMNS})
    return Analysis(groups, final_at, settings, table, bands, result, warnings + aggregate_warnings)


def incomplete_warnings(groups: list[Group]) -> list[str]:
    listed = [f"{g.env} / {g.algo} seeds {', '.join(g.incomplete)}" for g in groups if g.incomplete]
    if not listed:
        return []
    return ["incomplete runs, used up to the evaluation steps their group shares: " + "; ".join(listed)]


def budget_warnings(groups: list[Group]) -> list[str]:
    steps = final_steps(groups)
    return [
        f"{g.env}: final scores compare algorithms at step {steps[g.env]}, the last one all of them reached; "
        f"{g.algo} ran to {int(g.steps[-1])}"
        for g in groups
        if g.steps[-1] > steps[g.env]
    ]


def task_rows(groups: list[Group], final_at: dict[str, int], settings: Settings) -> list[dict[str, Any]]:
    """One row per task, algorithm and scale (return, and normalised score where there is a reference)."""
    finals: dict[Hashable, np.ndarray] = {}
    for g in groups:
        at, last = final_at[g.env], settings.last_evals
        finals[g.env, g.algo, "return"] = final_score(g.returns, g.steps, at, last)[:, None]
        if settings.normalize == "reference" and g.scores is not None:
            finals[g.env, g.algo, "normalised"] = final_score(g.scores, g.steps, at, last)[:, None]
    estimates = interval_estimates(finals, iqm_and_mean, settings)
    group = {(g.env, g.algo): g for g in groups}
    rows = []
    for env, algo, scale in finals:
        g = group[env, algo]
        rows.append(
            {
                "scope": "task", "env": env, "algo": algo, "score": scale, "tasks": 1, "seeds": len(g.seeds),
                "incomplete": len(g.incomplete), "final_step": final_at[env], "last_evals": settings.last_evals,
                **estimate_columns(["iqm", "mean"], estimates, (env, algo, scale)),
            }
        )  # fmt: skip
    return rows


def raw_scale_note(envs: list[str]) -> str:
    """Raw returns compare algorithms, not tasks: say so when an aggregate mixes tasks."""
    return "tasks on mixed scales" if len(envs) > 1 else "one task"


def aggregate_rows(result: Aggregate, settings: Settings) -> list[dict[str, Any]]:
    columns = [name.lower().replace(" ", "_") for name in result.metric_names]
    scale = "normalised" if settings.normalize == "reference" else f"return ({raw_scale_note(result.envs)})"
    return [
        {
            "scope": "aggregate", "env": " + ".join(result.envs), "algo": algo, "score": scale,
            "tasks": len(result.envs), "seeds": result.runs, "last_evals": settings.last_evals,
            **estimate_columns(columns, result.metrics, algo),
        }
        for algo in result.algos
    ]  # fmt: skip


def estimate_columns(names: list[str], estimates: Estimates, key: Hashable) -> dict[str, float]:
    """{name, name_ci_low, name_ci_high} for each metric of one key."""
    point, interval = estimates.points[key], estimates.intervals[key]
    columns: dict[str, float] = {}
    for i, name in enumerate(names):
        columns |= {name: float(point[i]), f"{name}_ci_low": float(interval[0, i]), f"{name}_ci_high": float(interval[1, i])}
    return columns


# ---------------------------------------------------------------------------------------------- tables


def write_tables(analysis: Analysis, out_dir: Path) -> list[Path]:
    """summary.csv (every row and CI bound) and summary.md (the same, readable)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "summary.csv", out_dir / "summary.md"
    analysis.table.to_csv(csv_path, index=False)
    md_path.write_text(markdown(analysis), encoding="utf-8")
    return [csv_path, md_path]


def markdown(analysis: Analysis) -> str:
    table, settings = analysis.table, analysis.settings
    lines = [
        "# qsmbench results summary",
        "",
        f"Final score of a run: the mean of its last {settings.last_evals} evaluations at or before the final step, "
        "the last evaluation step that every algorithm on the task reached. IQM (interquartile mean) and mean over "
        f"seeds with 95% stratified bootstrap confidence intervals (percentile, {settings.reps} resamples, seed "
        f"{settings.seed}). Normalised score: 0 = random, 1 = expert (fixed reference scores; DeepMind Control "
        "return / 1000; offline runs: D4RL normalised score / 100).",
    ]
    tasks = table[table.scope == "task"]
    for scale, title in (("return", "Final evaluation return per task"), ("normalised", "Normalised final score per task")):
        rows = tasks[tasks.score == scale]
        if not rows.empty:
            lines += ["", f"## {title}", "", "| task | algorithm | seeds | final step | IQM [95% CI] | mean [95% CI] |"]
            lines += ["|---|---|---:|---:|---|---|"]
            lines += [
                f"| {r.env} | {r.algo} | {seeds_text(r)} | {int(r.final_step)} | {ci_text(r, 'iqm')} | {ci_text(r, 'mean')} |"
                for r in rows.itertuples()
            ]
    lines += ["", *aggregate_markdown(analysis)]
    if analysis.warnings:
        lines += ["", "## Notes", "", *(f"- {warning}" for warning in analysis.warnings)]
    return "\n".join(lines) + "\n"


def aggregate_markdown(analysis: Analysis) -> list[str]:
    result = analysis.aggregate
    if result is None:
        return ["## Aggregate over tasks", "", "None: no task has scores on a common scale (see the warnings)."]
    raw = f"raw return ({raw_scale_note(result.envs)})"
    scale = "normalised score" if analysis.settings.normalize == "reference" else raw
    metrics = [name.lower().replace(" ", "_") for name in result.metric_names]
    rows = analysis.table[analysis.table.scope == "aggregate"]
    return [
        f"## Aggregate over {len(result.envs)} task{'s' * (len(result.envs) != 1)}: final {scale}",
        "",
        f"Tasks: {', '.join(result.envs)}; {result.runs} runs per task and algorithm. Stratified bootstrap over runs "
        "within each task.",
        "",
        "| algorithm | " + " | ".join(f"{name} [95% CI]" for name in result.metric_names) + " |",
        "|---|" + "---|" * len(metrics),
        *(f"| {r.algo} | " + " | ".join(ci_text(r, name) for name in metrics) + " |" for r in rows.itertuples()),
    ]


def seeds_text(row: Any) -> str:
    return f"{row.seeds} ({row.incomplete} incomplete)" if row.incomplete else str(row.seeds)


def ci_text(row: Any, name: str) -> str:
    digits = 3 if row.score == "normalised" else 1
    value, low, high = getattr(row, name), getattr(row, f"{name}_ci_low"), getattr(row, f"{name}_ci_high")
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
