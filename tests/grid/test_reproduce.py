"""`qsmbench reproduce` (qsmbench.grid.local): the paper grid, and a real smoke-scale grid that resumes.

One smoke grid, the diffusion grid's (2 tasks x 9 algorithms, 2 seeds, 300 steps), is trained once per module;
the tests that change files work on a copy of it. The paper grid's smoke jobs are among its jobs, settings and all.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest
from support import rewrite_metadata, run_cli

from qsmbench.analysis.report import PlotReport
from qsmbench.core.errors import ConfigError
from qsmbench.core.messages import format_duration
from qsmbench.grid.files import Grid, load_grid
from qsmbench.grid.local import run_grid, train_jobs
from qsmbench.grid.plan import format_plan, plan, select
from qsmbench.runs.format import RunHeader, RunMetadata
from qsmbench.runs.layout import run_path
from qsmbench.runs.locking import claim_run_dir, holder_label
from qsmbench.runs.read import read_run
from qsmbench.runs.spec import RunSpec
from qsmbench.runs.write import write_run

# The smoke grid is trained once per worker that runs a test of this module: on one worker, once (it was trained
# twice under `make test`'s two workers, 65 s each).
pytestmark = pytest.mark.xdist_group("smoke-grid")

ALGOS = {"qsm", "sac", "td3", "dql"}  # the paper grid's
SMOKE_ALGOS = ("qsm", "dipo", "qvpo", "dacer", "sdac", "dpmd", "dql", "sac", "td3")  # the diffusion grid's, in its order
GYM_TASKS = {"Hopper-v4", "Walker2d-v4", "HalfCheetah-v4", "Ant-v4", "Humanoid-v4"}
CONFIRMED_DMC = {"dm_control/cheetah-run-v0", "dm_control/walker-run-v0", "dm_control/hopper-hop-v0"}
SMOKE_TASKS = ("Pendulum-v1", "dm_control/cartpole-balance-v0")
SMOKE_JOBS = len(SMOKE_TASKS) * len(SMOKE_ALGOS)
SMOKE_STEPS = [0, 100, 200, 300]
FIGURES = ("learning_curves", "aggregate_scores", "sample_efficiency", "performance_profile")

# A small valid grid file; the bad-grid cases below each break one thing in it.
VALID_GRID = """\
out = "unused"
algorithms = ["td3"]
seeds = 2
steps = 300
eval_every = 100
eval_episodes = 1

[overrides]
td3 = ["warmup_steps=100", "batch_size=32", "hidden_sizes=32,32"]

[[tasks]]
env = "Pendulum-v1"
confidence = "smoke"
source = "test"

