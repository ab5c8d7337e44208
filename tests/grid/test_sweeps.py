"""Sweeps in grid files (qsmbench.grid.sweeps): variants as jobs, labelled as `run --set` labels them, one-line
errors, the shipped qsm-sensitivity grid, and a swept job that resumes from a checkpoint like any job."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from support import keeping_first_checkpoint, run_cli

from qsmbench.core.config import variant_label
from qsmbench.core.errors import ConfigError
from qsmbench.grid.files import load_grid
from qsmbench.grid.plan import plan
from qsmbench.runs.layout import run_dir
from qsmbench.runs.read import read_run

BASE = """\
out = "unused"
algorithms = ["qsm", "td3"]
seeds = 2
steps = 300
eval_every = 100
eval_episodes = 1

[overrides]
qsm = ["warmup_steps=100", "batch_size=32", "hidden_sizes=32,32", "actor_hidden_sizes=32,32"]
td3 = ["warmup_steps=100", "batch_size=32", "hidden_sizes=32,32"]

{sweeps}

[[tasks]]
env = "Pendulum-v1"
confidence = "smoke"
source = "test"
{task}
[scales.test]
"""


def grid_text(sweeps: str, task: str = "") -> str:
    return BASE.format(sweeps=sweeps, task=task)


def load(tmp_path: Path, sweeps: str, task: str = "", scale: str = "test"):
    path = tmp_path / "grid.toml"
    path.write_text(grid_text(sweeps, task))
    return load_grid(str(path), scale)


def jobs_of(grid) -> list[tuple[str, str, str]]:
    return [(spec.protocol.env, spec.algo, spec.execution.variant) for spec in grid.specs]


def test_a_sweep_is_the_product_of_its_lists_each_variant_a_job(tmp_path: Path) -> None:
    grid = load(tmp_path, "[sweeps.qsm]\nalpha = [25, 50]\ndiffusion_steps = [2, 5]")
    labels = [variant for _, algo, variant in jobs_of(grid) if algo == "qsm"]
    assert labels == ["alpha=25 diffusion_steps=2", "alpha=25", "diffusion_steps=2", ""], "defaults (50, 5) leave no label"
    configs = {spec.execution.variant: spec.config for spec in grid.specs if spec.algo == "qsm"}
    assert (configs["alpha=25 diffusion_steps=2"].alpha, configs["alpha=25 diffusion_steps=2"].diffusion_steps) == (25, 2)
    assert all(config.hidden_sizes == (32, 32) for config in configs.values()), "the grid's overrides apply to every variant"
    assert [variant for _, algo, variant in jobs_of(grid) if algo == "td3"] == [""]
    assert grid.variant_counts == {"qsm": 4}


def test_a_label_is_the_one_run_set_makes_for_the_same_change(tmp_path: Path) -> None:
    """`run --set diffusion_steps=2 --set alpha=25` (any order) files its run where the sweep's variant goes."""
    grid = load(tmp_path, "[sweeps.qsm]\nalpha = [25]\ndiffusion_steps = [2]")
    spec = next(spec for spec in grid.specs if spec.algo == "qsm")
    defaults = type(spec.config)()
    assert spec.execution.variant == variant_label(["diffusion_steps=2", "alpha=25"], spec.config, defaults)
    assert spec.execution.variant == "alpha=25 diffusion_steps=2" and spec.method == "qsm[alpha=25 diffusion_steps=2]"


def test_zip_pairs_the_lists_and_tables_unite_without_repeating_a_variant(tmp_path: Path) -> None:
    zipped = load(tmp_path, "[sweeps.qsm]\nzip = true\nalpha = [25, 120]\ndiffusion_steps = [2, 10]")
    assert [v for _, a, v in jobs_of(zipped) if a == "qsm"] == ["alpha=25 diffusion_steps=2", "alpha=120 diffusion_steps=10"]
    united = load(tmp_path, "[[sweeps.qsm]]\nalpha = [25, 50]\n[[sweeps.qsm]]\nexploration_noise = [0, 0.1, 0.2]")
    assert [v for _, a, v in jobs_of(united) if a == "qsm"] == ["alpha=25", "", "exploration_noise=0", "exploration_noise=0.2"]


def test_a_task_replaces_the_grids_sweep_of_an_algorithm(tmp_path: Path) -> None:
    task = '\n[[tasks]]\nenv = "InvertedPendulum-v4"\nconfidence = "smoke"\nsource = "test"\nsweeps = { qsm = { alpha = [120] } }\n'
    task += '\n[[tasks]]\nenv = "MountainCarContinuous-v0"\nconfidence = "smoke"\nsource = "test"\nsweeps = { qsm = {} }\n'
    grid = load(tmp_path, "[sweeps.qsm]\nalpha = [25, 50]", task)
    assert [(env, v) for env, a, v in jobs_of(grid) if a == "qsm"] == [
        ("Pendulum-v1", "alpha=25"), ("Pendulum-v1", ""), ("InvertedPendulum-v4", "alpha=120"), ("MountainCarContinuous-v0", ""),
    ]


