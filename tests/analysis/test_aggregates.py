"""Aggregates that do not flatter: diverged seeds are scored by a stated rule, and no method loses seeds to another.

Run files are written as the trainer writes them (a diverged seed keeps its rows up to the divergence and says where);
every number is checked against rliable's own functions on the same [runs, tasks] matrices.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from rliable import metrics
from support import run_cli

from qsmbench.analysis.figures import make_figures
from qsmbench.analysis.pipeline import analyse
from qsmbench.analysis.report import plot_results
from qsmbench.analysis.settings import FigureStyle, PlotSettings
from qsmbench.core.config import from_table
from qsmbench.core.errors import ConfigError
from qsmbench.grid.files import load_grid
from qsmbench.runs.format import Divergence, RunHeader, RunMetadata
from qsmbench.runs.layout import run_path
from qsmbench.runs.read import read_results
from qsmbench.runs.write import write_run

REPS = 100
STEPS = list(range(0, 8001, 1000))
DIVERGED_AT = 3500  # the diverged seeds' files end at step 3000, their last evaluation
HOPPER, CHEETAH = "Hopper-v4", "dm_control/cheetah-run-v0"
HOPPER_RANDOM, HOPPER_EXPERT = -20.272305, 3234.3  # D4RL, typed here independently of the data file
DIVERGED_SEEDS = (2, 5, 8)  # of qsm on Hopper


def returns_of(task: str, algo: str, seed: int) -> np.ndarray:
    """A noisy rising curve from a distinct start, different for every task, algorithm and seed."""
    rng = np.random.default_rng([seed, len(task), len(algo)])
    start = rng.uniform(0.0, 100.0)
    return start + np.linspace(0.0, 700.0 if algo == "qsm" else 500.0, len(STEPS)) + rng.normal(0.0, 40.0, len(STEPS))


def write_seed(root: Path, task: str, algo: str, seed: int, diverged: bool = False) -> np.ndarray:
    """One run file; a diverged seed keeps the evaluations before DIVERGED_AT. Returns the full curve."""
    values = returns_of(task, algo, seed)
    kept = [step < DIVERGED_AT for step in STEPS] if diverged else [True] * len(STEPS)
    steps = [step for step, keep in zip(STEPS, kept) if keep]
    curve = pd.DataFrame({"task": task, "algo": algo, "seed": seed, "step": steps, "eval_return": values[: len(steps)]})
    header = RunHeader(algo=algo, task=task, env_id=task, run_config={"steps": STEPS[-1]})
    divergence = Divergence(DIVERGED_AT, "critic_loss") if diverged else None
    write_run(run_path(root, task, algo, seed), curve, RunMetadata(header, seed, "diverged" if diverged else "complete", None, divergence))
    return values


def normalised(task: str, values: np.ndarray) -> np.ndarray:
    return (values - HOPPER_RANDOM) / (HOPPER_EXPERT - HOPPER_RANDOM) if task == HOPPER else values / 1000


def final_of(task: str, values: np.ndarray, diverged: bool, rule: str) -> float:
    """The final score, worked out by hand: the mean of the last 5 evaluations, a diverged seed's after its divergence
    replaced by its step-0 evaluation (untrained) or its last one (last)."""
    values = values.copy()
    if diverged:
        last_kept = max(i for i, step in enumerate(STEPS) if step < DIVERGED_AT)
        values[last_kept + 1 :] = values[0] if rule == "untrained" else values[last_kept]
    return float(normalised(task, values[-5:]).mean())


@pytest.fixture(scope="module")
def unstable(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str, int], np.ndarray]]:
    """qsm: 10 seeds on Hopper and Cheetah, 3 of them diverged on Hopper; sac: 10 clean seeds on both."""
    root = tmp_path_factory.mktemp("unstable")
    curves = {
        (task, algo, seed): write_seed(root, task, algo, seed, diverged=algo == "qsm" and task == HOPPER and seed in DIVERGED_SEEDS)
        for task in (HOPPER, CHEETAH)
        for algo in ("qsm", "sac")
        for seed in range(10)
    }
    return root, curves


def expected_matrix(curves: dict[tuple[str, str, int], np.ndarray], algo: str, rule: str) -> np.ndarray:
    """[runs, tasks] final normalised scores; under `exclude` the first 7 seeds on every task (qsm's common count)."""
    columns = []
    for task in (CHEETAH, HOPPER):
        scored = [
            final_of(task, curves[task, algo, seed], diverged, rule)
            for seed in range(10)
            if not ((diverged := algo == "qsm" and task == HOPPER and seed in DIVERGED_SEEDS) and rule == "exclude")
        ]
        columns.append(scored)
    runs = min(map(len, columns))
    return np.stack([column[:runs] for column in columns], axis=1)


@pytest.mark.parametrize("rule", ["untrained", "last", "exclude"])
def test_a_diverged_seed_is_scored_by_the_rule_and_no_method_loses_seeds(rule: str, unstable: tuple[Path, dict], tmp_path: Path) -> None:
    root, curves = unstable
    report = plot_results(root, PlotSettings(normalize="reference", reps=REPS, diverged=rule), out_dir=tmp_path)
    table = pd.read_csv(tmp_path / "summary.csv")
    aggregate = table[table.scope == "aggregate"].set_index("algo")
    qsm, sac = expected_matrix(curves, "qsm", rule), expected_matrix(curves, "sac", rule)
    assert qsm.shape == ((7, 2) if rule == "exclude" else (10, 2)) and sac.shape == (10, 2)
    for algo, scores in (("qsm", qsm), ("sac", sac)):
        row = aggregate.loc[algo]
        assert (row.seeds, row.diverged_rule) == (len(scores), rule)
        assert row.iqm == pytest.approx(metrics.aggregate_iqm(scores))
        assert row["mean"] == pytest.approx(metrics.aggregate_mean(scores))
        assert row["median"] == pytest.approx(metrics.aggregate_median(scores))
        assert row.optimality_gap == pytest.approx(metrics.aggregate_optimality_gap(scores))
    assert aggregate.loc["qsm", "diverged"] == (0 if rule == "exclude" else 3) and aggregate.loc["sac", "diverged"] == 0
    hopper = table[(table.scope == "task") & (table.task == HOPPER) & (table.score == "normalised")].set_index("algo")
    assert hopper.loc["qsm", "seeds"] == (7 if rule == "exclude" else 10) and hopper.loc["qsm", "diverged"] == 3
    assert set(table.diverged_rule) == {rule}
    analysis = analyse(read_results(root).runs, PlotSettings(normalize="reference", reps=REPS, diverged=rule), lambda _m: None)
    (result,) = analysis.aggregates
    assert result.improvement.points[result.methods[1]] == pytest.approx(metrics.probability_of_improvement(qsm, sac))
    assert [w for w in report.warnings if "diverged" in w and "seed 2 (non-finite critic_loss at step 3500)" in w]
    unequal = [w for w in report.warnings if "qsm" in w and "common" in w]
    assert len(unequal) == (1 if rule == "exclude" else 0), report.warnings
    assert not [w for w in report.warnings if "sac" in w and "seed" in w and "aggregate" in w], report.warnings


def test_pairs_of_the_probability_of_improvement_are_all_seeds_of_both_methods(unstable: tuple[Path, dict]) -> None:
    """P(qsm > sac) on 10 x 10 pairs per task, as rliable computes it on the whole matrices."""
    root, curves = unstable
    analysis = analyse(read_results(root).runs, PlotSettings(normalize="reference", reps=REPS), lambda _m: None)
    (result,) = analysis.aggregates
    assert {str(method): runs for method, runs in result.runs.items()} == {"qsm": 10, "sac": 10}
    qsm, sac = expected_matrix(curves, "qsm", "untrained"), expected_matrix(curves, "sac", "untrained")
    expected = metrics.probability_of_improvement(qsm, sac)
    assert result.improvement.points[result.methods[1]] == pytest.approx(expected)
    low, high = result.improvement.intervals[result.methods[1]]
    assert low <= expected <= high


def test_a_method_with_fewer_seeds_does_not_cut_another(tmp_path: Path) -> None:
    """qsm has 2 seeds and sac 5: sac's aggregate uses all 5 (it used to be cut to qsm's 2)."""
    finals = {algo: [final_of(HOPPER, write_seed(tmp_path, HOPPER, algo, seed), False, "exclude") for seed in range(n)]
              for algo, n in (("qsm", 2), ("sac", 5))}
    report = plot_results(tmp_path, PlotSettings(normalize="reference", reps=REPS))
    table = pd.read_csv(report.out_dir / "summary.csv")
    aggregate = table[table.scope == "aggregate"].set_index("algo")
    assert (aggregate.loc["qsm", "seeds"], aggregate.loc["sac", "seeds"]) == (2, 5)
    sac = np.array(finals["sac"])[:, None]
    assert aggregate.loc["sac", "iqm"] == pytest.approx(metrics.aggregate_iqm(sac))
    assert aggregate.loc["sac", "mean"] == pytest.approx(metrics.aggregate_mean(sac))
    assert not [w for w in report.warnings if "first 2 seeds" in w], report.warnings
    markdown = (report.out_dir / "summary.md").read_text()
    assert "| qsm | 2 | 0 |" in markdown and "| sac | 5 | 0 |" in markdown


def test_summary_md_starts_with_the_protocol(unstable: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = unstable
    plot_results(root, PlotSettings(normalize="reference", reps=REPS, seed=7, diverged="last"), out_dir=tmp_path)
    text = (tmp_path / "summary.md").read_text()
    protocol = text[: text.index("## Final evaluation return per task")]
    assert "## Protocol" in protocol
    for needed in (
        "last 5 evaluations after step 0",
        "equal budgets",
        "--diverged last",
        "qsm: 10 seeds per task (3 diverged)",
        "sac: 10 seeds per task",
        f"{REPS} resamples, seed 7",
        "Hopper-v4: (R - random) / (expert - random), random -20.2723, expert 3234.3 (D4RL d4rl/infos.py",
        "return / 1000",
    ):
        assert needed in protocol, (needed, protocol)


def test_the_learning_curves_show_a_diverged_seed_up_to_its_divergence(unstable: tuple[Path, dict]) -> None:
    root, curves = unstable
    analysis = analyse(read_results(root).runs, PlotSettings(normalize="reference", reps=REPS), lambda _m: None)
    figures = make_figures(analysis, FigureStyle())
    figure = figures["learning_curves"]
    try:
        hopper = next(ax for ax in figure.axes if ax.get_title() == "Hopper")
        ends = [line for line in hopper.get_lines() if line.get_gid() == "diverged"]
        assert len(ends) == 3
        for line, seed in zip(ends, DIVERGED_SEEDS):
            assert list(line.get_xdata()) == [step for step in STEPS if step < DIVERGED_AT]
            assert list(line.get_ydata()) == pytest.approx(list(curves[HOPPER, "qsm", seed][:4]))
    finally:
        for open_figure in figures.values():
            plt.close(open_figure)


WORKED_EXAMPLE = {  # docs/plotting.md, "Diverged seeds": evaluations every 1,000 steps; seed 2 diverged at 3,500
    0: [-1200.0, -900.0, -600.0, -400.0, -300.0, -250.0],
    1: [-1250.0, -950.0, -700.0, -450.0, -320.0, -280.0],
    2: [-1180.0, -880.0, -620.0, -430.0],
}


@pytest.mark.parametrize(("rule", "seeds", "mean"), [("untrained", 3, -585.0), ("last", 3, -335.0), ("exclude", 2, -287.5)])
def test_the_worked_example_of_the_docs(rule: str, seeds: int, mean: float, tmp_path: Path) -> None:
    header = RunHeader(algo="sac", task="Pendulum-v1", env_id="Pendulum-v1", run_config={"steps": 5000})
    for seed, values in WORKED_EXAMPLE.items():
        curve = pd.DataFrame({"task": "Pendulum-v1", "algo": "sac", "seed": seed, "step": range(0, 1000 * len(values), 1000),
                              "eval_return": values})
        status, where = ("diverged", Divergence(3500, "actor_loss")) if seed == 2 else ("complete", None)
        write_run(run_path(tmp_path, "Pendulum-v1", "sac", seed), curve, RunMetadata(header, seed, status, None, where))
    report = plot_results(tmp_path, PlotSettings(last_evals=2, reps=REPS, diverged=rule))
    row = pd.read_csv(report.out_dir / "summary.csv").query("scope == 'task'").iloc[0]
    assert (row.seeds, row.diverged, row["mean"]) == (seeds, 1, pytest.approx(mean))


@pytest.mark.parametrize("given", ["drop", "Untrained", ""])
def test_an_unknown_diverged_rule_is_one_line(given: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="diverged must be one of untrained, last, exclude"):
        PlotSettings(diverged=given)
    with pytest.raises(ConfigError, match="diverged"):
        from_table(PlotSettings, {"diverged": given})
    assert from_table(PlotSettings, {"diverged": "last"}).diverged == "last"
    write_seed(tmp_path, HOPPER, "sac", 0)
    result = run_cli(["plot", str(tmp_path), "--diverged", given or "none", "--reps", "10"], capfd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "diverged must be one of" in lines[0], result.stderr


@pytest.mark.parametrize("given", ["worst", "Best", ""])
def test_an_unknown_score_rule_is_one_line(given: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="score must be one of final, best"):
        PlotSettings(score=given)
    write_seed(tmp_path, HOPPER, "sac", 0)
    result = run_cli(["plot", str(tmp_path), "--score", given, "--reps", "10"], capfd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("qsmbench: error:") and f"score must be one of final, best, got {given!r}" in lines[0]
    assert not (tmp_path / "_figures").exists()


GRID_WITH_PLOT = """\
out = "unused"
algorithms = ["td3"]
seeds = 2
steps = 300
eval_every = 100
eval_episodes = 1

[overrides]
td3 = ["warmup_steps=100"]

[[tasks]]
env = "Pendulum-v1"
confidence = "smoke"
source = "test"

[plot]
{plot}

[scales.test]
"""


def test_a_grid_file_sets_the_score_rule_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    """`[plot] score = "best"` in a grid file is read into PlotSettings, as `--score best` is; an unknown rule is one line."""
    path = tmp_path / "grid.toml"
    path.write_text(GRID_WITH_PLOT.format(plot='score = "best"\nlast_evals = 3'))
    assert load_grid(str(path), "test").plot == PlotSettings(score="best", last_evals=3)
    path.write_text(GRID_WITH_PLOT.format(plot=""))
    assert load_grid(str(path), "test").plot.score == "final"
    path.write_text(GRID_WITH_PLOT.format(plot='score = "worst"'))
    with pytest.raises(ConfigError) as error:
        load_grid(str(path), "test")
    assert "\n" not in str(error.value) and "plot: score must be one of final, best, got 'worst'" in str(error.value)
