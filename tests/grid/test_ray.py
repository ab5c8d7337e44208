"""`reproduce --ray local`: the grid as Ray tasks on a local Ray instance over this machine's 2 CPUs.

Each test starts its own `qsmbench` driver process, as a user would, and does to it what a cluster does: a
worker killed with SIGKILL mid-job, a Ctrl-C on the driver. The files must end as an uninterrupted grid's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import run_cli, with_default_sigint

from qsmbench.core.messages import format_duration
from qsmbench.grid.files import load_grid
from qsmbench.grid.plan import plan
from qsmbench.grid.ray import Driver
from qsmbench.runs.locking import claim_run_dir, read_claim
from qsmbench.runs.read import read_run

GRID = """\
out = "unused"
algorithms = ["td3", "sac"]
seeds = 2
steps = {steps}
eval_every = 200
eval_episodes = 1

[overrides]
td3 = ["warmup_steps=100", "batch_size=32", "hidden_sizes=32,32"]
sac = ["warmup_steps=100", "batch_size=32", "hidden_sizes=32,32"]

[resources]
cpus = 1

[[tasks]]
env = "Pendulum-v1"
confidence = "smoke"
source = "test"
{more_tasks}
[scales.test]
"""
SECOND_TASK = '\n[[tasks]]\nenv = "InvertedPendulum-v4"\nconfidence = "smoke"\nsource = "test"\n'
CHECKPOINT_EVERY = 200
pytestmark = pytest.mark.xdist_group("ray")  # one local Ray instance at a time: each sizes itself to every core


def start_driver(tmp_path: Path, steps: int, more_tasks: str = "") -> tuple[subprocess.Popen[str], Path]:
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.format(steps=steps, more_tasks=more_tasks))
    out = tmp_path / "results"
    command = [sys.executable, "-c", "from qsmbench.cli import main; main()", "reproduce", str(grid), "--scale", "test",
               "--out", str(out), "--device", "cpu", "--ray", "local", "--checkpoint-every", str(CHECKPOINT_EVERY)]
    # as from a terminal, so that Ctrl-C reaches it also when the suite runs in the background (`make test &`)
    driver = subprocess.Popen(with_default_sigint(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return driver, out


def first_checkpointed_job(out: Path, driver: subprocess.Popen[str], timeout: float = 120) -> Path:
    """The run directory of the first job to write a checkpoint (so it is mid-job, and resumable)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        found = sorted(out.glob("*/*/checkpoint_seeds_*.pt"))
        if found:
            return found[0].parent
        time.sleep(0.01)
    raise AssertionError(f"no job wrote a checkpoint (driver: {driver.poll()}, {driver.communicate()})")


def assert_complete_and_continuous(out: Path, steps: int, jobs: int) -> None:
    """Every seed's curve is complete, on the evaluation grid with no gap and no repeated step."""
    paths = sorted(out.glob("*/*/seed_*.parquet"))
    assert len(paths) == 2 * jobs
    for path in paths:
        run = read_run(path)
        assert run.status == "complete" and list(run.curve["step"]) == list(range(0, steps + 1, 200)), path


def test_a_worker_killed_mid_job_is_retried_and_the_job_resumes(tmp_path: Path) -> None:
    """kill -9 of the worker training a job: Ray retries the task, which resumes from the job's checkpoint, and
    the grid ends complete and plotted, every curve continuous."""
    driver, out = start_driver(tmp_path, steps=800, more_tasks=SECOND_TASK)
    try:
        victim_dir = first_checkpointed_job(out, driver)
        claim = read_claim(victim_dir)
        assert claim is not None and claim.pid != driver.pid and claim.holder.startswith(victim_dir.parent.name)
        os.kill(claim.pid, signal.SIGKILL)
        stdout, stderr = driver.communicate(timeout=600)
    finally:
        driver.kill()
    assert driver.returncode == 0, stderr
    job_id = f"{victim_dir.parent.name}/{victim_dir.name}"
    assert f"{job_id}: its worker (pid {claim.pid}) was lost; Ray retried it as pid" in stdout
    assert_complete_and_continuous(out, 800, jobs=4)
    for path in victim_dir.glob("seed_*.parquet"):
        resumes = read_run(path).metadata.header.provenance["resumes"]
        assert len(resumes) == 1 and resumes[0]["step"] % CHECKPOINT_EVERY == 0 and resumes[0]["step"] > 0
    assert not list(out.glob("*/*/checkpoint_*")), "a complete job keeps no checkpoint"
    assert "complete" in stdout and (out / "_figures" / "summary.md").exists()