[scales.test]
"""


TWO_ALGORITHM_GRID = VALID_GRID.replace('algorithms = ["td3"]', 'algorithms = ["td3", "sac"]').replace(
    'td3 = ["warmup_steps=100"', 'sac = ["warmup_steps=100", "batch_size=32", "hidden_sizes=32,32"]\ntd3 = ["warmup_steps=100"'
)


class Smoke(NamedTuple):
    grid: Grid
    out: Path
    report: PlotReport


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    grid = load_grid("diffusion", "smoke")
    out = tmp_path_factory.mktemp("grid") / "results"
    return Smoke(grid, out, run_grid(grid, out, device="cpu", quiet=True))


def copy_of(smoke: Smoke, tmp_path: Path) -> Path:
    out = tmp_path / "results"
    shutil.copytree(smoke.out, out)
    return out


def run_files(out: Path) -> dict[Path, tuple[int, bytes]]:
    """Every run file under `out` with its modification time and bytes."""
    return {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in sorted(out.glob("*/*/seed_*.parquet"))}


def write_grid(tmp_path: Path, text: str) -> str:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return str(path)


def test_paper_grid_expands_to_every_task_algorithm_pair(tmp_path: Path) -> None:
    grid = load_grid("paper")
    jobs = plan(grid, tmp_path)
    tasks = {task.env for task in grid.tasks}
    dmc = {env for env in tasks if env.startswith("dm_control/")}
    assert tasks == GYM_TASKS | dmc and dmc >= CONFIRMED_DMC and len(dmc) <= 6
    assert {task.env for task in grid.tasks if task.confidence == "confirmed"} == CONFIRMED_DMC
    assert {task.env for task in grid.tasks if task.confidence == "extension"} == GYM_TASKS
    assert all(task.source for task in grid.tasks)
    assert sorted((job.task, job.algo) for job in jobs) == sorted((task, algo) for task in tasks for algo in ALGOS)
    for job in jobs:
        run = job.spec.protocol
        assert (run.seed_start, run.seeds, run.steps, run.eval_every, run.eval_episodes) == (0, 10, 1_000_000, 10_000, 10)
        assert job.spec.config == job.spec.algorithm.config_cls() and job.status == "to run"  # official defaults
    assert grid.out == Path("results/paper")
    text = format_plan(grid, jobs, tmp_path)
    assert f"to run: {len(jobs)} of {len(jobs)} jobs, {len(jobs) * 10 * 1_000_000:,} env steps" in text
    assert "estimate: no measurement yet" in text


def test_the_diffusion_grid_is_the_paper_grid_with_every_diffusion_policy(tmp_path: Path) -> None:
    paper, diffusion = load_grid("paper"), load_grid("diffusion")
    assert [task.env for task in diffusion.tasks] == [task.env for task in paper.tasks]
    jobs = plan(diffusion, tmp_path)
    assert [(job.task, job.algo) for job in jobs] == [(task.env, algo) for task in paper.tasks for algo in SMOKE_ALGOS]
    for job in jobs:
        run = job.spec.protocol
        assert (run.seeds, run.steps, run.eval_every, run.eval_episodes) == (10, 1_000_000, 10_000, 10)
        assert job.spec.config == job.spec.algorithm.config_cls()  # official defaults
    assert diffusion.out == Path("results/diffusion") and diffusion.plot == paper.plot


def test_the_paper_smoke_jobs_are_among_the_trained_smoke_jobs() -> None:
    """So training the diffusion grid's smoke scale proves the paper grid's end to end too."""
    def settings(grid: Grid) -> dict[tuple[str, str], tuple[object, ...]]:
        return {(spec.protocol.task, spec.algo): (spec.config, spec.protocol.seed_values, spec.protocol.steps,
                                                  spec.protocol.eval_every, spec.protocol.eval_episodes)
                for spec in grid.specs}

    paper, diffusion = settings(load_grid("paper", "smoke")), settings(load_grid("diffusion", "smoke"))
    assert paper.items() <= diffusion.items() and len(diffusion) == SMOKE_JOBS
    assert load_grid("paper", "smoke").plot == load_grid("diffusion", "smoke").plot


def test_a_grid_expands_into_run_specs() -> None:
    """Each (task, algorithm) pair is a RunSpec: the registry entry, its config with the grid's overrides, the protocol."""
    grid = load_grid("diffusion", "smoke")
    assert all(isinstance(spec, RunSpec) for spec in grid.specs)
    assert [(spec.protocol.task, spec.algo) for spec in grid.specs] == [
        (task, algo) for task in SMOKE_TASKS for algo in SMOKE_ALGOS
    ]
    for spec in grid.specs:
        assert type(spec.config) is spec.algorithm.config_cls
        assert (spec.config.warmup_steps, spec.config.hidden_sizes) == (100, (32, 32))
        assert (spec.protocol.seeds, spec.protocol.steps, spec.protocol.eval_every) == (2, 300, 100)
        assert spec.execution.out == "results/diffusion-smoke"
    assert grid.plot.reps == 100 and grid.plot.last_evals == 2


def test_smoke_grid_trains_every_job_and_plots(smoke: Smoke) -> None:
    for task in SMOKE_TASKS:
        for algo in SMOKE_ALGOS:
            for seed in (0, 1):
                path = run_path(smoke.out, task, algo, seed)
                run = read_run(path)
                assert run.status == "complete"
                assert list(run.curve["step"]) == SMOKE_STEPS
                assert run.metadata.header.algo_config["warmup_steps"] == 100
                assert run.metadata.header.algo_config["hidden_sizes"] == [32, 32]
    assert len(run_files(smoke.out)) == SMOKE_JOBS * 2
    figures = smoke.out / "_figures"
    assert smoke.report.out_dir == figures
    summary = (figures / "summary.md").read_text()
    assert all(task in summary for task in SMOKE_TASKS) and all(algo in summary for algo in SMOKE_ALGOS)
    for name in FIGURES:
        assert (figures / f"{name}.png").stat().st_size > 0


