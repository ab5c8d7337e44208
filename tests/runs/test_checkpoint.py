"""Checkpoints and exact resume (qsmbench.runs.checkpoint, the trainer's checkpoint_state/restore, qsmbench.training.stopping).

The central check: a run resumed from its checkpoint writes the same rows as the same run left alone, bit for
bit (every column but the wall-clock ones), for every algorithm on Pendulum-v1, Hopper-v4 and a DeepMind Control
task. Each reference run keeps its first checkpoint (hard-linked as it appears); each resume starts from a
directory holding nothing but that file, as a run killed right after it leaves, in a fresh trainer. One run is
also killed for real, with SIGKILL, as its own process, and three are stopped by signals.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from support import keeping_first_checkpoint, quick_overrides, run_cli, small_overrides

from qsmbench.algorithms import ALGORITHMS
from qsmbench.core.errors import CheckpointError, EnvStateError
from qsmbench.envs.environments import EnvBatch
from qsmbench.grid.plan import Job, split_at_checkpoints
from qsmbench.runs.checkpoint import check_belongs, read_checkpoint, resume_settings, write_checkpoint
from qsmbench.runs.format import LEGACY_RUN_SETTINGS
from qsmbench.runs.layout import CLAIM_NAME, LOCK_NAME, path_safe
from qsmbench.runs.read import read_run, read_status
from qsmbench.runs.spec import make_spec
from qsmbench.training import loop
from qsmbench.training.prepare import prepare
from qsmbench.training.progress import PlainReporter

ALGOS = tuple(ALGORITHMS)
ENVS = ("Pendulum-v1", "Hopper-v4", "dm_control/cartpole-swingup-v0")
CHECKPOINT_EVERY = 70
TIMING_COLUMNS = ["wall_time_s", "sps"]  # the only columns a resumed run may not reproduce


def run_args(algo: str, env: str, out: Path, *extra: str) -> list[str]:
    """Two seeds, 200 steps, small networks: checkpoints at 70 and 140; evaluations at 0, 100 and 200 (0 and
    200 on DeepMind Control, whose 1000-step episodes make evaluation the larger cost)."""
    sets = [*quick_overrides(algo), "warmup_steps=60", "batch_size=32"]
    eval_every = "200" if env.startswith("dm_control/") else "100"
    return [
        "run", "--algo", algo, "--env", env, "--seeds", "2", "--steps", "200", "--eval-every", eval_every,
        "--eval-episodes", "1", "--device", "cpu", "--quiet", "--checkpoint-every", str(CHECKPOINT_EVERY),
        "--out", str(out), "--name", "", *(item for override in sets for item in ("--set", override)), *extra,
    ]


def run_dir(out: Path, algo: str, env: str) -> Path:
    return out / path_safe(env) / algo


def checkpoint_of(out: Path, algo: str, env: str) -> Path:
    return run_dir(out, algo, env) / "checkpoint_seeds_0-1.pt"


def start(args: Sequence[str]) -> subprocess.Popen[bytes]:
    """`qsmbench ARGS` as its own process, with this process's torch thread count (results depend on it)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    command = [sys.executable, "-c", "from qsmbench.cli import main; main()", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def curves(out: Path, algo: str, env: str) -> list[pd.DataFrame]:
    return [read_run(run_dir(out, algo, env) / f"seed_{seed}.parquet").curve.drop(columns=TIMING_COLUMNS) for seed in (0, 1)]


class References:
    """Each (algorithm, env) run once, uninterrupted, in this process, keeping its first checkpoint."""

    def __init__(self, root: Path):
        self.root = root

    def run(self, algo: str, env: str, capfd: pytest.CaptureFixture[str]) -> tuple[list[pd.DataFrame], Path]:
        """The reference rows of both seeds, and its first checkpoint."""
        kept = self.root / f"{algo}-{path_safe(env)}.pt"
        if not kept.exists():
            shutil.rmtree(run_dir(self.root, algo, env), ignore_errors=True)
            checkpoint_of(self.root, algo, env).parent.mkdir(parents=True)
            with keeping_first_checkpoint(checkpoint_of(self.root, algo, env), kept):
                result = run_cli(run_args(algo, env, self.root), capfd)
            assert result.returncode == 0, result.stderr
            assert kept.exists(), "the reference run wrote no checkpoint"
        return curves(self.root, algo, env), kept


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> References:
    return References(tmp_path_factory.mktemp("reference"))


