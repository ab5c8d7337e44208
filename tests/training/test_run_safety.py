"""What keeps results safe while they are written: one writer per run directory, divergence per seed,
stale temporaries, and output directories that cannot hold a run."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from support import keeping_first_checkpoint, run_cli

from qsmbench.core.errors import CompleteRunError, ConfigError, RunLocked
from qsmbench.grid.plan import on_disk
from qsmbench.runs.layout import CLAIM_NAME, LOCK_NAME, claim_path, policy_path
from qsmbench.runs.locking import CLAIM_TIMEOUT_S, ClaimRecord, claim_run_dir, read_claim, write_record
from qsmbench.runs.read import read_run
from qsmbench.runs.spec import RunSpec, make_spec
from qsmbench.training.loop import Trainer, start
from qsmbench.training.prepare import prepare
from qsmbench.training.progress import PlainReporter

SMALL = ["warmup_steps=50", "batch_size=16", "hidden_sizes=32,32"]
FAULTY_SEED, FAULT_EVERY = 1, 50


class NaNRewardPendulum(PendulumEnv):
    """Pendulum whose reward is NaN every 50th step, in the training env of run seed 1 only (`faulty`),
    or never (`faulty=False`): the same task with and without a fault that hits one seed."""

    def __init__(self, faulty: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.faulty, self.broken, self.steps = faulty, False, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        if seed is not None:  # the trainer seeds training envs with the run seed, evaluation envs otherwise
            self.broken = self.faulty and seed == FAULTY_SEED
        return super().reset(seed=seed, options=options)

    def step(self, action: np.ndarray) -> Any:
        obs, reward, terminated, truncated, info = super().step(action)
        self.steps += 1
        if self.broken and self.steps % FAULT_EVERY == 0:
            reward = float("nan")
        return obs, reward, terminated, truncated, info


for name, faulty in (("NaNRewardPendulum-v0", True), ("CleanPendulum-v0", False)):
    gym.register(f"qsmbench-test/{name}", entry_point=NaNRewardPendulum, max_episode_steps=200, kwargs={"faulty": faulty})


def spec(
    out: Path, env: str = "Pendulum-v1", algo: str = "sac", steps: int = 200, seeds: int = 2, checkpoint_every: int = 50_000,
    **sets: Any,
) -> RunSpec:
    return make_spec(
        algo, SMALL + [f"{key}={value}" for key, value in sets.items()], env=env, seeds=seeds, steps=steps, eval_every=100,
        eval_episodes=1, device="cpu", out=str(out), checkpoint_every=checkpoint_every,
    )


def trainer(run_spec: RunSpec, overwrite: bool = False) -> Trainer:
    return start(prepare(run_spec, overwrite), PlainReporter("test", run_spec.protocol.seed_values, run_spec.protocol.steps))


# ------------------------------------------------------------------------------------------------ one writer


def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """While a run holds its directory, another run of it fails with one line naming host and pid, and
    touches nothing; once the first has finished, the second is refused as a finished run."""
    first = trainer(spec(tmp_path, steps=60))
    second = prepare(spec(tmp_path, steps=60))  # validated while the first had not written a file yet
    with pytest.raises(RunLocked, match=r"being written by a qsmbench run of .+ on host .+, pid \d+, step 0 of 60, heartbeat"):
        trainer(spec(tmp_path, steps=60))
    first.train()
    files = {path: path.read_bytes() for path in first.recorder.files.paths}
    with pytest.raises(CompleteRunError, match="holds a finished run"):
        start(second, PlainReporter("test", [0, 1], 60))
    assert {path: path.read_bytes() for path in first.recorder.files.paths} == files
    assert all(read_run(path).status == "complete" for path in files)


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    """The kernel drops a dead holder's lock: after kill -9, the next run takes the directory."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from qsmbench.runs.locking import claim_run_dir; "
         "claim = claim_run_dir(Path(sys.argv[1])); print('held', flush=True); time.sleep(120)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"pid {holder.pid}, heartbeat"):
            claim_run_dir(tmp_path)
        record = read_claim(tmp_path)
        assert record is not None and record.pid == holder.pid and "claimed by" in record.state(time.time())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert "left by a dead process" in record.state(time.time())
    with claim_run_dir(tmp_path, steps=500) as claim:
        assert claim.descriptor >= 0 and read_claim(tmp_path) == claim.record and claim.record.steps == 500
    released = read_claim(tmp_path)
    assert released is not None and released.released and released.state(time.time()) == "released"