def test_a_second_run_trains_nothing_and_plots_again(
    smoke: Smoke, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = copy_of(smoke, tmp_path)
    shutil.rmtree(out / "_figures")
    before = run_files(out)
    run_grid(smoke.grid, out, device="cpu", quiet=True)
    assert run_files(out) == before
    assert f"to run: 0 of {SMOKE_JOBS} jobs, 0 env steps" in capsys.readouterr().out
    assert (out / "_figures" / "summary.md").is_file() and (out / "_figures" / "learning_curves.png").is_file()


def test_an_interrupted_seed_is_retrained_alone(smoke: Smoke, tmp_path: Path) -> None:
    out = copy_of(smoke, tmp_path)
    victim = run_path(out, "Pendulum-v1", "td3", 1)
    run = read_run(victim)
    write_run(victim, run.curve.iloc[:2], dataclasses.replace(run.metadata, status="interrupted"))
    statuses = {(job.task, job.algo): job.status for job in plan(smoke.grid, out)}
    assert statuses.pop(("Pendulum-v1", "td3")) == "partial" and set(statuses.values()) == {"complete"}
    before = run_files(out)
    run_grid(smoke.grid, out, device="cpu", quiet=True)
    after = run_files(out)
    assert [path for path in after if after[path] != before[path]] == [victim]
    run = read_run(victim)
    assert run.status == "complete" and list(run.curve["step"]) == SMOKE_STEPS
    assert run.metadata.header.run_config["seed_start"] == 1 and run.metadata.header.run_config["seeds"] == 1


def seconds_per_step(path: Path) -> float:
    curve = read_run(path).curve
    return float(curve["wall_time_s"].iloc[-1] / curve["step"].iloc[-1])


def test_dry_run_plan_shows_statuses_and_a_measured_estimate(smoke: Smoke, tmp_path: Path) -> None:
    out = copy_of(smoke, tmp_path)
    run_path(out, "Pendulum-v1", "qsm", 0).unlink()  # partial: timed on its own remaining seed
    for seed in (0, 1):
        run_path(out, "Pendulum-v1", "sac", seed).unlink()  # to run: timed on SAC's cartpole runs
    measured = 300 * (
        seconds_per_step(run_path(out, "Pendulum-v1", "qsm", 1))
        + seconds_per_step(run_path(out, "dm_control/cartpole-balance-v0", "sac", 0))
    )
    with claim_run_dir(out / "Pendulum-v1" / "sac", steps=300):  # a launcher is training it
        lines = format_plan(smoke.grid, plan(smoke.grid, out), out).splitlines()
    job_lines = {tuple(line.split()[:2]): line for line in lines if line.startswith(SMOKE_TASKS)}
    assert len(job_lines) == SMOKE_JOBS
    assert job_lines.pop(("Pendulum-v1", "qsm")).endswith("partial (1 of 2 seeds complete; to run: 0)")
    assert job_lines.pop(("Pendulum-v1", "sac")).endswith(f"to run; claimed by {holder_label()} on host {socket.gethostname()}, "
                                                          f"pid {os.getpid()}, step 0 of 300, heartbeat 0 s ago")
    assert all(line.endswith("complete") for line in job_lines.values())
    assert f"to run: 2 of {SMOKE_JOBS} jobs, 900 env steps ({SMOKE_JOBS - 2} jobs complete)" in lines
    estimate = next(line for line in lines if line.startswith("estimate:"))
    assert estimate.startswith(f"estimate: {format_duration(measured)} ")
    assert "the same task, algorithm and settings for 1 job;" in estimate
    assert estimate.endswith("the same algorithm and settings on other tasks for 1 job")
    on_two = next(line for line in format_plan(smoke.grid, plan(smoke.grid, out), out, 2).splitlines() if "estimate" in line)
    longest = 300 * max(seconds_per_step(run_path(out, "Pendulum-v1", "qsm", 1)),
                        seconds_per_step(run_path(out, "dm_control/cartpole-balance-v0", "sac", 0)))
    assert on_two.endswith(f"; on 2 such machines at once, longest runs first: {format_duration(longest)}")

    paper = load_grid("paper")  # other settings: smoke runs must not time the paper's
    assert "estimate: no measurement yet" in format_plan(paper, plan(paper, out), out)
    empty = tmp_path / "empty"
    assert "estimate: no measurement yet" in format_plan(smoke.grid, plan(smoke.grid, empty), empty)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("steps = 300", "steps = 400"), "steps=300 (the grid asks for 400)"),
        (("32,32", "64,64"), "hidden_sizes=[32, 32] (the grid asks for [64, 64])"),
        (("steps = 300", "steps = 300\nupdate_every = 5"), "update_every=1 (the grid asks for 5)"),
    ],
    ids=["steps", "hyperparameters", "update-every"],
)
def test_complete_runs_made_with_other_settings_block_the_grid(
    smoke: Smoke, tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    out = copy_of(smoke, tmp_path)
    grid = load_grid(write_grid(tmp_path, VALID_GRID.replace(*change)), "test")
    (job,) = plan(grid, out)
    assert job.status == "conflict" and expected in job.conflicts[0]
    before = run_files(out)
    with pytest.raises(ConfigError, match="files in the way") as error:
        run_grid(grid, out, device="cpu", quiet=True)
    assert "\n" not in str(error.value) and expected in str(error.value)
    assert run_files(out) == before


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("[\"td3\"]", "[\"td3\", \"ppo\"]"), ["unknown algorithm 'ppo'", "choose from"]),
        (("steps = 300\n", ""), ["missing key 'steps'"]),
        (("steps = 300", "step = 300"), ["unknown key 'step'", "did you mean 'steps'"]),
        (("seeds = 2", "seeds = \"two\""), ["seeds must be an integer"]),
        (("seeds = 2", "seeds = 0"), ["seeds must be at least 1"]),
        (("hidden_sizes=32,32", "hidden_size=32"), ["overrides.td3", "unknown key 'hidden_size'"]),
        (("Pendulum-v1", "Pendulum-v9"), ["task 1", "unknown environment 'Pendulum-v9'"]),
        (("\"smoke\"", "\"sure\""), ["confidence must be one of"]),
        (("[scales.test]", "[scales.test]\nstesp = 3"), ["[scales.test]", "unknown key 'stesp'"]),
        (("out = \"unused\"", "out = "), ["not valid TOML"]),
        (("[scales.test]", "[plot]\nreps = \"many\"\n[scales.test]"), ["plot", "reps must be an integer"]),
        (("[scales.test]", "[plot]\nnormalise = \"none\"\n[scales.test]"), ["unknown key 'normalise'"]),
        (("[scales.test]", "[plot]\ndiverged = \"drop\"\n[scales.test]"), ["plot", "diverged must be one of untrained, last, exclude"]),
        (("eval_every = 100", "eval_every = 1.5"), ["eval_every must be an integer"]),
        (("out = \"unused\"", "out = \"\""), ["out must name a results directory"]),
        (("out = \"unused\"", "out = \"a\\u0000b\""), ["out contains a NUL character"]),
        (("[scales.test]", "[resources]\ngpus = 1.5\n[scales.test]"), ["resources", "gpus must be a fraction in (0, 1]"]),
        (("[scales.test]", "[resources]\ncpu = 2\n[scales.test]"), ["resources", "unknown key 'cpu'", "did you mean 'cpus'"]),
        (("source = \"test\"", "source = \"test\"\nresources = { cpus = 0 }"), ["task 1", "cpus must be at least 1"]),
        (("source = \"test\"", "source = \"test\"\neval_every = 0"), ["task 1", "--eval-every must be at least 1"]),
        (("warmup_steps=100", "warmup_steps=300"), ["--steps 300 is not above td3's warmup_steps 300"]),
        (("steps = 300", "steps = 300\nupdate_every = 0"), ["--update-every must be at least 1"]),
        (("steps = 300", "steps = 300\nupdate_every = 2.5"), ["update_every must be an integer"]),
    ],
    ids=[
        "algo", "missing", "unknown-key", "type", "value", "override", "env", "confidence", "scale-key", "toml",
        "plot-type", "plot-key", "plot-diverged", "float", "out-empty", "out-nul", "gpu-fraction", "resource-key", "task-cpus",
        "task-eval-every", "steps-at-warmup", "update-every-0", "update-every-float",
    ],
)
def test_bad_grid_files_are_one_line_errors(tmp_path: Path, change: tuple[str, str], expected: list[str]) -> None:
    path = write_grid(tmp_path, VALID_GRID.replace(*change))
    assert VALID_GRID.replace(*change) != VALID_GRID
    with pytest.raises(ConfigError) as error:
        load_grid(path, "test")
    message = str(error.value)
    assert "\n" not in message and message.startswith(path)
    for fragment in expected:
        assert fragment in message