def test_ctrl_c_on_the_driver_cancels_the_jobs_and_leaves_them_resumable(tmp_path: Path) -> None:
    """SIGINT to the driver: each running job writes a checkpoint and stops, the driver exits 130, and the same
    command finishes the grid from those checkpoints."""
    driver, out = start_driver(tmp_path, steps=2000)
    try:
        first_checkpointed_job(out, driver)
        driver.send_signal(signal.SIGINT)
        stdout, stderr = driver.communicate(timeout=300)
    finally:
        driver.kill()
    assert driver.returncode == 130, stderr
    assert "cancelling: each running job writes a checkpoint and stops" in stdout
    stopped = {path.parent for path in out.glob("*/*/checkpoint_seeds_*.pt")}
    assert stopped, "the running jobs left checkpoints"
    for run_dir in stopped:
        assert {read_run(path).status for path in run_dir.glob("seed_*.parquet")} == {"interrupted"}
        claim = read_claim(run_dir)
        assert claim is not None and claim.released
    again, out = start_driver(tmp_path, steps=2000)
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr
    assert_complete_and_continuous(out, 2000, jobs=2)
    for run_dir in stopped:
        assert all(len(read_run(path).metadata.header.provenance["resumes"]) == 1 for path in run_dir.glob("seed_*.parquet"))


@pytest.mark.parametrize(
    ("args", "said"),
    [(["--job", "0"], "--ray trains every pending job"), (["--plot-only"], "--plot-only trains nothing")],
)
def test_ray_with_a_part_of_the_grid_is_one_line(
    args: list[str], said: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(["reproduce", "paper", "--out", str(tmp_path), "--ray", "local", *args], capfd)
    assert result.returncode == 2 and said in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_a_job_another_launcher_holds_is_waited_for_not_trained_twice(tmp_path: Path) -> None:
    """While a person's run holds one job, the driver trains the other, waits for the held one and takes it
    once it is free: the grid ends complete, each job trained once."""
    out = tmp_path / "results"
    with claim_run_dir(out / "Pendulum-v1" / "td3", steps=200):
        driver, out = start_driver(tmp_path, steps=200)
        try:
            waiting = next(line for line in driver.stdout if line.startswith("waiting for ") or line.startswith("qsmbench"))
        except BaseException:
            driver.kill()
            raise
    stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr
    assert waiting.startswith("waiting for Pendulum-v1/td3: ") and f"pid {os.getpid()}" in waiting
    assert "complete Pendulum-v1/td3" in stdout
    assert_complete_and_continuous(out, 200, jobs=2)


def test_progress_shows_counts_steps_and_an_eta_from_the_heartbeats(tmp_path: Path) -> None:
    """The driver's periodic line: jobs by state, each running job's step, and the steps left over the running
    jobs' observed speed (no Ray is needed to follow claims)."""
    grid = load_grid("paper", "smoke")
    driver = Driver(None, grid, plan(grid, tmp_path), tmp_path, "paper", "cpu", 100, has_gpus=False)
    assert driver.progress_line() == "jobs: 0 complete, 0 running, 8 pending | ETA not yet known (heartbeats every 30 s)"
    running = driver.tracked["Pendulum-v1/qsm"]
    running.pid, running.first, running.last = 4242, (1000.0, 0), (1010.0, 100)  # 10 steps/s
    left = 8 * 300 - 100
    assert driver.progress_line() == (
        f"jobs: 0 complete, 1 running, 7 pending | Pendulum-v1/qsm 100/300 | ETA {format_duration(left / 10)}"
    )