def other_host_claim(run_dir: Path, heartbeat_age_s: float) -> None:
    """The record a launcher on another host leaves, whose flock this filesystem does not share with us."""
    run_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    write_record(run_dir, ClaimRecord("slurm job 7_3", "node-elsewhere", 4242, now - 3600, now - heartbeat_age_s, 70, 500))
    os.utime(claim_path(run_dir), (now - heartbeat_age_s, now - heartbeat_age_s))  # its age, by the file server's clock


def test_a_live_claim_of_another_host_holds_even_where_flock_is_per_host(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Lustre with localflock grants each host its own flock: the heartbeat of the other host's record still holds
    the directory, so the second launcher is refused with one line naming the holder, and nothing is written."""
    other_host_claim(tmp_path / "Pendulum-v1" / "sac", heartbeat_age_s=10)
    result = run_cli(["run", "--algo", "sac", "--env", "Pendulum-v1", "--seeds", "1", "--steps", "100", "--eval-every", "50",
                      "--eval-episodes", "1", "--set", "warmup_steps=50", "--name", "", "--out", str(tmp_path)], capfd)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert re.search(r"claimed by slurm job 7_3 on host node-elsewhere, pid 4242, step 70 of 500, heartbeat 1\d s ago", result.stderr)
    assert sorted(path.name for path in (tmp_path / "Pendulum-v1" / "sac").iterdir()) == [CLAIM_NAME, LOCK_NAME]


def test_a_claim_whose_holder_died_is_taken_over_after_the_timeout(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The other host's holder stopped beating (its node died): past CLAIM_TIMEOUT_S the next run takes the claim,
    says whose it took, and trains."""
    run_dir = tmp_path / "Pendulum-v1" / "sac"
    other_host_claim(run_dir, heartbeat_age_s=CLAIM_TIMEOUT_S + 5)
    stale = read_claim(run_dir)
    assert stale is not None and "taken over by the next launcher" in stale.state(time.time())
    result = run_cli(["run", "--algo", "sac", "--env", "Pendulum-v1", "--seeds", "1", "--steps", "100", "--eval-every", "50",
                      "--eval-episodes", "1", "--set", "warmup_steps=50", "--name", "", "--out", str(tmp_path), "--quiet"], capfd)
    assert result.returncode == 0, result.stderr
    assert f"took over {run_dir} from slurm job 7_3 on host node-elsewhere, pid 4242, step 70 of 500" in result.stderr
    assert read_run(run_dir / "seed_0.parquet").status == "complete"
    record = read_claim(run_dir)
    assert record is not None and record.host != "node-elsewhere" and record.released


def test_stale_temporaries_are_cleared_when_the_directory_is_taken(tmp_path: Path) -> None:
    """A kill during a Parquet write leaves `.seed_k.parquet.<pid>.tmp`; the next run of the directory removes it."""
    run_spec = spec(tmp_path)
    run_dir = tmp_path / "Pendulum-v1" / "sac"
    run_dir.mkdir(parents=True)
    stale = run_dir / ".seed_0.parquet.4242.tmp"
    stale.write_bytes(b"half a parquet file")
    other = run_dir / "notes.txt"
    other.write_text("mine")
    with prepare(run_spec).claim():
        assert not stale.exists() and other.read_text() == "mine"


# ------------------------------------------------------------------------------------------------ divergence


def test_a_diverged_seed_is_recorded_and_the_others_finish_as_without_the_fault(tmp_path: Path) -> None:
    """A NaN reward in seed 1's env at step 50: seed 1 stops there and says so; seeds 0 and 2 write exactly the
    rows (timing aside) of the same run on the same task without the fault."""
    faulty_spec = spec(tmp_path / "faulty", env="qsmbench-test/NaNRewardPendulum-v0", steps=300, seeds=3, checkpoint_every=100)
    faulty = trainer(faulty_spec)
    with keeping_first_checkpoint(faulty.prepared.checkpoint, tmp_path / "kept.pt"):
        faulty.train()
    clean = trainer(spec(tmp_path / "clean", env="qsmbench-test/CleanPendulum-v0", steps=300, seeds=3))
    clean.train()
    runs = [read_run(path) for path in faulty.recorder.files.paths]
    assert [run.status for run in runs] == ["complete", "diverged", "complete"]
    assert [policy_path(path).exists() for path in faulty.recorder.files.paths] == [True, False, True]  # no policy of a NaN seed
    diverged = runs[FAULTY_SEED].metadata
    assert diverged.divergence is not None and (diverged.divergence.step, diverged.divergence.quantity) == (50, "reward")
    assert runs[FAULTY_SEED].curve["step"].tolist() == [0]
    timing = ["task", "wall_time_s", "sps"]
    for seed in (0, 2):
        with_fault, without = runs[seed].curve.drop(columns=timing), read_run(clean.recorder.files.paths[seed]).curve.drop(columns=timing)
        assert with_fault["step"].tolist() == [0, 100, 200, 300]
        pd.testing.assert_frame_equal(with_fault, without)
        assert np.isfinite(with_fault.iloc[1:].select_dtypes("number").drop(columns="train_return")).all().all()
    assert_a_diverged_seed_does_not_block_resuming(faulty, tmp_path / "kept.pt", tmp_path / "resumed")


def assert_a_diverged_seed_does_not_block_resuming(finished: Trainer, checkpoint: Path, out: Path) -> None:
    """The run interrupted after its checkpoint at step 100 left seed 1's file diverged (a finished result):
    the grid keeps the seeds as one block to resume, and resuming gives the same rows and statuses."""
    resumed_spec = finished.spec.with_settings(out=str(out))
    prepared = prepare(resumed_spec)
    prepared.run_dir.mkdir(parents=True)
    shutil.copyfile(checkpoint, prepared.checkpoint)
    shutil.copyfile(finished.recorder.files.paths[FAULTY_SEED], prepared.run_dir / finished.recorder.files.paths[FAULTY_SEED].name)
    assert on_disk(resumed_spec)["resumable"] == ((0, 3, 100),) and on_disk(resumed_spec)["done"] == ()
    resuming = trainer(resumed_spec)
    assert resuming.resumed_from == 100
    resuming.train()
    for path, reference in zip(resuming.recorder.files.paths, finished.recorder.files.paths):
        got, want = read_run(path), read_run(reference)
        assert got.status == want.status
        timing = ["wall_time_s", "sps"]
        pd.testing.assert_frame_equal(got.curve.drop(columns=timing), want.curve.drop(columns=timing), check_exact=True)


def test_every_seed_non_finite_ends_the_run_early_as_diverged(tmp_path: Path) -> None:
    """A learning rate of 1e30 blows every seed up: each file says diverged and where, none says complete.
    On DeepMind Control, whose physics raises on a NaN action, no such action ever reaches the simulator."""
    blown_up = spec(tmp_path, env="dm_control/cheetah-run-v0", algo="td3", steps=3000, critic_lr=1e30, actor_lr=1e30)
    run = trainer(blown_up)
    run.train()
    assert on_disk(blown_up) == {"done": (0, 1), "conflicts": (), "resumable": ()}, "a grid must count diverged seeds as done"
    for path in run.recorder.files.paths:
        stored = read_run(path)
        assert stored.status == "diverged" and stored.metadata.divergence is not None
        assert stored.metadata.divergence.step <= 1000
        assert np.isfinite(stored.curve.iloc[1:].select_dtypes("number").drop(columns="train_return")).all().all()
    assert run.recorder.last_eval_step <= 1000, "a run whose seeds are all dead must stop"


# ------------------------------------------------------------------------------------------------ output directory


def refused_untouched(run_spec: RunSpec, root: Path, message: str) -> str:
    before = sorted(root.rglob("*"))
    with pytest.raises(ConfigError, match=message) as refused:
        prepare(run_spec)
    assert sorted(root.rglob("*")) == before
    text = str(refused.value)
    assert "\n" not in text and len(text) < 300
    return text


def test_an_unwritable_out_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """/sys refuses new files even to root: the run is refused with one line, not after its first evaluation."""
    refused_untouched(spec(Path("/sys/qsmbench-results")), tmp_path, "cannot write results under /sys")


def test_a_path_component_too_long_is_refused_without_a_directory_left(tmp_path: Path) -> None:
    text = refused_untouched(spec(tmp_path / ("x" * 5000) / "r"), tmp_path, "5000 bytes long, over this filesystem's 255")
    assert "x" * 100 not in text


def test_a_full_disk_is_refused_up_front(tmp_path: Path) -> None:
    """A filesystem with no room left (a 64 KB tmpfs, filled) is refused before training starts."""
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root in a container that allows it)")
    try:
        with open(mount / "filler", "wb") as filler, pytest.raises(OSError):
            filler.write(bytes(128 * 1024))
            filler.flush()
        refused_untouched(spec(mount / "results"), mount, "No space left on device|free")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_disk_too_small_for_the_checkpoints_is_refused_up_front(tmp_path: Path) -> None:
    """An 8 MB tmpfs holds the run files of 100,000 Hopper steps (4.4 MB) but not two checkpoints of their
    replay (24 MB)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root in a container that allows it)")
    try:
        long_run = spec(mount / "results", env="Hopper-v4", steps=100_000)
        text = refused_untouched(long_run, mount, "this run's checkpoints need about")
        assert "free" in text and "replay_capacity" in text
        prepare(spec(mount / "results", env="Hopper-v4", steps=1000))  # a short run's checkpoints fit
    finally:
        subprocess.run(["umount", str(mount)], check=True)