@pytest.mark.parametrize(
    ("sweeps", "said"),
    [
        ("[sweeps.qsm]\nalpah = [1, 2]", "unknown key 'alpah'"),
        ("[sweeps.qsm]\nalpha = [\"high\"]", "bad value for alpha: 'high'"),
        ("[sweeps.qsm]\ndiffusion_steps = [0]", "diffusion_steps must lie in"),
        ("[sweeps.qsm]\nalpha = []", "sweeps.qsm.alpha must list at least one value"),
        ("[sweeps.qsm]\nalpha = 25", "sweeps.qsm.alpha must list at least one value"),
        ("[sweeps.qsm]\nzip = true\nalpha = [1, 2]\ndiffusion_steps = [2]", "must be as long as each other"),
        ("[sweeps.qsm]\nzip = \"yes\"\nalpha = [1]", "zip must be"),
        ("[sweeps.sac]\nbatch_size = [64]", "sac is not in the grid's algorithms"),
        ("[sweeps.qsn]\nalpha = [1]", "unknown algorithm 'qsn'"),
        ("[sweeps]\nqsm = 3", "sweeps.qsm must be a table of key = [values]"),
        ("[sweeps.qsm]\nalpha = " + str(list(range(101))) + "\nactor_lr = " + str([0.001] * 100), "jobs, over 10,000"),
    ],
    ids=["key", "value", "checked", "empty", "not-a-list", "zip-lengths", "zip-type", "unlisted", "algo", "table", "too-many"],
)
def test_a_bad_sweep_is_one_line_at_load_time(tmp_path: Path, sweeps: str, said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, sweeps)
    assert said in str(refused.value) and "\n" not in str(refused.value)


def test_two_variants_with_one_label_but_other_settings_are_refused(tmp_path: Path) -> None:
    """With the grid's T at 2, `alpha = 25` alone keeps T 2 but `alpha = 25, diffusion_steps = 5` sets the default 5:
    both are labelled alpha=25 and would share a directory."""
    sweeps = "[[sweeps.qsm]]\nalpha = [25]\n[[sweeps.qsm]]\nalpha = [25]\ndiffusion_steps = [5]"
    with pytest.raises(ConfigError, match="both labelled 'alpha=25'"):
        load(tmp_path, sweeps, 'overrides = { qsm = ["diffusion_steps=2"] }\n')
    assert len(load(tmp_path, sweeps).specs) == 2, "without the override they are one variant (and td3)"


