"""`qsmbench plot` (qsmbench.analysis.report and the modules it runs) on real run files with known values."""

from __future__ import annotations

import dataclasses
import errno
import inspect
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import matplotlib.image
import matplotlib.patches
import matplotlib.pyplot as plt
import matplotlib.text
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.figure import Figure
from scipy.stats import trim_mean
from support import rewrite_metadata, run_cli

from qsmbench.algorithms import ALGORITHMS
from qsmbench.analysis import figures
from qsmbench.analysis.aggregates import aggregate_cells
from qsmbench.analysis.bootstrap import aggregate_metrics, improvement, interval_estimates, iqm_and_mean, pooled
from qsmbench.analysis.colors import method_colors
from qsmbench.analysis.labels import check_labels, task_title
from qsmbench.analysis.pipeline import Analysis, analyse
from qsmbench.analysis.report import PlotReport, plot_results
from qsmbench.analysis.scores import Method, algo_order, build_groups, scores_on
from qsmbench.analysis.settings import FigureStyle, PlotSettings
from qsmbench.cli.plot import parse_labels
from qsmbench.core.errors import ConfigError
from qsmbench.runs.format import OFFLINE_SCORE, Divergence, RunFile, RunHeader, RunMetadata, Status
from qsmbench.runs.layout import FIGURES_DIR, path_safe, run_path
from qsmbench.runs.read import read_results, read_status
from qsmbench.runs.write import write_run

REPS = 200  # the default (2000) is for papers; 200 keeps this file fast and still exercises every bootstrap
LAST_EVALS = 5
STEPS = list(range(0, 8001, 1000))  # 9 evaluations, so the last 5 differ from "all"
SEEDS = 6
HOPPER = "Hopper-v4"
CHEETAH = "dm_control/cheetah-run-v0"
NO_REFERENCE = "Pendulum-v1"
HOPPER_RANDOM, HOPPER_EXPERT = -20.272305, 3234.3  # D4RL, typed here independently of the data file
FIGURES = ("learning_curves", "aggregate_scores", "sample_efficiency", "performance_profile", "probability_of_improvement")
SCALE = {HOPPER: 3000.0, CHEETAH: 800.0, NO_REFERENCE: -200.0}
QUALITY = {"qsm": 1.0, "sac": 0.8, "td3": 0.6}  # the synthetic fixture's algorithms; any other gets 0.5


def curve(task: str, algo: str, seed: int, steps: list[int]) -> list[float]:
    """A noisy rising learning curve, different for every task, algo and seed."""
    quality = QUALITY.get(algo, 0.5)
    rng = np.random.default_rng([seed, len(task), len(algo), int(quality * 10)])
    progress = np.array(steps, dtype=float) / STEPS[-1]
    scale = SCALE.get(task, 1000.0)
    return list(scale * quality * progress + rng.normal(0.0, 0.05 * abs(scale), len(steps)))


def write_seed(
    root: Path,
    task: str,
    algo: str,
    seed: int,
    steps: list[int] = STEPS,
    status: Status = "complete",
    variant: str = "",
    algo_config: dict[str, Any] | None = None,
    budget: int | None = None,
    **extra: list[float],
) -> list[float]:
    """Write one run file as the trainer does (a variant's in `<algo>.<variant>`); return its evaluation returns."""
    returns = curve(task, algo, seed, steps)
    rows: list[dict[str, Any]] = []
    for i, (step, value) in enumerate(zip(steps, returns)):
        rows.append(
            {
                "task": task, "algo": algo, "seed": seed, "step": step, "eval_return": value, "eval_return_std": 1.0,
                "train_return": value, "train_episodes": i, "wall_time_s": float(i), "sps": 100.0,
                **{column: values[i] for column, values in extra.items()},
            }
        )
    header = RunHeader(
        algo=algo, task=task, env_id=task, run_config={"steps": budget or steps[-1]}, algo_config=algo_config or {}, variant=variant
    )
    path = run_path(root, task, f"{algo}.{path_safe(variant)}" if variant else algo, seed)
    write_run(path, pd.DataFrame(rows), RunMetadata(header, seed, status))
    return returns


def final(returns: list[float], last: int = LAST_EVALS) -> float:
    return float(np.mean(returns[-last:]))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str], np.ndarray]]:
    """Two tasks with references and one without, qsm/sac/td3 x 6 seeds; the expected final returns."""
    root = tmp_path_factory.mktemp("results")
    finals: dict[tuple[str, str], np.ndarray] = {}
    for task in (HOPPER, CHEETAH, NO_REFERENCE):
        for algo in QUALITY:
            finals[task, algo] = np.array([final(write_seed(root, task, algo, seed)) for seed in range(SEEDS)])
    return root, finals


@pytest.fixture(scope="module")
def plotted(synthetic: tuple[Path, Any]) -> tuple[PlotReport, list[str]]:
    messages: list[str] = []
    return plot_results(synthetic[0], PlotSettings(normalize="reference", reps=REPS), progress=messages.append), messages


def summary(report: PlotReport) -> pd.DataFrame:
    return pd.read_csv(report.out_dir / "summary.csv")


def test_summary_equals_an_independent_computation(synthetic: Any, plotted: tuple[PlotReport, list[str]]) -> None:
    (_, finals), (report, messages) = synthetic, plotted
    table = summary(report)
    assert report.out_dir == synthetic[0] / "_figures" and not report.skipped
    assert any("bootstrapping" in message for message in messages)
    normalised: dict[str, list[np.ndarray]] = {algo: [] for algo in QUALITY}
    for (task, algo), values in finals.items():
        row = table[(table.scope == "task") & (table.task == task) & (table.algo == algo) & (table.score == "return")]
        assert len(row) == 1
        row = row.iloc[0]
        assert (row.seeds, row.final_step, row.last_evals, row.incomplete) == (SEEDS, STEPS[-1], LAST_EVALS, 0)
        assert row.iqm == pytest.approx(trim_mean(values, 0.25))
        assert row["mean"] == pytest.approx(values.mean())
        assert row.iqm_ci_low <= row.iqm <= row.iqm_ci_high and row.mean_ci_low < row["mean"] < row.mean_ci_high
        if task != NO_REFERENCE:
            scores = (values - HOPPER_RANDOM) / (HOPPER_EXPERT - HOPPER_RANDOM) if task == HOPPER else values / 1000
            normalised[algo].append(scores)
            norm = table[(table.scope == "task") & (table.task == task) & (table.algo == algo) & (table.score == "normalised")]
            assert norm.iloc[0].iqm == pytest.approx(trim_mean(scores, 0.25))
    aggregate = table[table.scope == "aggregate"].set_index("algo")
    assert list(aggregate.index) == ["qsm", "sac", "td3"]
    for algo, per_task in normalised.items():
        scores = np.stack(per_task, axis=1)  # [seeds, tasks]
        assert aggregate.loc[algo, "iqm"] == pytest.approx(trim_mean(scores, 0.25, axis=None))
        assert aggregate.loc[algo, "mean"] == pytest.approx(scores.mean())
        assert aggregate.loc[algo, "median"] == pytest.approx(np.median(scores.mean(axis=0)))
        assert aggregate.loc[algo, "optimality_gap"] == pytest.approx(np.mean(1 - np.minimum(scores, 1)))
        assert aggregate.loc[algo, "tasks"] == 2
    markdown = (report.out_dir / "summary.md").read_text()
    assert f"last {LAST_EVALS} evaluations" in markdown and "## Aggregate over 2 tasks" in markdown