def interrupted_run(references: References, algo: str, env: str, out: Path, capfd: pytest.CaptureFixture[str]) -> Path:
    """A results directory holding nothing but the reference run's first checkpoint, as a killed run leaves it."""
    _, kept = references.run(algo, env, capfd)
    checkpoint_of(out, algo, env).parent.mkdir(parents=True)
    shutil.copyfile(kept, checkpoint_of(out, algo, env))
    return out


def assert_same_rows(resumed: list[pd.DataFrame], uninterrupted: list[pd.DataFrame]) -> None:
    for seed, (got, want) in enumerate(zip(resumed, uninterrupted)):
        assert list(got["step"]) in ([0, 100, 200], [0, 200]), f"seed {seed}: a gap or a repeated step"
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=f"seed {seed}'s rows")


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("algo", ALGOS)
def test_a_run_resumed_from_its_checkpoint_gives_the_same_rows(
    algo: str, env: str, references: References, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Resumed from nothing but its first checkpoint, in a fresh trainer, a run writes the rows of the run
    left alone: every evaluation and training return and every diagnostic."""
    want, _ = references.run(algo, env, capfd)
    out = interrupted_run(references, algo, env, tmp_path / "results", capfd)
    result = run_cli(run_args(algo, env, out), capfd)
    assert result.returncode == 0, result.stderr
    assert f"resuming from the checkpoint at step {CHECKPOINT_EVERY} of 200" in result.stdout
    assert_same_rows(curves(out, algo, env), want)
    metadata = read_run(run_dir(out, algo, env) / "seed_0.parquet").metadata
    assert metadata.status == "complete"
    assert [resume["step"] for resume in metadata.header.provenance["resumes"]] == [CHECKPOINT_EVERY]
    assert not checkpoint_of(out, algo, env).exists(), "a complete run keeps no checkpoint"




def test_a_run_resumed_with_env_workers_gives_the_same_rows(
    references: References, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A run may resume with other worker counts: the training envs, rebuilt in two workers by replaying
    their episodes, and the evaluation envs, in three, give exactly the rows of the run left alone."""
    want, _ = references.run("sac", "Hopper-v4", capfd)
    out = interrupted_run(references, "sac", "Hopper-v4", tmp_path / "results", capfd)
    result = run_cli(run_args("sac", "Hopper-v4", out, "--env-workers", "2", "--eval-workers", "3"), capfd)
    assert result.returncode == 0, result.stderr
    assert_same_rows(curves(out, "sac", "Hopper-v4"), want)


def test_a_run_killed_with_sigkill_resumes_exactly(
    references: References, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A real process, killed with SIGKILL wherever it is in its step loop just after its first checkpoint (frozen
    with SIGSTOP the moment the checkpoint is seen: a sleep first let a fast machine finish the run), then run
    again. Kills during file writes are tested by `test_a_kill_during_a_checkpoint_write_keeps_the_previous_one`."""
    algo, env = "td3", "Hopper-v4"
    want, _ = references.run(algo, env, capfd)
    out = tmp_path / "results"
    process = start(run_args(algo, env, out))
    while not checkpoint_of(out, algo, env).exists():
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        time.sleep(0.001)
    process.send_signal(signal.SIGSTOP)
    process.kill()
    process.wait()
    assert read_status(run_dir(out, algo, env) / "seed_0.parquet") != "complete", "killed too late to test anything"
    result = run_cli(run_args(algo, env, out), capfd)
    assert result.returncode == 0 and "resuming from the checkpoint" in result.stdout, result.stderr
    assert_same_rows(curves(out, algo, env), want)


def test_sigusr1_writes_a_checkpoint_and_the_run_resumes_exactly(
    tmp_path: Path, references: References, capfd: pytest.CaptureFixture[str]
) -> None:
    """SIGUSR1 (Slurm's warning before a time limit): a checkpoint at the end of the step, files `interrupted`,
    exit 75; run again, it resumes from that step, off the checkpoint grid, to the uninterrupted rows.
    (SIGINT and SIGTERM: test_cli.test_ctrl_c_or_sigterm_exits_and_keeps_every_evaluation.)"""
    algo, env = "sac", "Pendulum-v1"
    out = tmp_path / "results"
    process = start(run_args(algo, env, out, "--checkpoint-every", "1000"))
    while not (run_dir(out, algo, env) / "seed_1.parquet").exists():
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        time.sleep(0.005)
    process.send_signal(signal.SIGUSR1)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 75, err.decode()[-1500:]
    assert "stopped by SIGUSR1 at step " in err.decode() and "run the same command again to resume" in err.decode()
    step = read_checkpoint(checkpoint_of(out, algo, env), header_only=True)["header"]["step"]
    assert 0 < step < 200
    assert read_status(run_dir(out, algo, env) / "seed_0.parquet") == "interrupted"
    result = run_cli(run_args(algo, env, out), capfd)
    assert result.returncode == 0 and f"resuming from the checkpoint at step {step} of 200" in result.stdout
    assert_same_rows(curves(out, algo, env), references.run(algo, env, capfd)[0])


def test_overwrite_starts_over(references: References, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    algo, env = "td3", "Pendulum-v1"
    out = interrupted_run(references, algo, env, tmp_path / "results", capfd)
    result = run_cli(run_args(algo, env, out, "--overwrite"), capfd)
    assert result.returncode == 0 and "resuming" not in result.stdout
    assert "resumes" not in read_run(run_dir(out, algo, env) / "seed_0.parquet").metadata.header.provenance
    assert_same_rows(curves(out, algo, env), references.run(algo, env, capfd)[0])


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--steps", "500"], "steps 200 (this run: 500)"),
        (["--set", "batch_size=64"], "batch_size 32 (this run: 64)"),
        (["--eval-episodes", "2"], "eval_episodes 1 (this run: 2)"),
        (["--update-every", "4"], "update_every 1 (this run: 4)"),
        (["--action-repeat", "2"], "action_repeat 1 (this run: 2)"),
    ],
)
def test_a_checkpoint_of_other_settings_is_refused(
    change: list[str], named: str, references: References, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    algo, env = "sac", "Pendulum-v1"
    out = interrupted_run(references, algo, env, tmp_path / "results", capfd)
    before = {path.name: path.read_bytes() for path in run_dir(out, algo, env).iterdir()}
    result = run_cli(run_args(algo, env, out, *change), capfd)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "was written with other settings" in result.stderr and named in result.stderr
    assert {path.name: path.read_bytes() for path in run_dir(out, algo, env).iterdir()} == before


def test_a_checkpoint_of_another_algorithm_is_refused(
    references: References, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = interrupted_run(references, "sac", "Pendulum-v1", tmp_path / "results", capfd)
    checkpoint_of(out, "td3", "Pendulum-v1").parent.mkdir(parents=True)
    shutil.copyfile(checkpoint_of(out, "sac", "Pendulum-v1"), checkpoint_of(out, "td3", "Pendulum-v1"))
    result = run_cli(run_args("td3", "Pendulum-v1", out), capfd)
    assert result.returncode == 2 and "algo sac (this run: td3)" in result.stderr


class Hostile:
    """Unpickling this runs a shell command: what a checkpoint must never be able to do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("damage", ["truncated", "hostile", "format"])
def test_an_unusable_checkpoint_is_one_line_and_touches_nothing(
    damage: str, references: References, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    algo, env = "sac", "Pendulum-v1"
    out = interrupted_run(references, algo, env, tmp_path / "results", capfd)
    path = checkpoint_of(out, algo, env)
    marker = tmp_path / "executed"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "hostile":
        path.write_bytes(pickle.dumps({"format": 1, "header": Hostile(marker)}))
    else:
        torch.save({"format": 99, "header": "{}", "document": "{}", "tensors": {}}, path)
    assert_refused_in_one_line(out, algo, env, "format 99" if damage == "format" else "is not a readable checkpoint", capfd)
    assert not marker.exists(), "reading a checkpoint executed code"


def assert_refused_in_one_line(out: Path, algo: str, env: str, named: str, capfd: pytest.CaptureFixture[str]) -> None:
    """Running again is refused with one line saying `named`, and the run's files stay as they were (a refusal
    after the claim leaves the claim's own files, released)."""
    before = run_files_of(out, algo, env)
    result = run_cli(run_args(algo, env, out), capfd)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert named in result.stderr
    assert run_files_of(out, algo, env) == before


def run_files_of(out: Path, algo: str, env: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir(out, algo, env).iterdir() if p.name not in (LOCK_NAME, CLAIM_NAME)}


def rewrite_header(path: Path, edit: Callable[[Any], Any]) -> None:
    """Replace the header of the checkpoint at `path` by `edit(header)`, keeping the rest as written."""
    checkpoint = torch.load(path, weights_only=True)
    torch.save({**checkpoint, "header": json.dumps(edit(json.loads(checkpoint["header"])))}, path)


BAD_HEADERS = {
    "no-written-at": lambda header: {key: value for key, value in header.items() if key != "written_at"},
    "no-step": lambda header: {key: value for key, value in header.items() if key != "step"},
    "step-text": lambda header: {**header, "step": "seventy"},
    "written-at-text": lambda header: {**header, "written_at": "yesterday"},
    "not-an-object": lambda header: [header],
}


@pytest.mark.parametrize("edit", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_a_checkpoint_header_missing_a_field_is_one_line(
    edit: Callable[[Any], Any], references: References, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A header without `written_at` once gave "KeyError: 'written_at'", exit 1, from `run` and from `reproduce
    --dry-run`: now a CheckpointError naming the file, exit 2 from `run`, a conflict in the plan."""
    algo, env = "sac", "Pendulum-v1"
    out = interrupted_run(references, algo, env, tmp_path / "results", capfd)
    path = checkpoint_of(out, algo, env)
    rewrite_header(path, edit)
    assert_refused_in_one_line(out, algo, env, f"{path} is not a readable checkpoint (its header ", capfd)
    planned = run_cli(["reproduce", str(grid_of(out, algo, env, tmp_path / "grid.toml")), "--dry-run"], capfd)
    assert planned.returncode == 0 and f"  {path} is not a readable checkpoint (its header " in planned.stdout, planned.stderr


@pytest.mark.parametrize("part", ["document", "tensors"])
def test_a_checkpoint_whose_state_is_not_a_mapping_is_one_line(
    part: str, references: References, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    algo, env = "sac", "Pendulum-v1"
    out = interrupted_run(references, algo, env, tmp_path / "results", capfd)
    path = checkpoint_of(out, algo, env)
    checkpoint = torch.load(path, weights_only=True)
    torch.save({**checkpoint, part: "[]" if part == "document" else [torch.zeros(1)]}, path)
    assert_refused_in_one_line(out, algo, env, f"{path} is not a readable checkpoint (its document or its tensors are not a mapping", capfd)


WRITER = """
import sys, torch
from pathlib import Path
from qsmbench.runs.checkpoint import write_checkpoint
path, version = Path(sys.argv[1]), 0
while True:
    version += 1
    header = {"settings": {"steps": 10**9}, "step": version, "written_at": 0.0}  # the step says which version
    write_checkpoint(path, header, {}, {"payload": torch.full((8_000_000,), float(version))})
    print(version, flush=True)
"""


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path: Path) -> None:
    """Writers doing nothing but rewrite a 32 MB checkpoint, each killed with SIGKILL at a random moment (so
    almost surely mid-write): each file reads back whole, as one of the versions written."""
    paths = [tmp_path / f"checkpoint_seeds_{k}-{k}.pt" for k in range(3)]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE) for path in paths]
    rng = np.random.default_rng()
    for writer in writers:
        assert writer.stdout is not None
        writer.stdout.readline()  # one version is complete
        time.sleep(rng.uniform(0.0, 0.4))
        writer.kill()
        writer.wait()
    for path in paths:
        checkpoint = read_checkpoint(path)
        version = checkpoint["header"]["step"]
        assert torch.equal(checkpoint["tensors"]["payload"], torch.full((8_000_000,), float(version)))


def header_at(step: int) -> dict[str, Any]:
    """The smallest header a checkpoint's readers take: the run's steps, the step reached, the time written."""
    return {"settings": {"steps": 100}, "step": step, "written_at": 0.0}


def test_writing_a_checkpoint_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_seeds_0-1.pt"
    write_checkpoint(path, header_at(1), {"value": [1.5, float("nan")]}, {"t": torch.arange(3)})
    write_checkpoint(path, header_at(2), {"value": [2.5]}, {"t": torch.arange(4)})
    checkpoint = read_checkpoint(path)
    assert checkpoint["header"] == header_at(2) and checkpoint["document"] == {"value": [2.5]}
    assert torch.equal(checkpoint["tensors"]["t"], torch.arange(4))
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temporary file is left behind"
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        (tmp_path / "other.pt").write_bytes(b"not a zip")
        read_checkpoint(tmp_path / "other.pt")


class UnseededPendulum(PendulumEnv):
    """A Pendulum whose start state comes from numpy's global generator, which no env state records."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.state = np.random.uniform(-1.0, 1.0, 2)
        self.last_u = None
        return self._get_obs(), {}


def test_an_env_that_does_not_replay_to_its_state_is_refused() -> None:
    import gymnasium as gym

    gym.register("qsmbench-test/UnseededPendulum-v0", entry_point=UnseededPendulum, max_episode_steps=200)
    batch = EnvBatch("qsmbench-test/UnseededPendulum-v0", [0])
    for _ in range(5):
        batch.step(np.zeros((1, 1), dtype=np.float32))
    state = batch.state()
    with pytest.raises(EnvStateError, match="is not deterministic"):
        EnvBatch("qsmbench-test/UnseededPendulum-v0", [0]).load_state(state)


def test_a_checkpointed_block_of_seeds_stays_one_block() -> None:
    """Seeds 2-5 have a checkpoint: the pending seeds 0-9 run as 0-1, 2-5 (resumed) and 6-9."""
    spec = make_spec("sac", env="Pendulum-v1", seeds=10)
    assert split_at_checkpoints((0, 10), ((2, 4, 300),)) == [(0, 2), (2, 4), (6, 4)]
    assert Job(spec, done=(8,), resumable=((2, 4, 300),)).blocks() == [(0, 2), (2, 4), (6, 2), (9, 1)]


def grid_of(out: Path, algo: str, env: str, path: Path) -> Path:
    """A grid file at `path` of one job, `algo` on `env` with `run_args`'s settings, its results in `out`."""
    overrides = ", ".join(f'"{item}"' for item in [*small_overrides(algo), "warmup_steps=60", "batch_size=32"])
    path.write_text(
        f'out = "{out}"\nalgorithms = ["{algo}"]\nseeds = 2\nsteps = 200\neval_every = 100\neval_episodes = 1\n'
        f'[overrides]\n{algo} = [{overrides}]\n[[tasks]]\nenv = "{env}"\nconfidence = "smoke"\nsource = "test"\n'
        "[plot]\nreps = 50\n[scales.paper]\n"
    )
    return path


def test_reproduce_resumes_an_interrupted_job(
    references: References, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A grid whose job was interrupted after a checkpoint: `qsmbench reproduce` resumes it, to the same rows."""
    algo, env = "sac", "Pendulum-v1"
    out = interrupted_run(references, algo, env, tmp_path / "results", capfd)
    grid = grid_of(out, algo, env, tmp_path / "grid.toml")
    plan = run_cli(["reproduce", str(grid), "--dry-run"], capfd)
    assert plan.returncode == 0 and "resume at step " in plan.stdout
    result = run_cli(["reproduce", str(grid), "--device", "cpu", "--quiet", "--checkpoint-every", "70"], capfd)
    assert result.returncode == 0, result.stderr
    assert "resuming from the checkpoint at step " in result.stdout
    assert_same_rows(curves(out, algo, env), references.run(algo, env, capfd)[0])


# The layout qsmbench 69990c5 wrote (before Protocol and Execution split RunConfig): a checkpoint, a run file or a
# saved policy written by it must still resume, plot and evaluate, so the names in these files must not change.
SETTINGS_69990C5 = ("algo", "env_id", "env", "dataset", "seeds", "seed_start", "steps", "eval_every", "eval_episodes",
                    "tf32", "compile")  # then the hyperparameters, then "device type"
DOCUMENT_69990C5 = {"provenance", "rows", "live", "divergences", "diagnostic_counts", "last_eval_step", "elapsed_s",
                    "collector", "evaluation_rngs"}
TENSORS_69990C5 = {"agent", "torch_rng", "diagnostic_sums", "replay"}
RUN_CONFIG_69990C5 = ("env", "dataset", "seeds", "seed_start", "steps", "eval_every", "eval_episodes", "device", "out",
                      "checkpoint_every", "tf32", "compile", "env_workers", "eval_workers", "variant", "track",
                      "track_every")


def test_checkpoints_and_run_files_keep_the_names_69990c5_wrote(tmp_path: Path) -> None:
    spec = make_spec("sac", [*small_overrides("sac"), "warmup_steps=10"], env="Pendulum-v1", seeds=2, steps=20, eval_every=10,
                     device="cpu", out=str(tmp_path))
    trainer = loop.start(prepare(spec), PlainReporter("sac", [0, 1], 20))
    try:
        header, document, tensors = trainer.checkpoint_state()
    finally:
        trainer.claim.release()
    hyperparameters = tuple(dataclasses.asdict(spec.config))
    added = set(LEGACY_RUN_SETTINGS)  # settings added since, which files without them read with their old value
    assert tuple(key for key in header["settings"] if key not in added) == (*SETTINGS_69990C5, *hyperparameters, "device type")
    assert set(document) == DOCUMENT_69990C5 and set(tensors) == TENSORS_69990C5
    assert tuple(key for key in trainer.recorder.files.header.run_config if key not in added) == RUN_CONFIG_69990C5


def test_a_checkpoint_older_than_update_every_resumes_only_as_update_every_1(tmp_path: Path) -> None:
    """A checkpoint written before `update_every` existed has no such setting: its run made one update per step, so
    it continues a run with update_every 1 and is refused, in one line, for any other value."""
    sets = [*small_overrides("sac"), "warmup_steps=10"]
    spec = make_spec("sac", sets, env="Pendulum-v1", seeds=2, steps=20, eval_every=10, device="cpu")
    settings = resume_settings(spec, "Pendulum-v1", torch.device("cpu"))
    assert settings["update_every"] == 1
    legacy = {"settings": {key: value for key, value in settings.items() if key != "update_every"}}
    check_belongs(tmp_path / "old.pt", legacy, settings)
    other_spec = make_spec("sac", sets, env="Pendulum-v1", seeds=2, steps=20, eval_every=10, device="cpu",
                           update_every=5)
    other = resume_settings(other_spec, "Pendulum-v1", torch.device("cpu"))
    with pytest.raises(CheckpointError, match=r"^[^\n]*update_every 1 \(this run: 5\)[^\n]*$"):
        check_belongs(tmp_path / "old.pt", legacy, other)


def test_a_checkpoint_older_than_a_hyperparameter_resumes_only_at_its_default(tmp_path: Path) -> None:
    """QSM gained `score_critic` and five other settings for its literature variants, each defaulting to the official
    behaviour: a checkpoint written before them lacks those keys, was made with the defaults, and must resume a run
    at the defaults (it was refused, naming `score_critic unset`) and be refused for any other value."""
    sets = [*small_overrides("qsm"), "warmup_steps=10"]
    spec = make_spec("qsm", sets, env="Pendulum-v1", seeds=2, steps=20, eval_every=10, device="cpu")
    settings = resume_settings(spec, "Pendulum-v1", torch.device("cpu"))
    added = ("score_critic", "score_normalization", "score_sigma_weight", "eval_candidates", "sampler_clip", "actor_lr_schedule")
    legacy = {"settings": {key: value for key, value in settings.items() if key not in added}}
    check_belongs(tmp_path / "old.pt", legacy, settings)
    other_spec = make_spec("qsm", [*sets, "score_critic=target"], env="Pendulum-v1", seeds=2, steps=20, eval_every=10, device="cpu")
    other = resume_settings(other_spec, "Pendulum-v1", torch.device("cpu"))
    with pytest.raises(CheckpointError, match=r"^[^\n]*score_critic online \(this run: target\)[^\n]*$"):
        check_belongs(tmp_path / "old.pt", legacy, other)


def test_a_checkpoint_older_than_action_repeat_resumes_only_as_action_repeat_1(tmp_path: Path) -> None:
    """A checkpoint written before `action_repeat` existed has no such setting: its envs stepped once per action,
    so it continues a run with action_repeat 1 and is refused, in one line, for any other value."""
    sets = [*small_overrides("sac"), "warmup_steps=10"]
    spec = make_spec("sac", sets, env="Pendulum-v1", seeds=2, steps=20, eval_every=10, device="cpu")
    settings = resume_settings(spec, "Pendulum-v1", torch.device("cpu"))
    assert settings["action_repeat"] == 1
    legacy = {"settings": {key: value for key, value in settings.items() if key not in LEGACY_RUN_SETTINGS}}
    check_belongs(tmp_path / "old.pt", legacy, settings)
    other_spec = make_spec("sac", sets, env="Pendulum-v1", seeds=2, steps=20, eval_every=10, device="cpu",
                           action_repeat=3)
    other = resume_settings(other_spec, "Pendulum-v1", torch.device("cpu"))
    with pytest.raises(CheckpointError, match=r"^[^\n]*action_repeat 1 \(this run: 3\)[^\n]*$"):
        check_belongs(tmp_path / "old.pt", legacy, other)