def test_a_binary_grid_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="not a text file"):
        load_grid(str(path), "test")


def test_the_plan_of_ten_million_seeds_takes_no_time(tmp_path: Path) -> None:
    """`--dry-run` with seeds = 10**7 hung listing every seed file; the plan reads only the files that exist."""
    grid = load_grid(write_grid(tmp_path, VALID_GRID.replace("seeds = 2", "seeds = 10_000_000")), "test")
    out = tmp_path / "results"
    spec = grid.specs[0].with_settings(out=str(out), seed_start=5, seeds=1)
    header = RunHeader("td3", "Pendulum-v1", "Pendulum-v1", run_config=spec.run_settings(),
                       algo_config=dataclasses.asdict(spec.config))
    write_run(run_path(out, "Pendulum-v1", "td3", 5), pd.DataFrame(), RunMetadata(header, 5, "complete"))
    (job,) = plan(grid, out)
    assert job.done == (5,) and job.blocks() == [(0, 5), (6, 9_999_994)]
    assert "partial (1 of 10000000 seeds complete; to run: 0-4,6-9999999)" in format_plan(grid, [job], out)


def test_unknown_grid_names_and_scales_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown grid 'papr' \(did you mean 'paper'\?\)"):
        load_grid("papr")
    with pytest.raises(ConfigError, match="no scale 'huge'; scales: paper, smoke"):
        load_grid("paper", "huge")
    load_grid(write_grid(tmp_path, VALID_GRID), "test")  # the base of every bad case above is valid