def test_same_inputs_give_identical_cis(synthetic: Any, plotted: tuple[PlotReport, list[str]], tmp_path: Path) -> None:
    np.random.seed(123)
    expected_draw = np.random.rand()
    np.random.seed(123)
    again = plot_results(synthetic[0], PlotSettings(normalize="reference", reps=REPS), out_dir=tmp_path)
    assert np.random.rand() == expected_draw  # the caller's global generator is left as it was
    first, second = summary(plotted[0]), summary(again)
    pd.testing.assert_frame_equal(first, second)
    assert (first.iqm_ci_high > first.iqm_ci_low).all()  # real intervals, not points
    assert inspect.signature(plot_results).parameters["settings"].default.reps == 2000


def test_figures_are_real_images_and_pdfs(plotted: tuple[PlotReport, list[str]]) -> None:
    report = plotted[0]
    for name in FIGURES:
        png, pdf = report.out_dir / f"{name}.png", report.out_dir / f"{name}.pdf"
        assert png in report.files and pdf in report.files
        image = matplotlib.image.imread(png)
        height, width = image.shape[:2]
        assert 300 <= height <= 4000 and 500 <= width <= 5000, (name, image.shape)
        assert image[..., :3].std() > 0.05, name  # not blank
        assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 5000


def test_task_without_reference_is_kept_out_of_aggregates(plotted: tuple[PlotReport, list[str]]) -> None:
    report = plotted[0]
    table = summary(report)
    assert any(NO_REFERENCE in warning and "aggregate" in warning for warning in report.warnings)
    rows = table[table.task == NO_REFERENCE]
    assert set(rows.score) == {"return"} and set(rows.algo) == set(QUALITY)
    assert not table[table.scope == "aggregate"].task.str.contains(NO_REFERENCE).any()


def test_unusable_files_are_named_and_skipped(tmp_path: Path) -> None:
    for algo in ("sac", "td3"):
        for seed in range(3):
            write_seed(tmp_path, HOPPER, algo, seed)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"this is not parquet" * 10)
    foreign = tmp_path / "deep" / "er" / "foreign.parquet"
    foreign.parent.mkdir(parents=True)
    pq.write_table(pa.table({"step": [0, 1000], "eval_return": [1.0, 2.0]}), foreign)
    report = plot_results(tmp_path, PlotSettings(reps=50))
    assert sorted(report.skipped) == sorted([garbage, foreign])
    for bad in (garbage, foreign):
        assert any(str(bad) in warning for warning in report.warnings), report.warnings
    assert set(summary(report).algo) == {"sac", "td3"}
    assert matplotlib.image.imread(report.out_dir / "learning_curves.png").size > 0
    assert (report.out_dir / "aggregate_scores.pdf").exists()


BAD_METADATA = {
    "seed-text": lambda document: document.update(seed="zero"),
    "seed-fraction": lambda document: document.update(seed=3.5),
    "algo-number": lambda document: document.update(algo=3),
    "task-null": lambda document: document.update(task=None),
    "env-id-list": lambda document: document.update(env_id=["Hopper-v4"]),
    "variant-number": lambda document: document.update(variant=7),
    "dataset-number": lambda document: document.update(dataset=5),
    "ref-scores-text": lambda document: document.update(ref_scores="ab"),
    "ref-scores-one": lambda document: document.update(ref_scores=[1.0]),
    "run-config-text": lambda document: document.update(run_config="steps=8000"),
    "algo-config-list": lambda document: document.update(algo_config=[1, 2]),
    "error-number": lambda document: document.update(error=5),
    "divergence-text": lambda document: document.update(status="diverged", divergence={"step": "100", "quantity": "reward"}),
}


def results_with_one_bad_file(root: Path, damage: Callable[[Path], None]) -> Path:
    """sac and td3 on Hopper, 3 good seeds each, and sac's seed 3 damaged by `damage`: the bad file."""
    for algo in ("sac", "td3"):
        for seed in range(3):
            write_seed(root, HOPPER, algo, seed)
    write_seed(root, HOPPER, "sac", 3)
    bad = run_path(root, HOPPER, "sac", 3)
    damage(bad)
    return bad


def assert_only_skipped(root: Path, bad: Path, named: str = "") -> None:
    tree = read_results(root)
    assert tree.skipped == [bad] and len(tree.runs) == 6
    assert [warning for warning in tree.warnings if str(bad) in warning and named in warning], tree.warnings


@pytest.mark.parametrize("edit", BAD_METADATA.values(), ids=BAD_METADATA.keys())
def test_a_run_file_with_malformed_metadata_is_named_and_skipped(edit: Any, tmp_path: Path) -> None:
    """A hand-edited or foreign file whose metadata has a value of the wrong type is skipped with a warning naming
    it, and the rest is read (`plot` once stopped with "invalid literal for int()" or a TypeError, naming no file)."""
    assert_only_skipped(tmp_path, results_with_one_bad_file(tmp_path, lambda bad: rewrite_metadata(bad, edit)))


