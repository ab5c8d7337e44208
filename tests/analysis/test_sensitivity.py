"""The sensitivity figure and table of `qsmbench plot` (qsmbench.analysis.sensitivity and its figures), on real run
files of a hyperparameter sweep with known scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy.stats import trim_mean

from qsmbench.analysis import figures
from qsmbench.analysis.pipeline import Analysis, analyse
from qsmbench.analysis.report import PlotReport, plot_results
from qsmbench.analysis.scores import Method
from qsmbench.analysis.sensitivity import ALL_TASKS, Panel, Sensitivity, value_rank
from qsmbench.analysis.settings import FigureStyle, PlotSettings
from qsmbench.runs.format import RunHeader, RunMetadata
from qsmbench.runs.layout import path_safe, run_path
from qsmbench.runs.read import read_results
from qsmbench.runs.write import write_run

HOPPER, CHEETAH = "Hopper-v4", "dm_control/cheetah-run-v0"
HOPPER_RANDOM, HOPPER_EXPERT = -20.272305, 3234.3  # D4RL, typed here independently of the data file
STEPS = [0, 1000, 2000, 3000]
SEEDS = 4
SETTINGS = PlotSettings(normalize="reference", reps=200, last_evals=2)
# qsm's registry defaults: alpha 50.0, diffusion_steps 5. The sweep, by variant label: its hyperparameters as the
# run files record them (labels are never read) and the tasks it ran on.
SWEEP: dict[tuple[str, str], tuple[dict[str, Any], tuple[str, ...]]] = {
    ("qsm", ""): ({}, (HOPPER, CHEETAH)),
    ("qsm", "alpha=120"): ({"alpha": 120.0}, (HOPPER, CHEETAH)),
    ("qsm", "alpha=25"): ({"alpha": 25.0}, (HOPPER, CHEETAH)),
    ("qsm", "alpha=5"): ({"alpha": 5.0}, (HOPPER,)),
    ("qsm", "steps=10"): ({"diffusion_steps": 10}, (HOPPER, CHEETAH)),
    ("qsm", "alpha=25 steps=10"): ({"alpha": 25.0, "diffusion_steps": 10}, (HOPPER, CHEETAH)),
    ("qsm", "alpha=120 steps=10"): ({"alpha": 120.0, "diffusion_steps": 10}, (HOPPER,)),
    ("qsm", "alpha=5 steps=10"): ({"alpha": 5.0, "diffusion_steps": 10}, (HOPPER,)),
    ("sac", ""): ({}, (HOPPER, CHEETAH)),
    ("sac", "critic_lr=0.001"): ({"critic_lr": 0.001}, (HOPPER,)),
    ("td3", ""): ({}, (HOPPER,)),
}


def write_seed(root: Path, task: str, algo: str, variant: str, config: dict[str, Any], seed: int) -> float:
    """One run file as the trainer writes it, with a curve of its own per task, configuration and seed; returns its
    final score under SETTINGS (the mean of its last two evaluations), normalised."""
    rng = np.random.default_rng([seed, len(task), len(algo), len(json.dumps(config, sort_keys=True))])
    level = rng.uniform(0.2, 0.9) * (3000.0 if task == HOPPER else 900.0)
    returns = [level * step / STEPS[-1] + rng.normal(0.0, 0.05 * level) for step in STEPS]
    rows = pd.DataFrame({"task": task, "algo": algo, "seed": seed, "step": STEPS, "eval_return": returns})
    header = RunHeader(algo=algo, task=task, env_id=task, run_config={"steps": STEPS[-1]}, algo_config=config, variant=variant)
    write_run(run_path(root, task, f"{algo}.{path_safe(variant)}" if variant else algo, seed), rows, RunMetadata(header, seed, "complete"))
    final = float(np.mean(returns[-2:]))
    return (final - HOPPER_RANDOM) / (HOPPER_EXPERT - HOPPER_RANDOM) if task == HOPPER else final / 1000.0


def write_sweep(root: Path, sweep: dict[tuple[str, str], tuple[dict[str, Any], tuple[str, ...]]]) -> dict[tuple[str, Method], np.ndarray]:
    """Every run of `sweep`, SEEDS seeds each; the normalised final scores of each (task, method), by seed."""
    return {
        (task, Method(algo, variant)): np.array([write_seed(root, task, algo, variant, config, seed) for seed in range(SEEDS)])
        for (algo, variant), (config, tasks) in sweep.items()
        for task in tasks
    }


def analysed(root: Path) -> Analysis:
    return analyse(read_results(root).runs, SETTINGS, lambda _message: None)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, Method], np.ndarray], Analysis]:
    root = tmp_path_factory.mktemp("sweep")
    finals = write_sweep(root, SWEEP)
    return root, finals, analysed(root)


def found(analysis: Analysis, algo: str, *keys: str) -> Sensitivity:
    [item] = [item for item in analysis.sensitivity if item.algo == algo and item.keys == keys]
    return item


def panel(item: Sensitivity, task: str) -> Panel:
    [shown] = [shown for shown in item.panels if shown.task == task]
    return shown


def values_at(shown: Panel) -> list[tuple[Any, ...]]:
    return [point.values for point in shown.points]


def test_one_varied_key_is_a_series_in_value_order_with_its_default_marked(swept: Any) -> None:
    """alpha 5, 25, 50 (qsm's default, the unlabelled runs) and 120 at diffusion_steps' default: numerically ordered
    (as text, 120 would come first), the default marked on its point and nowhere else."""
    _, _, analysis = swept
    alpha = found(analysis, "qsm", "alpha")
    assert alpha.values == ((5.0, 25.0, 50.0, 120.0),) and alpha.defaults == {"alpha": 50.0}
    assert [shown.task for shown in alpha.panels] == [HOPPER, CHEETAH, ALL_TASKS]
    assert values_at(panel(alpha, HOPPER)) == [(5.0,), (25.0,), (50.0,), (120.0,)]
    assert [point.default for point in panel(alpha, HOPPER).points] == [False, False, True, False]
    assert values_at(panel(alpha, CHEETAH)) == [(25.0,), (50.0,), (120.0,)]  # alpha=5 ran on Hopper only
    assert values_at(panel(alpha, ALL_TASKS)) == [(25.0,), (50.0,), (120.0,)]  # the values every task ran
    assert sorted([True, "b", [2], "a", 10, 9.5], key=value_rank) == [9.5, 10, [2], "a", "b", True]
    sac = found(analysis, "sac", "critic_lr")
    assert sac.values == ((0.0003, 0.001),) and [point.default for point in sac.panels[0].points] == [True, False]
    assert [shown.task for shown in sac.panels] == [HOPPER]  # one task: no aggregate panel


def test_two_keys_run_as_a_full_product_give_both_lines_and_a_heat_map(swept: Any) -> None:
    """On Hopper every pair of alpha {5, 25, 50, 120} x diffusion_steps {5, 10} ran: a heat map panel. On Cheetah
    (120, 10) did not: no panel there. Each line holds the other key at its default: alpha=25's point is the
    `alpha=25` runs, not `alpha=25 steps=10`."""
    _, finals, analysis = swept
    heat = found(analysis, "qsm", "alpha", "diffusion_steps")
    assert [shown.task for shown in heat.panels] == [HOPPER]
    hopper = panel(heat, HOPPER)
    assert len(hopper.points) == 8 and [p.values for p in hopper.points if p.default] == [(50.0, 5)]
    assert heat.values == ((5.0, 25.0, 50.0, 120.0), (5, 10))
    steps = found(analysis, "qsm", "diffusion_steps")
    assert values_at(panel(steps, HOPPER)) == [(5,), (10,)] and [shown.task for shown in steps.panels] == [HOPPER, CHEETAH, ALL_TASKS]
    at_25 = panel(found(analysis, "qsm", "alpha"), HOPPER).points[1]
    assert at_25.estimate.iqm == pytest.approx(trim_mean(finals[HOPPER, Method("qsm", "alpha=25")], 0.25))
    assert at_25.estimate.iqm != pytest.approx(trim_mean(finals[HOPPER, Method("qsm", "alpha=25 steps=10")], 0.25))
    cell = next(p for p in hopper.points if p.values == (120.0, 10))
    assert cell.estimate.iqm == pytest.approx(trim_mean(finals[HOPPER, Method("qsm", "alpha=120 steps=10")], 0.25))


def test_keys_varied_only_together_give_no_series(tmp_path: Path) -> None:
    """alpha and diffusion_steps changed together, never one at the other's default: neither line nor heat map."""
    write_sweep(tmp_path, {
        ("qsm", ""): ({}, (HOPPER,)),
        ("qsm", "a"): ({"alpha": 25.0, "diffusion_steps": 10}, (HOPPER,)),
        ("qsm", "b"): ({"alpha": 120.0, "diffusion_steps": 20}, (HOPPER,)),
        ("sac", ""): ({}, (HOPPER,)),
    })
    assert analysed(tmp_path).sensitivity == []


def test_an_algorithm_outside_the_registry_has_series_but_no_default(tmp_path: Path) -> None:
    write_sweep(tmp_path, {("mine", "x=1"): ({"x": 1}, (HOPPER,)), ("mine", "x=2"): ({"x": 2}, (HOPPER,))})
    [item] = analysed(tmp_path).sensitivity
    assert (item.algo, item.keys, item.defaults) == ("mine", ("x",), {})
    assert [point.default for point in item.panels[0].points] == [False, False]


def bootstrap_iqm(scores: np.ndarray, seed: int, reps: int) -> tuple[float, float, float]:
    """The IQM over runs x tasks of `scores` [runs, tasks] and its 95% percentile interval over resamples of the runs
    within each task, written out with NumPy and SciPy: one generator seeded with `seed`, all draws at once."""
    runs, tasks = scores.shape
    index = np.random.default_rng(seed).integers(0, runs, size=(reps, runs, tasks))
    resampled = scores[index, np.arange(tasks)].reshape(reps, -1)
    low, high = np.percentile(trim_mean(resampled, 0.25, axis=1), [2.5, 97.5])
    return float(trim_mean(scores, 0.25, axis=None)), float(low), float(high)


def test_points_and_their_intervals_equal_an_independent_computation(swept: Any) -> None:
    """A task's point is the group's IQM over seeds with the interval of a direct stratified bootstrap; the aggregate
    point pools runs x tasks the same way. rliable's aggregate_iqm gives the same points."""
    from rliable import metrics

    _, finals, analysis = swept
    alpha = found(analysis, "qsm", "alpha")
    for task in (HOPPER, CHEETAH):
        scores = finals[task, Method("qsm", "alpha=120")][:, None]
        estimate = panel(alpha, task).points[-1].estimate
        assert (estimate.iqm, estimate.low, estimate.high) == pytest.approx(bootstrap_iqm(scores, SETTINGS.seed, SETTINGS.reps))
        assert estimate.seeds == SEEDS and estimate.low < estimate.iqm < estimate.high
    pooled = np.stack([finals[task, Method("qsm", "alpha=120")] for task in (HOPPER, CHEETAH)], axis=1)
    estimate = panel(alpha, ALL_TASKS).points[-1].estimate
    assert (estimate.iqm, estimate.low, estimate.high) == pytest.approx(bootstrap_iqm(pooled, SETTINGS.seed, SETTINGS.reps))
    assert estimate.iqm == pytest.approx(metrics.aggregate_iqm(pooled))
    row = analysis.table.query("scope == 'task' and task == @HOPPER and variant == 'alpha=120' and score == 'normalised'").iloc[0]
    hopper = panel(alpha, HOPPER).points[-1].estimate
    assert (hopper.iqm, hopper.low, hopper.high) == pytest.approx((row.iqm, row.iqm_ci_low, row.iqm_ci_high))


def test_a_pooled_point_uses_the_first_seeds_up_to_the_smallest_count_of_its_tasks(tmp_path: Path) -> None:
    """alpha=25 has a fifth seed on Hopper only: its "all tasks" point pools the first four seeds of each task (as the
    aggregates cut a method's runs), while its Hopper point keeps all five."""
    finals = write_sweep(tmp_path, {("qsm", ""): ({}, (HOPPER, CHEETAH)), ("qsm", "alpha=25"): ({"alpha": 25.0}, (HOPPER, CHEETAH))})
    fifth = write_seed(tmp_path, HOPPER, "qsm", "alpha=25", {"alpha": 25.0}, SEEDS)
    [alpha] = analysed(tmp_path).sensitivity
    hopper = panel(alpha, HOPPER).points[0].estimate
    assert hopper.seeds == SEEDS + 1
    assert hopper.iqm == pytest.approx(trim_mean([*finals[HOPPER, Method("qsm", "alpha=25")], fifth], 0.25))
    pooled = np.stack([finals[task, Method("qsm", "alpha=25")] for task in (HOPPER, CHEETAH)], axis=1)
    estimate = panel(alpha, ALL_TASKS).points[0].estimate
    assert estimate.seeds == SEEDS
    assert (estimate.iqm, estimate.low, estimate.high) == pytest.approx(bootstrap_iqm(pooled, SETTINGS.seed, SETTINGS.reps))


def test_baselines_are_the_other_algorithms_unlabelled_runs(swept: Any) -> None:
    """qsm's baselines on Hopper are sac and td3 (not sac's critic_lr variant, nor qsm itself); on Cheetah and over
    all tasks sac alone (td3 ran on Hopper only), its aggregate pooled over both tasks."""
    _, finals, analysis = swept
    alpha = found(analysis, "qsm", "alpha")
    assert [b.method for b in panel(alpha, HOPPER).baselines] == [Method("sac"), Method("td3")]
    assert [b.method for b in panel(alpha, CHEETAH).baselines] == [Method("sac")]
    [over_all] = panel(alpha, ALL_TASKS).baselines
    pooled = np.stack([finals[task, Method("sac")] for task in (HOPPER, CHEETAH)], axis=1)
    assert (over_all.estimate.iqm, over_all.estimate.low, over_all.estimate.high) == pytest.approx(
        bootstrap_iqm(pooled, SETTINGS.seed, SETTINGS.reps)
    )
    td3 = panel(alpha, HOPPER).baselines[1].estimate
    assert td3.iqm == pytest.approx(trim_mean(finals[HOPPER, Method("td3")], 0.25))
    assert [b.method for b in panel(found(analysis, "sac", "critic_lr"), HOPPER).baselines] == [Method("qsm"), Method("td3")]


@pytest.fixture(scope="module")
def plotted(swept: Any) -> PlotReport:
    return plot_results(swept[0], SETTINGS, out_dir=swept[0] / "figures")


def test_plot_writes_the_figures_the_section_and_the_csv(swept: Any, plotted: PlotReport) -> None:
    names = {path.name for path in plotted.files}
    for stem in ("sensitivity_qsm_alpha", "sensitivity_qsm_diffusion_steps", "sensitivity_qsm_alpha_diffusion_steps",
                 "sensitivity_sac_critic_lr"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        assert (plotted.out_dir / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert (plotted.out_dir / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
    table = pd.read_csv(plotted.out_dir / "sensitivity.csv", dtype={"value": str})
    alpha = table[(table.algo == "qsm") & (table.key == "alpha")]
    assert list(alpha.task) == [HOPPER] * 4 + [CHEETAH] * 3 + [ALL_TASKS] * 3
    assert list(alpha[alpha.task == HOPPER].value) == ["5", "25", "50", "120"]
    assert list(alpha[alpha.task == HOPPER].default) == [False, False, True, False]
    assert set(alpha.score) == {"normalised"} and set(alpha.seeds) == {SEEDS} and list(alpha.tasks)[-1] == 2
    assert len(table[table.key == "alpha \u00d7 diffusion_steps"]) == 8
    point = panel(found(swept[2], "qsm", "alpha"), HOPPER).points[2].estimate
    assert alpha[alpha.task == HOPPER].iloc[2][["iqm", "iqm_ci_low", "iqm_ci_high"]].tolist() == pytest.approx(
        [point.iqm, point.low, point.high]
    )
    markdown = (plotted.out_dir / "summary.md").read_text()
    section = markdown.split("## Sensitivity")[1]
    assert f"| qsm | alpha | {HOPPER} | 50 | {SEEDS} | {point.iqm:.3f} [{point.low:.3f}, {point.high:.3f}] | yes |" in section
    assert "| qsm | alpha | all tasks | 120 |" in section


def test_the_line_figure_marks_the_default_and_draws_the_baselines(swept: Any) -> None:
    kept: dict[str, Figure] = figures.make_figures(swept[2], FigureStyle())
    try:
        figure = kept["sensitivity_qsm_alpha"]
        axes = [ax for ax in figure.axes if ax.get_visible()]
        assert [ax.get_title() for ax in axes] == ["Hopper", "Cheetah Run", "All tasks (2 tasks)"]
        hopper = axes[0]
        assert [label.get_text() for label in hopper.get_xticklabels()] == ["5", "25", "50\n(default)", "120"]
        [default] = [line for line in hopper.lines if line.get_gid() == "default"]
        assert list(default.get_xdata()) == [2]
        assert hopper.get_ylabel().replace("\n", " ") == "IQM final normalised score (0 = random, 1 = expert)"
        assert [text.get_text() for text in figure.legends[0].get_texts()] == ["QSM", "SAC", "TD3", "registry default"]
        heat = kept["sensitivity_qsm_alpha_diffusion_steps"].axes[0]
        [outline] = [patch for patch in heat.patches if patch.get_gid() == "default"]
        assert outline.get_xy() == (1.5, -0.5)  # alpha 50 is the third column, diffusion_steps 5 the first row
        assert len(heat.texts) == 8
    finally:
        for figure in kept.values():
            plt.close(figure)


def test_a_plot_without_variants_writes_no_sensitivity(tmp_path: Path) -> None:
    write_sweep(tmp_path, {("qsm", ""): ({}, (HOPPER,)), ("sac", ""): ({}, (HOPPER,))})
    report = plot_results(tmp_path, SETTINGS, out_dir=tmp_path / "figures")
    assert not [path for path in report.files if "sensitivity" in path.name]
    assert not list(report.out_dir.glob("sensitivity*"))
    assert "## Sensitivity" not in (report.out_dir / "summary.md").read_text()