def test_cli_dry_run_prints_the_paper_plan_and_trains_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli(["reproduce", "paper", "--dry-run", "--out", str(tmp_path / "paper")], capfd)
    assert result.returncode == 0, result.stderr
    assert "40 of 40 jobs" in result.stdout and "400,000,000 env steps" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_plan_of_one_counts_in_the_singular(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """One task, one algorithm, one seed: "1 job", not "1 jobs" (qsmbench.core.messages.plural, in every message)."""
    grid = write_grid(tmp_path, VALID_GRID.replace("seeds = 2", "seeds = 1"))
    result = run_cli(["reproduce", grid, "--scale", "test", "--dry-run", "--out", str(tmp_path / "results")], capfd)
    assert result.returncode == 0, result.stderr
    assert "scale test: 1 task x 1 algorithm = 1 job, 1 seed x 300 steps each;" in result.stdout
    assert "to run: 1 of 1 job, 300 env steps (0 jobs complete)" in result.stdout


@pytest.mark.parametrize("args", [["nosuchgrid"], ["paper", "--scale", "huge"]], ids=["grid", "scale"])
def test_cli_unknown_grid_or_scale_is_one_line(args: list[str], capfd: pytest.CaptureFixture[str]) -> None:
    result = run_cli(["reproduce", *args, "--dry-run"], capfd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("qsmbench: error:"), result.stderr


# ------------------------------------------------------------------------------------------------ parts of a grid


@pytest.mark.parametrize("count", [1, 2, 3, 8, 40, 41])
def test_the_shards_of_a_grid_split_it_exactly(count: int, tmp_path: Path) -> None:
    """Every job in exactly one of the N shards, shard sizes within one of each other, and (N = 8, as on a
    node of 8 GPUs) each shard holding more than one algorithm."""
    jobs = plan(load_grid("paper", "paper"), tmp_path)
    shards = [select(jobs, shard=f"{index}/{count}") for index in range(count)]
    assert sorted(job.id for shard in shards for job in shard) == sorted(job.id for job in jobs)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    if count == 8:
        assert all(len({job.algo for job in shard}) > 1 for shard in shards)


def test_list_jobs_names_each_job_by_index_and_id(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    listed = run_cli(["reproduce", "paper", "--out", str(tmp_path), "--list-jobs"], capfd)
    lines = listed.stdout.splitlines()
    assert listed.returncode == 0 and len(lines) == 40
    index, job_id, status = lines[5].split(maxsplit=2)
    assert index == "5" and status == "to run"
    for chosen in (index, job_id):
        one = run_cli(["reproduce", "paper", "--out", str(tmp_path), "--list-jobs", "--job", chosen], capfd)
        assert one.stdout.splitlines() == [lines[5]]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--job", "40"], "no job '40' in this grid"),
        (["--job", "Hopper-v4/qsn"], "did you mean 'Hopper-v4/qsm'"),
        (["--shard", "2/2"], "--shard takes I/N"),
        (["--shard", "1"], "--shard takes I/N"),
        (["--job", "1", "--shard", "0/2"], "--job or --shard, not both"),
        (["--plot-only", "--job", "1"], "--plot-only trains nothing"),
    ],
)
def test_a_bad_part_of_a_grid_is_one_line(
    args: list[str], said: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(["reproduce", "paper", "--out", str(tmp_path), *args], capfd)
    assert result.returncode == 2 and said in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_a_bad_seed_file_blocks_its_own_job_only_and_is_named(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A complete seed file without `algo` once made --dry-run, --list-jobs and every --job of a Slurm array exit 1
    naming no file. Now its job is a conflict naming the file, and the other jobs plan and train as before."""
    grid = write_grid(tmp_path, TWO_ALGORITHM_GRID)
    out = tmp_path / "results"
    bad = run_path(out, "Pendulum-v1", "td3", 0)
    header = RunHeader(algo="td3", task="Pendulum-v1", env_id="Pendulum-v1", run_config={"steps": 300})
    write_run(bad, pd.DataFrame({"task": ["Pendulum-v1"], "algo": ["td3"], "seed": [0], "step": [0], "eval_return": [-1.0]}),
              RunMetadata(header, 0, "complete"))
    rewrite_metadata(bad, lambda document: document.pop("algo"))
    common = ["reproduce", grid, "--scale", "test", "--out", str(out), "--device", "cpu", "--quiet"]
    planned = run_cli([*common, "--dry-run"], capfd)
    assert planned.returncode == 0 and f"{bad}: not a readable qsmbench run file (its qsmbench metadata lacks algo)" in planned.stdout
    listed = run_cli([*common, "--list-jobs"], capfd)
    assert listed.returncode == 0 and [line.split()[1:] for line in listed.stdout.splitlines()] == [
        ["Pendulum-v1/td3", "conflict"], ["Pendulum-v1/sac", "to", "run"]
    ]
    refused = run_cli([*common, "--job", "Pendulum-v1/td3"], capfd)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1 and str(bad) in refused.stderr, refused.stderr
    trained = run_cli([*common, "--job", "Pendulum-v1/sac"], capfd)
    assert trained.returncode == 0, trained.stderr
    assert [read_run(run_path(out, "Pendulum-v1", "sac", seed)).status for seed in (0, 1)] == ["complete", "complete"]


def test_jobs_trained_apart_are_plotted_once_all_are_complete(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """As array tasks would: `--job 1`, then the plot is refused while job 0 is missing; job 0 is skipped
    while another launcher holds it, then trained by `--job <id>`; then `--plot-only` makes the figures."""
    grid = write_grid(tmp_path, TWO_ALGORITHM_GRID)
    out = tmp_path / "results"
    common = ["reproduce", grid, "--scale", "test", "--out", str(out), "--device", "cpu", "--quiet"]
    first = run_cli([*common, "--job", "1"], capfd)
    assert first.returncode == 0 and "done: 1 of 2 jobs" in first.stdout and "--plot-only" in first.stdout
    assert sorted(path.name for path in (out / "Pendulum-v1").iterdir()) == ["sac"]
    refused = run_cli([*common, "--plot-only"], capfd)
    assert refused.returncode == 2 and "not complete: 1 of the grid's 2 jobs (e.g. Pendulum-v1/td3" in refused.stderr
    assert not (out / "_figures").exists()
    with claim_run_dir(out / "Pendulum-v1" / "td3"):  # another launcher is training that job
        taken = run_cli([*common, "--job", "Pendulum-v1/td3"], capfd)
    assert taken.returncode == 0 and "skipped: " in taken.stdout and "being written by a qsmbench run of" in taken.stdout
    assert not list((out / "Pendulum-v1" / "td3").glob("seed_*")), "a job another launcher holds is not trained twice"
    assert run_cli([*common, "--job", "Pendulum-v1/td3"], capfd).returncode == 0
    plotted = run_cli([*common, "--plot-only"], capfd)
    assert plotted.returncode == 0 and (out / "_figures" / "summary.md").exists()


def test_a_task_overrides_an_algorithm_on_that_task_only(tmp_path: Path) -> None:
    """QSM's authors suggest M_q = 120 on harder tasks: a task's own overrides apply after the grid's, on it alone."""
    text = VALID_GRID.replace('algorithms = ["td3"]', 'algorithms = ["td3", "qsm"]').replace(
        'td3 = ["warmup_steps=100"', 'qsm = ["warmup_steps=100"]\ntd3 = ["warmup_steps=100"'
    ).replace(
        'source = "test"\n',
        'source = "test"\noverrides = { qsm = ["alpha=120"], td3 = ["batch_size=64"] }\n\n'
        '[[tasks]]\nenv = "Hopper-v4"\nconfidence = "smoke"\nsource = "test"\n',
        1,
    )
    grid = load_grid(write_grid(tmp_path, text), "test")
    configs = {(spec.protocol.task, spec.algo): spec.config for spec in grid.specs}
    assert configs["Pendulum-v1", "qsm"].alpha == 120 and configs["Hopper-v4", "qsm"].alpha == 50
    assert configs["Pendulum-v1", "td3"].batch_size == 64 and configs["Hopper-v4", "td3"].batch_size == 32
    assert configs["Pendulum-v1", "td3"].hidden_sizes == (32, 32), "the grid's overrides still apply"
    assert all(spec.config.alpha == 50 for spec in load_grid("paper").specs if spec.algo == "qsm"), "see paper.toml"


@pytest.mark.parametrize(
    ("overrides", "said"),
    [('{ qsn = ["alpha=1"] }', "unknown algorithm 'qsn'"), ('{ qsm = ["alpah=1"] }', "alpah"), ('"alpha=1"', "must be a table")],
)
def test_a_bad_task_override_is_one_line_naming_the_task(overrides: str, said: str, tmp_path: Path) -> None:
    text = VALID_GRID.replace('source = "test"\n', f'source = "test"\noverrides = {overrides}\n', 1)
    with pytest.raises(ConfigError, match="task 1") as refused:
        load_grid(write_grid(tmp_path, text), "test")
    assert said in str(refused.value) and "\n" not in str(refused.value)


TWO_TASK_GRID = TWO_ALGORITHM_GRID.replace(
    "[scales.test]", '[[tasks]]\nenv = "InvertedPendulum-v4"\nconfidence = "smoke"\nsource = "test"\n\n[scales.test]'
)


def trained_runs(stdout: str) -> set[str]:
    """The runs a launcher trained: its '[i/n] algo task seeds ...' titles not followed by 'skipped:'."""
    lines = stdout.splitlines()
    return {
        " ".join(line.split()[1:3])
        for line, after in zip(lines, [*lines[1:], ""])
        if re.match(r"\[\d+/\d+\] ", line) and not after.startswith("skipped: ")
    }


def test_two_launchers_on_one_results_directory_never_train_a_job_twice(tmp_path: Path) -> None:
    """Two `reproduce` processes started at once on the same grid and --out share the jobs between them: every
    job is trained by exactly one, once (no resume, no retraining), and the grid ends complete and plotted."""
    grid, out = write_grid(tmp_path, TWO_TASK_GRID), tmp_path / "results"
    command = [sys.executable, "-c", "from qsmbench.cli import main; main()", "reproduce", grid, "--scale", "test",
               "--out", str(out), "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launchers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [launcher.communicate(timeout=600) for launcher in launchers]
    assert [launcher.returncode for launcher in launchers] == [0, 0], outputs
    first, second = (trained_runs(stdout) for stdout, _ in outputs)
    assert not first & second, f"trained twice: {first & second}"
    assert first | second == {f"{algo} {task}" for algo in ("td3", "sac") for task in ("Pendulum-v1", "InvertedPendulum-v4")}
    for path in out.glob("*/*/seed_*.parquet"):
        run = read_run(path)
        assert run.status == "complete" and list(run.curve["step"]) == SMOKE_STEPS
        assert "resumes" not in run.metadata.header.provenance
    assert len(list(out.glob("*/*/seed_*.parquet"))) == 8
    assert any("table: " in stdout for stdout, _ in outputs) and (out / "_figures" / "summary.md").exists()


def test_a_grid_sets_update_every_for_every_job(tmp_path: Path) -> None:
    """`update_every` is a grid-wide protocol key like `steps`: every job gets it; a grid without it has 1."""
    grid = load_grid(write_grid(tmp_path, TWO_ALGORITHM_GRID.replace("steps = 300", "steps = 300\nupdate_every = 5")), "test")
    assert [spec.protocol.update_every for spec in grid.specs] == [5, 5]
    assert {spec.protocol.update_every for spec in load_grid(write_grid(tmp_path, VALID_GRID), "test").specs} == {1}


def test_a_task_sets_its_own_evaluation_and_resources(tmp_path: Path) -> None:
    """A slow task may evaluate less often and ask for more of the cluster; the other tasks keep the grid's."""
    text = TWO_TASK_GRID.replace(
        'source = "test"\n', 'source = "test"\neval_every = 150\neval_episodes = 3\nresources = { cpus = 2, gpus = 0.5 }\n', 1
    ).replace("[scales.test]", "[resources]\ngpus = 0.125\n\n[scales.test]")
    grid = load_grid(write_grid(tmp_path, text), "test")
    runs = {spec.protocol.task: spec.protocol for spec in grid.specs}
    assert (runs["Pendulum-v1"].eval_every, runs["Pendulum-v1"].eval_episodes) == (150, 3)
    assert (runs["InvertedPendulum-v4"].eval_every, runs["InvertedPendulum-v4"].eval_episodes) == (100, 1)
    resources = {spec.protocol.task: grid.resources_of(spec) for spec in grid.specs}
    assert (resources["Pendulum-v1"].cpus, resources["Pendulum-v1"].gpus) == (2, 0.5)
    assert (resources["InvertedPendulum-v4"].cpus, resources["InvertedPendulum-v4"].gpus) == (1, 0.125)


def test_a_job_finished_by_another_launcher_after_the_plan_is_skipped(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A launcher's plan says `to run`; another launcher then completes the job before this one prepares it: the
    job is skipped with a line saying so, not an error, and its files are left as the other launcher wrote them."""
    grid, out = load_grid(write_grid(tmp_path, VALID_GRID), "test"), tmp_path / "results"
    stale_plan = plan(grid, out)
    assert [job.status for job in stale_plan] == ["to run"]
    other = run_cli(["reproduce", str(tmp_path / "grid.toml"), "--scale", "test", "--out", str(out), "--device", "cpu",
                     "--quiet", "--job", "0"], capfd)
    assert other.returncode == 0, other.stderr
    files = {path: path.read_bytes() for path in out.glob("*/*/seed_*.parquet")}
    skipped = train_jobs(stale_plan, "cpu", True, 100_000)
    assert len(skipped) == 1 and "holds a finished run" in skipped[0]
    assert {path: path.read_bytes() for path in out.glob("*/*/seed_*.parquet")} == files