def test_plot_names_a_run_file_with_malformed_metadata_in_one_warning_and_plots_the_rest(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bad = results_with_one_bad_file(tmp_path, lambda bad: rewrite_metadata(bad, BAD_METADATA["seed-text"]))
    out = tmp_path / "figures"
    result = run_cli(["plot", str(tmp_path), "--out", str(out), "--reps", "50"], capfd)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    warned = [line for line in result.stderr.splitlines() if str(bad) in line]
    assert len(warned) == 1 and warned[0].startswith("qsmbench: warning: skipped"), result.stderr
    table = pd.read_csv(out / "summary.csv")
    assert set(table.algo) == {"sac", "td3"} and set(table[table.scope == "task"].seeds) == {3}


def replace_steps(steps: list[Any]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        table = pq.read_table(path)
        pq.write_table(table.set_column(table.schema.get_field_index("step"), "step", pa.array(steps)), path)

    return damage


@pytest.mark.parametrize("steps", [[str(step) for step in STEPS], [*map(float, STEPS[:-1]), None]], ids=["text", "nan"])
def test_a_run_file_whose_steps_are_not_whole_numbers_is_named_and_skipped(steps: list[Any], tmp_path: Path) -> None:
    assert_only_skipped(tmp_path, results_with_one_bad_file(tmp_path, replace_steps(steps)), "step")


def write_part_then_fill_the_disk(target: Any) -> NoReturn:
    """What a full disk (or a kill) mid-write leaves: the start of the output, then the write stops."""
    if isinstance(target, (str, os.PathLike)):
        Path(target).write_bytes(b"partial")
    else:
        target.write(b"partial")
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("writer", ["summary.csv", "figure"])
def test_a_plot_that_fails_mid_write_keeps_the_files_of_the_last_plot(
    writer: str, synthetic: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plot` wrote summary.csv, summary.md and the figures in place: a full disk or a kill mid-plot left a truncated
    file under a valid name. Each file is now replaced atomically: the last plot's stays whole, and no temporary is left."""
    root, _ = synthetic
    out = tmp_path / "figures"
    plot_results(root, PlotSettings(reps=50), out)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    if writer == "figure":
        monkeypatch.setattr(Figure, "savefig", lambda _figure, target, *_args, **_kwargs: write_part_then_fill_the_disk(target))
    else:
        monkeypatch.setattr(pd.DataFrame, "to_csv", lambda _frame, target, *_args, **_kwargs: write_part_then_fill_the_disk(target))
    with pytest.raises(OSError, match="No space left"):
        plot_results(root, PlotSettings(reps=50), out)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_a_linked_figures_folder_of_a_results_directory_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """A `_figures` link planted in a shared results directory sent `plot`'s files over the target's."""
    root, victim = tmp_path / "results", tmp_path / "someone-elses"
    write_seed(root, NO_REFERENCE, "sac", 0)
    victim.mkdir()
    (victim / "summary.csv").write_text("not yours")
    (root / "_figures").symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        plot_results(root, PlotSettings(normalize="none", reps=50))
    assert [path.name for path in victim.iterdir()] == ["summary.csv"] and (victim / "summary.csv").read_text() == "not yours"
    chosen = tmp_path / "my-figures"
    chosen.symlink_to(victim)  # a folder the user names is theirs to link
    assert plot_results(root, PlotSettings(normalize="none", reps=50), chosen).files


def test_missing_empty_or_unreadable_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        plot_results(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no run files"):
        plot_results(tmp_path)
    (tmp_path / "broken.parquet").write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match="readable"):
        plot_results(tmp_path)
    with pytest.raises(ConfigError, match="normalize"):
        PlotSettings(normalize="minmax")
    with pytest.raises(ConfigError, match="reference"):
        PlotSettings(reference=" qsm")


def test_different_lengths_are_aligned_and_incomplete_runs_reported(tmp_path: Path) -> None:
    """sac seed 3 was interrupted at 5000 steps and qsm ran to 10000: final scores compare at 5000."""
    sac = [write_seed(tmp_path, HOPPER, "sac", seed) for seed in range(3)]
    sac.append(write_seed(tmp_path, HOPPER, "sac", 3, steps=STEPS[:6], status="interrupted", budget=STEPS[-1]))
    qsm = [write_seed(tmp_path, HOPPER, "qsm", seed, steps=list(range(0, 10001, 1000))) for seed in range(4)]
    groups = {group.algo: group for group in build_groups(read_results(tmp_path).runs)[0]}
    assert list(groups["sac"].steps) == STEPS[:6] and groups["sac"].returns.shape == (4, 6)
    assert list(groups["qsm"].steps) == list(range(0, 10001, 1000))
    report = plot_results(tmp_path, PlotSettings(reps=50))
    assert any("incomplete" in w and "sac" in w and "3 (interrupted)" in w for w in report.warnings), report.warnings
    assert any("qsm ran to 10000" in warning for warning in report.warnings)
    table = summary(report)
    rows = table[(table.scope == "task") & (table.score == "return")].set_index("algo")
    assert (rows.final_step == 5000).all() and rows.loc["sac", "incomplete"] == 1
    assert rows.loc["sac", "mean"] == pytest.approx(np.mean([final(returns[:6]) for returns in sac]))
    assert rows.loc["qsm", "mean"] == pytest.approx(np.mean([final(returns[:6]) for returns in qsm]))


def test_diverged_and_non_finite_seeds_are_scored_by_the_rule_named_and_counted(tmp_path: Path) -> None:
    """sac seed 1 diverged (its status says where) and seed 2, from an older version, holds a NaN return: both
    are named in a warning and counted in the table; by default each scores its step-0 evaluation after its
    divergence, under `exclude` neither enters a number; and no nan is printed."""
    kept = [write_seed(tmp_path, HOPPER, "sac", seed) for seed in (0, 3)]
    for seed in (0, 1):
        write_seed(tmp_path, HOPPER, "qsm", seed)
    header = RunHeader(algo="sac", task=HOPPER, env_id=HOPPER, run_config={"steps": STEPS[-1]})
    rows = pd.DataFrame({"task": HOPPER, "algo": "sac", "seed": 1, "step": STEPS[:3], "eval_return": [1.0, 2.0, 3.0]})
    diverged = RunMetadata(header, 1, "diverged", None, Divergence(2500, "critic_loss"))
    write_run(run_path(tmp_path, HOPPER, "sac", 1), rows, diverged)
    with_nan = np.array(write_seed(tmp_path, HOPPER, "sac", 2))
    nan_file = run_path(tmp_path, HOPPER, "sac", 2)
    stored = pq.read_table(nan_file)
    with_nan[-1] = np.nan
    column = stored.schema.get_field_index("eval_return")
    pq.write_table(stored.set_column(column, "eval_return", pa.array(with_nan)), nan_file)  # keeps the metadata
    untrained_nan = np.where(np.isfinite(with_nan), with_nan, with_nan[0])
    for rule, seeds, expected, note in (
        ("untrained", 4, [*map(final, kept), 1.0, final(list(untrained_nan))], "4 (2 diverged, scored as untrained)"),
        ("exclude", 2, list(map(final, kept)), "2 (fewer than 3: CI not meaningful; 2 diverged, left out)"),
    ):
        report = plot_results(tmp_path, PlotSettings(reps=50, diverged=rule))  # type: ignore[arg-type]
        (warning,) = [w for w in report.warnings if "diverged" in w]
        assert warning.startswith(f"{HOPPER} / sac: 2 of 4 seeds diverged, {'left out' if rule == 'exclude' else 'scored'}")
        assert "seed 1 (non-finite critic_loss at step 2500)" in warning and "seed 2 (non-finite evaluation values)" in warning
        row = summary(report).query("scope == 'task' and algo == 'sac' and score == 'return'").iloc[0]
        assert (row.seeds, row.diverged, row.diverged_rule) == (seeds, 2, rule)
        assert row["mean"] == pytest.approx(np.mean(expected))
        markdown = (report.out_dir / "summary.md").read_text()
        assert f"| {note} |" in markdown
        assert not re.search(r"\b(nan|inf)\b", markdown.lower())


def test_a_group_mixing_configurations_is_refused_in_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Seeds 0-1 and 2 of one task and algorithm were trained with different critic_lr and budgets: plot stops
    with exit 2 and one line naming the settings and two of the files, before writing anything."""
    for seed, critic_lr, steps in ((0, 3e-4, STEPS), (1, 3e-4, STEPS), (2, 1e-3, STEPS[:4])):
        write_seed(tmp_path / "results", HOPPER, "sac", seed, steps=steps, algo_config={"critic_lr": critic_lr})
    result = run_cli(["plot", str(tmp_path / "results"), "--out", str(tmp_path / "figures")], capfd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    first, third = run_path(tmp_path / "results", HOPPER, "sac", 0), run_path(tmp_path / "results", HOPPER, "sac", 2)
    assert lines[0] == (
        f"qsmbench: error: {HOPPER} / sac: {first} and {third} were trained with different settings "
        "(critic_lr 0.0003 vs 0.001, steps 8000 vs 3000); give one of them its own name (qsmbench run --name LABEL) "
        "to plot them as separate variants"
    )
    assert not (tmp_path / "figures").exists()


def test_many_diverged_seeds_are_named_in_one_short_warning() -> None:
    """Of 12 diverged seeds ten are named and the rest counted."""
    runs = []
    for seed in range(14):
        header = RunHeader(algo="sac", task=HOPPER, env_id=HOPPER, run_config={"steps": 2})
        status, where = ("diverged", Divergence(1, "actor_loss")) if seed < 12 else ("complete", None)
        curve = pd.DataFrame({"task": HOPPER, "algo": "sac", "seed": seed, "step": [0, 1, 2], "eval_return": 1.0})
        runs.append(RunFile(Path(f"seed_{seed}.parquet"), RunMetadata(header, seed, status, None, where), curve))
    (diverged,) = build_groups(runs)[1]
    assert diverged.endswith("seed 9 (non-finite actor_loss at step 1) and 2 more") and "seed 10" not in diverged


def test_reading_follows_directory_links_once_and_checks_seeds(tmp_path: Path) -> None:
    """A run directory linked in is read (a link to an ancestor does not loop); a zero-row file is
    'no evaluations yet'; seed_0 copied to seed_1 is skipped, and its status reads as unreadable."""
    root, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    write_seed(root, HOPPER, "sac", 0)
    write_seed(elsewhere, HOPPER, "td3", 0)
    (root / HOPPER / "td3").symlink_to(elsewhere / HOPPER / "td3")
    (root / HOPPER / "loop").symlink_to(root)
    header = RunHeader(algo="qsm", task=HOPPER, env_id=HOPPER)
    write_run(run_path(root, HOPPER, "qsm", 0), pd.DataFrame(), RunMetadata(header, 0, "running"))
    copy = run_path(root, HOPPER, "sac", 1)
    copy.write_bytes(run_path(root, HOPPER, "sac", 0).read_bytes())
    tree = read_results(root)
    assert sorted((run.algo, run.seed) for run in tree.runs) == [("sac", 0), ("td3", 0)]
    assert sorted(tree.skipped) == sorted([run_path(root, HOPPER, "qsm", 0), copy])
    assert any("qsm/seed_0.parquet: no evaluations yet" in w for w in tree.warnings), tree.warnings
    assert any("sac/seed_1.parquet: its metadata is seed 0, but its name says seed 1" in w for w in tree.warnings)
    assert read_status(copy) == "unreadable" and read_status(run_path(root, HOPPER, "sac", 0)) == "complete"


def test_the_vectorised_bootstrap_agrees_with_rliable() -> None:
    """Points equal rliable's exactly; CIs agree within Monte Carlo error (they use other random draws):
    aggregate metrics, one task's IQM and mean, performance profile and probability of improvement on
    [10 runs, 3 tasks]."""
    from rliable import library as rly
    from rliable import metrics

    rng = np.random.default_rng(0)
    x, y = rng.normal(0.6, 0.3, (10, 3)), rng.normal(0.45, 0.3, (10, 3))
    settings, reps = PlotSettings(reps=1000), 1000
    taus = np.linspace(0.0, 1.0, 5)
    rliable_metrics = [metrics.aggregate_median, metrics.aggregate_iqm, metrics.aggregate_mean, metrics.aggregate_optimality_gap]
    ours = [
        interval_estimates({"x": x}, aggregate_metrics(True)[1], settings),
        interval_estimates({"x": x[:, :1]}, iqm_and_mean, settings),
        interval_estimates({"x": x}, lambda scores: (pooled(scores)[..., None] > taus).mean(axis=1), settings),
        interval_estimates({"x": (x, y)}, improvement, settings),
    ]
    np.random.seed(0)  # rliable 1.2 draws from NumPy's global generator
    theirs = [
        rly.get_interval_estimates({"x": x}, lambda s: np.array([f(s) for f in rliable_metrics]), reps=reps),
        rly.get_interval_estimates({"x": x[:, :1]}, lambda s: np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s)]), reps=reps),
        rly.create_performance_profile({"x": x}, taus, reps=reps),
        rly.get_interval_estimates({"x": (x, y)}, metrics.probability_of_improvement, reps=reps),
    ]
    for mine, (points, intervals) in zip(ours, theirs):
        np.testing.assert_allclose(mine.points["x"], points["x"])
        expected = np.asarray(intervals["x"]).reshape(mine.intervals["x"].shape)  # rliable keeps a unit axis for scalars
        width = np.maximum(expected[1] - expected[0], 0.05)
        assert np.all(np.abs(mine.intervals["x"] - expected) <= 0.2 * width), (mine.intervals["x"], expected)


def test_normalisation_rules(tmp_path: Path) -> None:
    """Offline runs use their D4RL score / 100, DeepMind Control / 1000; "none" keeps raw returns."""
    offline = "hopper-medium-v2"
    write_seed(tmp_path, offline, "qsm", 0, eval_normalized_score=[10.0 * i for i in range(len(STEPS))])
    write_seed(tmp_path, CHEETAH, "qsm", 0)
    runs = read_results(tmp_path).runs
    groups = {group.task: group for group in build_groups(runs)[0]}
    np.testing.assert_allclose(groups[offline].normalised, [[0.1 * i for i in range(len(STEPS))]])
    np.testing.assert_allclose(groups[CHEETAH].normalised, groups[CHEETAH].returns / 1000)
    for group in groups.values():
        np.testing.assert_array_equal(scores_on(group, "none"), group.returns)
        np.testing.assert_array_equal(scores_on(group, "reference"), group.normalised)


def test_aggregates_use_a_complete_task_by_algorithm_matrix(tmp_path: Path) -> None:
    """td3 ran on one of two tasks: td3 leaves the aggregates, not the task; a task without reference too."""
    for task in (HOPPER, CHEETAH, NO_REFERENCE):
        for algo in ("qsm", "sac"):
            write_seed(tmp_path, task, algo, 0)
    write_seed(tmp_path, HOPPER, "td3", 0)
    tasks, methods, warnings = aggregate_cells(build_groups(read_results(tmp_path).runs)[0], "reference")
    assert (tasks, methods) == (sorted([HOPPER, CHEETAH]), [Method("qsm"), Method("sac")])
    assert any(w.startswith("td3 left out") for w in warnings) and any(NO_REFERENCE in w for w in warnings)


def test_results_written_by_schema_1_are_plotted(results_v1: Path, tmp_path: Path) -> None:
    """Run files of the previous format (an `env` column and metadata key) plot as before: three groups of 2 seeds."""
    report = plot_results(results_v1, PlotSettings(normalize="reference", reps=50), out_dir=tmp_path)
    assert not report.skipped and (tmp_path / "summary.md").exists() and (tmp_path / "learning_curves.png").exists()
    table = summary(report)
    tasks = table[table.scope == "task"]
    returns = tasks[tasks.score == "return"].set_index(["task", "algo"])
    offline = "qsmbench/pendulum/random-v0"
    assert sorted(returns.index) == [("Pendulum-v1", "sac"), ("Pendulum-v1", "td3"), (offline, "dql")]
    assert (returns.seeds == 2).all() and (returns.incomplete == 0).all()
    assert returns.loc[("Pendulum-v1", "sac"), "final_step"] == 200 and returns.loc[(offline, "dql"), "final_step"] == 40
    files = sorted((results_v1 / "qsmbench-pendulum-random-v0" / "dql").glob("seed_*.parquet"))
    scores = np.array([pq.read_table(path).column(OFFLINE_SCORE).to_numpy()[1:].mean() / 100 for path in files])  # not step 0
    assert len(scores) == 2
    normalised = tasks[tasks.score == "normalised"]
    assert list(zip(normalised.task, normalised.algo)) == [(offline, "dql")]  # Pendulum-v1 has no reference
    assert normalised.iloc[0]["mean"] == pytest.approx(scores.mean())
    assert normalised.iloc[0].iqm == pytest.approx(trim_mean(scores, 0.25))
    aggregate = table[table.scope == "aggregate"]
    assert list(zip(aggregate.task, aggregate.algo)) == [(offline, "dql")]
    assert aggregate.iloc[0]["mean"] == pytest.approx(scores.mean())


def drawn(analysis: Analysis, style: FigureStyle = FigureStyle()) -> dict[str, Figure]:
    """The figures that `plot` would save of `analysis`, by name, open."""
    return figures.make_figures(analysis, style)


def analysed(root: Path, **settings: Any) -> Analysis:
    return analyse(read_results(root).runs, PlotSettings(reps=50, **settings), lambda _message: None)


def legend_texts(figure: Figure) -> list[str]:
    return [text.get_text() for text in figure.legends[0].get_texts()]


def close_all(kept: dict[str, Figure]) -> None:
    for figure in kept.values():
        plt.close(figure)


def test_variants_are_separate_groups_labelled_in_table_and_figures(
    tmp_path: Path
) -> None:
    """qsm with alpha=50 and alpha=120, dql with bc_weight=0 and 1 (different configs, same task): four groups of
    3 seeds beside sac, each its own row and line; a variant can be the probability-of-improvement reference."""
    variants = {("qsm", "alpha=50"): {"alpha": 50}, ("qsm", "alpha=120"): {"alpha": 120},
                ("dql", "bc_weight=0"): {"bc_weight": 0.0}, ("dql", "bc_weight=1"): {"bc_weight": 1.0},
                ("sac", ""): {}}
    finals = {}
    for (algo, variant), config in variants.items():
        runs = [write_seed(tmp_path, HOPPER, algo, seed, variant=variant, algo_config=config) for seed in range(3)]
        finals[algo, variant] = np.mean([final(returns) for returns in runs])
    report = plot_results(tmp_path, PlotSettings(reps=50), out_dir=tmp_path / "figures")
    rows = summary(report).fillna({"variant": ""}).query("scope == 'task' and score == 'return'")
    assert sorted(zip(rows.algo, rows.variant)) == sorted(variants) and (rows.seeds == 3).all()
    for (algo, variant), expected in finals.items():
        assert rows[(rows.algo == algo) & (rows.variant == variant)].iloc[0]["mean"] == pytest.approx(expected)
    assert "| Hopper-v4 | qsm[alpha=120] | 3 |" in (report.out_dir / "summary.md").read_text()
    analysis = analysed(tmp_path, reference="qsm[alpha=120]")
    assert list(analysis.aggregates[0].improvement.points) == [
        Method("qsm", "alpha=50"), Method("dql", "bc_weight=0"), Method("dql", "bc_weight=1"), Method("sac")
    ]
    kept = drawn(analysis)
    assert legend_texts(kept["learning_curves"]) == [
        "QSM [alpha=120]", "QSM [alpha=50]", "Diffusion-QL [bc_weight=0]", "Diffusion-QL [bc_weight=1]", "SAC"
    ]
    assert kept["probability_of_improvement"].axes[0].get_xlabel() == "P(QSM [alpha=120] > baseline)"
    close_all(kept)
    style = FigureStyle(labels=parse_labels(["qsm[alpha=120]=QSM, alpha 120", "qsm=QSM (ours)"]))
    check_labels(style, read_results(tmp_path).runs)  # a variant's label names a method that is there
    kept = drawn(analysis, style)
    assert legend_texts(kept["learning_curves"])[:2] == ["QSM, alpha 120", "QSM (ours) [alpha=50]"]
    close_all(kept)
    with pytest.raises(ConfigError, match=r"--label qsm\[alpha=7\]: no algorithm, variant or task"):
        check_labels(FigureStyle(labels=parse_labels(["qsm[alpha=7]=Q"])), read_results(tmp_path).runs)


def test_final_scores_never_count_step_0(tmp_path: Path) -> None:
    """Evaluated at 0, 1000 and 2000 with --last-evals 5: the final score is the mean at 1000 and 2000, with a
    warning; a run evaluated at step 0 only has no final score (and does not shorten the others' budget)."""
    returns = {seed: write_seed(tmp_path, HOPPER, "sac", seed, steps=[0, 1000, 2000]) for seed in range(3)}
    write_seed(tmp_path, HOPPER, "td3", 0, steps=[0], status="running", budget=2000)
    report = plot_results(tmp_path, PlotSettings(reps=50))
    rows = summary(report).query("scope == 'task' and score == 'return'").set_index("algo")
    assert list(rows.index) == ["sac"] and rows.loc["sac", "final_step"] == 2000
    assert rows.loc["sac", "mean"] == pytest.approx(np.mean([np.mean(values[1:]) for values in returns.values()]))
    assert (
        f"{HOPPER} / sac: its final score averages 2 evaluations, fewer than --last-evals 5 (step 0, the untrained "
        "policy, never counts)"
    ) in report.warnings
    assert f"{HOPPER} / td3: no evaluation after step 0, so no final score; shown as a learning curve only" in report.warnings


def test_fewer_than_three_seeds_are_warned_about_and_marked(tmp_path: Path) -> None:
    for algo, seeds in (("sac", 2), ("td3", 3)):
        for seed in range(seeds):
            write_seed(tmp_path, HOPPER, algo, seed)
    report = plot_results(tmp_path, PlotSettings(reps=50))
    assert [w for w in report.warnings if "fewer than 3" in w] == [
        f"{HOPPER} / sac: 2 seeds, fewer than 3: its confidence intervals are not meaningful"
    ]
    markdown = (report.out_dir / "summary.md").read_text()
    assert f"| {HOPPER} | sac | 2 (fewer than 3: CI not meaningful) |" in markdown
    assert f"| {HOPPER} | td3 | 3 |" in markdown
    assert "Fewer than 3 runs per task (sac): their intervals are not meaningful." in markdown
    assert "| sac | 2 | 0 |" in markdown and "| td3 | 3 | 0 |" in markdown  # td3 keeps its 3 seeds


def test_deepmind_control_scores_are_labelled_return_over_1000(tmp_path: Path) -> None:
    for algo in ("qsm", "sac"):
        for seed in range(3):
            write_seed(tmp_path, CHEETAH, algo, seed)
    analysis = analysed(tmp_path)
    assert analysis.scale == "reference"
    kept = drawn(analysis)
    labels = [kept["aggregate_scores"]._supxlabel.get_text(), kept["performance_profile"].axes[0].get_xlabel()]
    assert labels == ["Final normalised score (return / 1000)", "Final normalised score (return / 1000) \u03c4"]
    assert all("expert" not in text for figure in kept.values() for text in texts(figure))
    close_all(kept)
    both = tmp_path / "both"
    for algo in ("qsm", "sac"):
        for task in (CHEETAH, HOPPER):
            write_seed(both, task, algo, 0)
    assert analysed(both).aggregates[0].score_meaning == (
        "Gymnasium: 0 = random, 1 = expert; DeepMind Control: return / 1000"
    )


def texts(figure: Figure) -> list[str]:
    """Every text drawn in a figure: titles, labels, ticks, legends."""
    return [artist.get_text() for artist in figure.findobj(matplotlib.text.Text)]


def test_plain_plot_of_a_task_without_reference_aggregates_its_raw_returns(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """docs/plotting.md's `qsmbench plot results/` on the default task, Pendulum-v1 (no reference score): `auto`
    aggregates its raw returns, so every figure is there, named after the task."""
    for algo in ("qsm", "sac", "td3"):
        for seed in range(3):
            write_seed(tmp_path / "results", NO_REFERENCE, algo, seed)
    result = run_cli(["plot", str(tmp_path / "results"), "--reps", "50"], capfd)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"qsmbench: warning: {NO_REFERENCE} has no reference scores: aggregates are on raw returns, one task at a "
        "time (--normalize auto; --normalize reference leaves such tasks out instead)"
    ]
    out = tmp_path / "results" / FIGURES_DIR
    for name in FIGURES[1:]:
        assert (out / f"{name}_{NO_REFERENCE}.png").stat().st_size > 0, name
    table = pd.read_csv(out / "summary.csv").query("scope == 'aggregate'")
    assert list(table.algo) == ["qsm", "sac", "td3"] and set(table.score) == {"return"} and set(table.task) == {NO_REFERENCE}
    assert "## Aggregate over 1 task: final return" in (out / "summary.md").read_text()


def test_figures_show_display_names_and_take_labels_titles_and_size(
    synthetic: Any, tmp_path: Path
) -> None:
    analysis = analysed(synthetic[0], normalize="reference")
    kept = drawn(analysis)
    curves = kept["learning_curves"]
    assert legend_texts(curves) == ["QSM", "SAC", "TD3"]
    assert [ax.get_title() for ax in curves.axes[:3]] == ["Hopper", "Pendulum", "Cheetah Run"]
    assert curves._suptitle is not None and kept["sample_efficiency"].axes[0].get_title()
    close_all(kept)
    style = FigureStyle(labels={"qsm": "QSM (ours)", CHEETAH: "Cheetah"}, titles=False, figsize=(6.0, 4.0))
    kept = drawn(analysis, style)
    curves = kept["learning_curves"]
    assert legend_texts(curves) == ["QSM (ours)", "SAC", "TD3"] and curves.axes[2].get_title() == "Cheetah"
    assert "QSM (ours)" in [label.get_text() for label in kept["aggregate_scores"].axes[0].get_yticklabels()]
    assert curves._suptitle is None and kept["aggregate_scores"]._suptitle is None
    assert all(not ax.get_title() for name in ("sample_efficiency", "performance_profile", "probability_of_improvement")
               for ax in kept[name].axes)
    assert all(tuple(figure.get_size_inches()) == (6.0, 4.0) for figure in kept.values())
    close_all(kept)


@pytest.mark.parametrize(
    ("task", "title"),
    [("dm_control/cheetah-run-v0", "Cheetah Run"), ("Hopper-v4", "Hopper"), ("HalfCheetah-v4", "HalfCheetah"),
     ("mujoco/hopper/medium-v0", "Mujoco Hopper Medium"), ("dm_control/quadruped-walk-v0", "Quadruped Walk")],
)
def test_task_titles(task: str, title: str) -> None:
    assert task_title(task) == title


def test_figure_options_on_the_command_line(synthetic: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """--label, --no-titles and --figsize are accepted; malformed ones and unknown names are one-line errors."""
    root = str(synthetic[0])
    good = ["--label", 'qsm=QSM (ours)', "--label", f"{CHEETAH}=Cheetah", "--no-titles", "--figsize", "6,4"]
    result = run_cli(["plot", root, "--out", str(tmp_path / "good"), "--reps", "20", "--normalize", "reference", *good], capfd)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "good" / "learning_curves.png").exists()
    for options, message in (
        (["--label", "qsm"], "--label 'qsm': expected NAME=TEXT"),
        (["--label", "sacc=SAC"], "--label sacc: no algorithm, variant or task of that name in the results"),
        (["--label", "qsm=A", "--label", "sac=A"], "--label: qsm and sac would both be shown as 'A'"),
        (["--figsize", "6"], "--figsize '6': expected W,H in inches"),
        (["--figsize", "0,4"], "figsize must be two sizes in (0, 100] inches"),
        (["--normalize", "minmax"], "normalize must be one of auto, reference, none"),
    ):
        result = run_cli(["plot", root, "--out", str(tmp_path / "bad"), *options], capfd)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], (options, result.stderr)
    assert not (tmp_path / "bad").exists()


def test_zero_width_intervals_still_show_in_their_colour(tmp_path: Path) -> None:
    """Every seed of a method scores the same, and qsm always beats sac: each interval (and P = 1) has zero
    width, and each bar gets a diamond in its method's colour, drawn whole even at the axis' end."""
    for algo, level in (("qsm", 2000.0), ("sac", 1000.0)):
        for seed in range(3):
            path = run_path(tmp_path, HOPPER, algo, seed)
            header = RunHeader(algo=algo, task=HOPPER, env_id=HOPPER, run_config={"steps": STEPS[-1]})
            rows = pd.DataFrame({"task": HOPPER, "algo": algo, "seed": seed, "step": STEPS, "eval_return": level})
            write_run(path, rows, RunMetadata(header, seed, "complete"))
    analysis = analysed(tmp_path)
    result = analysis.aggregates[0]
    assert np.ptp(result.metrics.intervals[Method("qsm")], axis=0).max() == 0
    assert result.improvement.points[Method("sac")] == 1.0
    colors = method_colors([Method("qsm"), Method("sac")])
    kept = drawn(analysis)
    for name, shown in (("aggregate_scores", ["sac", "qsm"]), ("probability_of_improvement", ["sac"])):
        ax = kept[name].axes[0]
        marks = [line for line in ax.lines if line.get_marker() == figures.THIN_BAR_MARKER]
        assert [tuple(mark.get_color()) for mark in marks] == [colors[Method(algo)] for algo in shown], name
        assert all(not mark.get_clip_on() for mark in marks)
    close_all(kept)


def test_probability_of_improvement_of_any_reference(
    synthetic: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`reference` picks the method compared with each other one (by default the registry's first); a name
    with no runs is a one-line error; a method present but not in the aggregates gives a note and no figure."""
    runs = read_results(synthetic[0]).runs
    by_default = analyse(runs, PlotSettings(normalize="reference", reps=50), lambda _message: None).aggregates[0]
    of_sac = analyse(runs, PlotSettings(normalize="reference", reps=50, reference="sac"), lambda _message: None)
    assert list(by_default.improvement.points) == [Method("sac"), Method("td3")]
    assert list(of_sac.aggregates[0].improvement.points) == [Method("qsm"), Method("td3")]
    p_sac_qsm, p_qsm_sac = of_sac.aggregates[0].improvement.points[Method("qsm")], by_default.improvement.points[Method("sac")]
    assert p_sac_qsm == pytest.approx(1 - p_qsm_sac) and p_sac_qsm < 0.5  # qsm's curves are the better ones
    figure = drawn(of_sac)["probability_of_improvement"]
    assert figure.axes[0].get_xlabel() == "P(SAC > baseline)" and "of SAC over" in figure.axes[0].get_title()
    plt.close(figure)
    result = run_cli(["plot", str(synthetic[0]), "--out", str(tmp_path / "absent"), "--reference", "abc_new"], capfd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0] == "qsmbench: error: --reference abc_new: no runs of it here; choose from qsm, sac, td3"
    assert not (tmp_path / "absent").exists()
    for algo in ("qsm", "sac"):
        write_seed(tmp_path / "runs", HOPPER, algo, 0)
    write_seed(tmp_path / "runs", NO_REFERENCE, "td3", 0)
    outside = analyse(read_results(tmp_path / "runs").runs, PlotSettings(normalize="reference", reps=20, reference="td3"), print)
    assert "probability of improvement skipped: no td3 runs in the aggregates" in outside.warnings
    kept = drawn(outside)
    assert "probability_of_improvement" not in kept and "performance_profile" in kept
    for made in kept.values():
        plt.close(made)


def test_algorithms_are_ordered_by_the_registry_then_alphabetically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Legends, table rows and colours follow `ALGORITHMS`; algorithms it does not know come after, by name."""
    monkeypatch.setitem(ALGORITHMS, "zz_registered", ALGORITHMS["sac"])  # a new registry entry, last in the registry
    names = ["zzz_new", "td3", "abc_new", "zz_registered", "qsm", "sac", "dql"]
    expected = [*(name for name in ALGORITHMS if name in names), "abc_new", "zzz_new"]
    assert expected[:5] == ["qsm", "dql", "sac", "td3", "zz_registered"]
    assert algo_order(names) == expected
    for algo in names:
        write_seed(tmp_path, HOPPER, algo, 0)
    assert [group.algo for group in build_groups(read_results(tmp_path).runs)[0]] == expected
    colors = method_colors([Method(algo) for algo in expected])
    shown = [Method("abc_new"), Method("td3")]
    assert method_colors(shown) == {method: colors[method] for method in shown}
    assert len(set(colors.values())) == len(expected)


def test_cli_plot_writes_tables_and_reports_where(synthetic, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The command: exit 0, the output directory named on stdout, warnings one per line on stderr."""
    root, _ = synthetic
    out = tmp_path / "figures"
    result = run_cli(["plot", str(root), "--out", str(out), "--reps", "100", "--normalize", "reference"], capfd)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    assert (out / "summary.md").exists() and (out / "learning_curves.png").exists()
    assert "Traceback" not in result.stderr


def test_cli_plot_of_a_missing_directory_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    result = run_cli(["plot", str(tmp_path / "nothing")], capfd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("qsmbench: error:"), result.stderr


def train_td3_seed(results: Path, seed: int, capfd: pytest.CaptureFixture[str], *extra: str) -> None:
    """One small real td3 seed on a task without reference scores, through `qsmbench run`, into `results`."""
    sets = ["warmup_steps=50", "batch_size=16", "hidden_sizes=32,32"]
    result = run_cli([
        "run", "--algo", "td3", "--env", NO_REFERENCE, "--seeds", "1", "--seed-start", str(seed), "--steps", "100",
        "--eval-every", "50", "--eval-episodes", "1", "--device", "cpu", "--quiet", "--out", str(results),
        *(item for override in sets for item in ("--set", override)), *extra,
    ], capfd)
    assert result.returncode == 0, result.stderr


def test_runs_differing_only_in_update_every_are_never_one_group(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Real runs of td3 on Pendulum-v1 in one directory, seed 0 with --update-every 4 and seed 1 with the default:
    plot refuses to pool them in one line naming update_every. A file written before the setting existed (no
    update_every in its run_config) is update_every 1 and pools with seed 1; with --name the K = 4 run is its own group."""
    results = tmp_path / "results"

    def train(seed: int, *extra: str) -> None:
        train_td3_seed(results, seed, capfd, *extra)

    train(0, "--update-every", "4", "--name", "")
    train(1, "--name", "")
    result = run_cli(["plot", str(results), "--out", str(tmp_path / "figures"), "--reps", "50"], capfd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "trained with different settings (update_every 4 vs 1)" in lines[0]

    run_path(results, NO_REFERENCE, "td3", 0).unlink()
    train(2, "--name", "")
    rewrite_metadata(run_path(results, NO_REFERENCE, "td3", 2), lambda document: document["run_config"].pop("update_every"))
    train(0, "--update-every", "4", "--name", "every-4")
    report = plot_results(results, PlotSettings(reps=50), out_dir=tmp_path / "figures")
    rows = summary(report).fillna({"variant": ""}).query("scope == 'task' and score == 'return'")
    assert sorted(zip(rows.algo, rows.variant, rows.seeds)) == [("td3", "", 2), ("td3", "every-4", 1)]


OPTIMISTIC = "best during training (optimistic)"  # typed here independently of qsmbench.analysis.settings
BEST_STEPS = [0, 1000, 2000, 3000, 4000, 5000]  # sac's; td3 stops at 4000, the task's final step
BEST_CURVES = {  # hand-made: (algo, seed) -> evaluation returns at BEST_STEPS (td3: the first five)
    ("sac", 0): [3000.0, 900.0, 100.0, 200.0, 300.0, 2500.0],  # step 0 is the maximum, best at 1000, 5000 past the budget
    ("sac", 1): [-20.0, 100.0, 200.0, 300.0, 400.0, 5000.0],  # best at the final step; 5000 past the budget
    ("sac", 2): [-50.0, 300.0, 700.0, 250.0, 600.0, 100.0],  # best in the middle
    ("td3", 0): [10.0, 50.0, 40.0, 30.0, 20.0],  # best early
    ("td3", 1): [4000.0, -10.0, -20.0, -30.0, -5.0],  # step 0 the maximum again
    ("td3", 2): [0.0, 500.0, 500.0, 800.0, 1200.0],
}


def write_curve(root: Path, algo: str, seed: int, steps: list[int], returns: list[float]) -> None:
    """One complete Hopper run file with exactly these evaluation returns."""
    header = RunHeader(algo=algo, task=HOPPER, env_id=HOPPER, run_config={"steps": steps[-1]})
    rows = pd.DataFrame({"task": HOPPER, "algo": algo, "seed": seed, "step": steps, "eval_return": returns})
    write_run(run_path(root, HOPPER, algo, seed), rows, RunMetadata(header, seed, "complete"))


def test_best_during_training_equals_an_independent_computation(tmp_path: Path) -> None:
    """--score best: each seed's highest evaluation after step 0 and at or before the task's final step (4000, where
    td3 stops), never step 0 nor sac's evaluation at 5000, even where those are the highest; worked out with NumPy."""
    expected: dict[str, np.ndarray] = {}
    for algo in ("sac", "td3"):
        bests = []
        for seed in range(3):
            returns = BEST_CURVES[algo, seed]
            steps = BEST_STEPS[: len(returns)]
            write_curve(tmp_path, algo, seed, steps, returns)
            values, at = np.array(returns), np.array(steps)
            bests.append(values[(at > 0) & (at <= 4000)].max())
        expected[algo] = np.array(bests)
    assert list(expected["sac"]) == [900.0, 400.0, 700.0] and list(expected["td3"]) == [50.0, -5.0, 1200.0]
    report = plot_results(tmp_path, PlotSettings(normalize="reference", reps=50, score="best"), out_dir=tmp_path / "best")
    table = summary(report)
    assert set(table.score_rule) == {"best"} and table.last_evals.isna().all()
    for algo, bests in expected.items():
        rows = table[(table.scope == "task") & (table.algo == algo)].set_index("score")
        assert rows.loc["return", "final_step"] == 4000
        assert rows.loc["return", "mean"] == pytest.approx(bests.mean())
        assert rows.loc["return", "iqm"] == pytest.approx(trim_mean(bests, 0.25))
        normalised = (bests - HOPPER_RANDOM) / (HOPPER_EXPERT - HOPPER_RANDOM)
        assert rows.loc["normalised", "mean"] == pytest.approx(normalised.mean())
        aggregate = table[(table.scope == "aggregate") & (table.algo == algo)].iloc[0]
        assert aggregate["mean"] == pytest.approx(normalised.mean())
        assert aggregate.iqm == pytest.approx(trim_mean(normalised, 0.25))
    assert not [w for w in report.warnings if "last-evals" in w], report.warnings  # 4 evaluations: only final warns
    final = summary(plot_results(tmp_path, PlotSettings(normalize="reference", reps=50, last_evals=2), out_dir=tmp_path / "final"))
    sac = final.query("scope == 'task' and algo == 'sac' and score == 'return'").iloc[0]
    assert (sac.score_rule, sac.last_evals) == ("final", 2)
    assert sac["mean"] == pytest.approx(np.mean([np.mean(BEST_CURVES["sac", seed][3:5]) for seed in range(3)]))


SCORE_FIGURES = ("aggregate_scores", "performance_profile", "probability_of_improvement")


def figure_titles(figure: Figure) -> list[str]:
    """The figure's title and its panels' titles that say what is shown (not the metric panels of aggregate_scores)."""
    shown = [figure._suptitle.get_text()] if figure._suptitle is not None else []
    return shown + [ax.get_title() for ax in figure.axes if "\n" in ax.get_title()]


def test_best_scores_are_labelled_optimistic_in_every_title_and_heading(synthetic: Any, tmp_path: Path) -> None:
    """Under --score best no title, axis label or summary.md heading calls a score final, and every one of them that
    names a score says "best during training (optimistic)"; under the default they say final, as before."""
    root = synthetic[0]
    final_word = re.compile(r"(?<!--score )\bfinal\b(?! step)", re.IGNORECASE)  # not the task's final step
    for rule in ("best", "final"):
        kept = drawn(analysed(root, normalize="reference", score=rule))
        for name in SCORE_FIGURES:
            (title,) = figure_titles(kept[name])
            assert (OPTIMISTIC in title) == (rule == "best") and bool(final_word.search(title)) == (rule == "final"), title
        labels = [kept["aggregate_scores"]._supxlabel.get_text(), kept["performance_profile"].axes[0].get_xlabel()]
        if rule == "best":
            assert all(OPTIMISTIC in label for label in labels), labels
            assert not [text for figure in kept.values() for text in texts(figure) if final_word.search(text)]
        else:
            meaning = "(Gymnasium: 0 = random, 1 = expert; DeepMind Control: return / 1000)"
            assert labels == [f"Final normalised score {meaning}", f"Final normalised score {meaning} \u03c4"]
        close_all(kept)
        report = plot_results(root, PlotSettings(normalize="reference", reps=REPS, score=rule), out_dir=tmp_path / rule)
        markdown = (report.out_dir / "summary.md").read_text()
        headings = [line for line in markdown.splitlines() if line.startswith("## ") and line not in ("## Protocol", "## Notes")]
        (score_line,) = [line for line in markdown.splitlines() if "score of a run" in line.lower()]
        assert len(headings) == 3, headings  # returns per task, normalised scores per task, the aggregate
        if rule == "best":
            assert all(OPTIMISTIC in line for line in [*headings, score_line]), headings
            assert not final_word.search(markdown), [line for line in markdown.splitlines() if final_word.search(line)]
        else:
            assert headings == [
                "## Final evaluation return per task", "## Normalised final score per task",
                f"## Aggregate over 2 tasks: final normalised score {meaning}",
            ]
            assert score_line.startswith("- Final score of a run: the mean of its last 5 evaluations") and "optimistic" not in markdown


def test_the_probability_of_improvement_title_counts_the_runs_per_task(synthetic: Any) -> None:
    """It printed the mapping of methods to run counts ("{Method(algo='qsm', ...): 3, ...} runs per task")."""
    kept = drawn(analysed(synthetic[0], normalize="reference"))
    (title,) = figure_titles(kept["probability_of_improvement"])
    close_all(kept)
    assert re.search(r", \d+(\u2013\d+)? runs per task, ", title) and "{" not in title, title


def test_seeds_written_before_a_hyperparameter_existed_pool_with_seeds_at_its_default(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A file older than QSM's `score_critic` lacks the key and was made with its default, `online`: its seeds pool
    with a new file's that records `online` (plot refused them, "score_critic absent vs 'online'"), and not with
    one that records `target`."""
    results = tmp_path / "results"
    new = dataclasses.asdict(ALGORITHMS["qsm"].config_cls())
    old = {key: value for key, value in new.items() if key != "score_critic"}
    for seed, config in enumerate((old, old, new)):
        write_seed(results, HOPPER, "qsm", seed, algo_config=config)
    result = run_cli(["plot", str(results), "--out", str(tmp_path / "figures"), "--reps", "50"], capfd)
    assert result.returncode == 0, result.stderr
    write_seed(results, HOPPER, "qsm", 3, algo_config={**new, "score_critic": "target"})
    result = run_cli(["plot", str(results), "--out", str(tmp_path / "figures"), "--reps", "50"], capfd)
    assert result.returncode == 2 and "(score_critic 'online' vs 'target')" in result.stderr, result.stderr


def test_runs_differing_only_in_action_repeat_are_never_one_group(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Real runs of td3 on Pendulum-v1 in one directory, seed 0 with --action-repeat 2 and seed 1 with the default:
    plot refuses to pool them in one line naming action_repeat. A file written before the setting existed (no
    action_repeat in its run_config) is action_repeat 1 and pools with seed 1."""
    results = tmp_path / "results"

    def train(seed: int, *extra: str) -> None:
        train_td3_seed(results, seed, capfd, "--name", "", *extra)

    train(0, "--action-repeat", "2")
    train(1)
    result = run_cli(["plot", str(results), "--out", str(tmp_path / "figures"), "--reps", "50"], capfd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "trained with different settings (action_repeat 2 vs 1)" in lines[0]

    run_path(results, NO_REFERENCE, "td3", 0).unlink()
    train(2)
    rewrite_metadata(run_path(results, NO_REFERENCE, "td3", 2), lambda document: document["run_config"].pop("action_repeat"))
    report = plot_results(results, PlotSettings(reps=50), out_dir=tmp_path / "figures")
    rows = summary(report).query("scope == 'task' and score == 'return'")
    assert rows.seeds.tolist() == [2]