@pytest.mark.parametrize(
    ("sweeps", "said"),
    [("{ qsm = { alpah = [1] } }", r"task 1: sweeps.qsm: unknown key 'alpah'"), ("3", "task 1: sweeps must be a table")],
)
def test_a_bad_task_sweep_names_the_task(tmp_path: Path, sweeps: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        load(tmp_path, "", f"sweeps = {sweeps}\n")


def test_the_shipped_sensitivity_grid_sweeps_mq_t_and_noise_on_five_tasks() -> None:
    grid = load_grid("qsm-sensitivity")
    assert grid.protocol.seeds == 10 and len(grid.tasks) == 5 and grid.algorithms == ("qsm", "sac", "td3")
    assert sum(task.env.startswith("dm_control/") for task in grid.tasks) == 3
    qsm = [spec.config for spec in grid.specs if spec.algo == "qsm" and spec.protocol.env == grid.tasks[0].env]
    assert {(c.alpha, c.diffusion_steps) for c in qsm if c.exploration_noise == 0.1} == {
        (alpha, steps) for alpha in (10, 25, 50, 120, 250) for steps in (5, 10, 20)
    }
    assert {c.exploration_noise for c in qsm if (c.alpha, c.diffusion_steps) == (50, 5)} == {0, 0.1, 0.2}
    assert len(qsm) == 17 and len(grid.specs) == 5 * 19


def test_dry_run_counts_a_sweeps_jobs_and_estimates_a_new_variant_from_measured_ones(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The plan names each variant's job and counts the sweep's; a variant nothing measured yet is estimated from
    its algorithm's measured variants on the task, named as the rough guide it is."""
    out = tmp_path / "results"
    path = tmp_path / "grid.toml"
    path.write_text(grid_text("[sweeps.td3]\nexploration_noise = [0.2]").replace('"qsm", ', ""))
    trained = run_cli(["reproduce", str(path), "--scale", "test", "--out", str(out), "--device", "cpu", "--quiet"], capfd)
    assert trained.returncode == 0, trained.stderr
    assert "1 task x 1 algorithm, td3 in 1 variant = 1 job" in trained.stdout
    path.write_text(grid_text("[sweeps.td3]\nexploration_noise = [0.2, 0.3, 0.4]").replace('"qsm", ', ""))
    dry = run_cli(["reproduce", str(path), "--scale", "test", "--out", str(out), "--dry-run"], capfd)
    assert "td3 in 3 variants = 3 jobs" in dry.stdout
    lines = {line.split()[1]: line for line in dry.stdout.splitlines() if line.startswith("Pendulum-v1")}
    assert lines["td3[exploration_noise=0.2]"].endswith("complete") and lines["td3[exploration_noise=0.3]"].endswith("to run")
    assert "other hyperparameters of the same algorithm and task (a rough guide" in dry.stdout
    assert "for 2 jobs" in dry.stdout and "not counted" not in dry.stdout


def test_the_smoke_sweep_trains_every_variant_and_plots_its_sensitivity(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    args = ["reproduce", "qsm-sensitivity", "--scale", "smoke", "--out", str(out)]
    result = run_cli([*args, "--device", "cpu", "--quiet"], capfd)
    assert result.returncode == 0, result.stderr
    grid = load_grid("qsm-sensitivity", "smoke")
    jobs = plan(grid, out)
    assert len(jobs) == 6 and {job.status for job in jobs} == {"complete"}
    for job in jobs:
        run = read_run(job.run_dir(out) / "seed_0.parquet")
        assert run.metadata.header.variant == job.spec.execution.variant
        assert run.metadata.header.algo_config["alpha" if job.algo == "qsm" else "batch_size"] == getattr(
            job.spec.config, "alpha" if job.algo == "qsm" else "batch_size"
        )
    listed = run_cli([*args, "--list-jobs"], capfd).stdout.splitlines()
    assert len({line.split()[1] for line in listed}) == 6
    figures = out / "_figures"
    for name in ("sensitivity_qsm_alpha", "sensitivity_qsm_diffusion_steps", "sensitivity_qsm_exploration_noise",
                 "sensitivity_qsm_alpha_diffusion_steps"):
        assert (figures / f"{name}.png").stat().st_size > 0 and (figures / f"{name}.pdf").exists()
    summary = (figures / "summary.md").read_text()
    assert "## Sensitivity" in summary
    again = run_cli([*args, "--device", "cpu", "--quiet"], capfd)
    assert again.returncode == 0 and "[1/" not in again.stdout, "a complete sweep trains nothing"


SWEPT_TD3 = grid_text("[sweeps.td3]\nexploration_noise = [0.2]").replace('"qsm", ', "")


def test_a_swept_job_killed_after_a_checkpoint_resumes_to_the_same_rows(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A sweep's variant is an ordinary job: a launcher killed after its checkpoint leaves a run that the next
    `reproduce` resumes, in the variant's directory, to the rows of an uninterrupted run."""
    path = tmp_path / "grid.toml"
    path.write_text(SWEPT_TD3)
    reference, resumed, kept = tmp_path / "reference", tmp_path / "resumed", tmp_path / "first.pt"
    variant_dir = run_dir(reference, "Pendulum-v1", "td3", "exploration_noise=0.2")
    common = ["reproduce", str(path), "--scale", "test", "--device", "cpu", "--quiet", "--checkpoint-every", "100"]
    variant_dir.mkdir(parents=True)
    with keeping_first_checkpoint(variant_dir / "checkpoint_seeds_0-1.pt", kept):
        assert run_cli([*common, "--out", str(reference)], capfd).returncode == 0
    killed_dir = run_dir(resumed, "Pendulum-v1", "td3", "exploration_noise=0.2")
    killed_dir.mkdir(parents=True)
    shutil.copyfile(kept, killed_dir / "checkpoint_seeds_0-1.pt")
    dry = run_cli(["reproduce", str(path), "--scale", "test", "--out", str(resumed), "--dry-run"], capfd)
    assert "resume at step 100" in dry.stdout
    result = run_cli([*common, "--out", str(resumed)], capfd)
    assert result.returncode == 0 and "resuming from the checkpoint at step 100" in result.stdout
    for seed in (0, 1):
        want, got = (read_run(d / f"seed_{seed}.parquet").curve.drop(columns=["wall_time_s", "sps"]) for d in (variant_dir, killed_dir))
        pd.testing.assert_frame_equal(got, want)
