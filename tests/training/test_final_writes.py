"""The final writes of a run (its policies, then the `complete` statuses): a full disk or a Ctrl-C there leaves
files that say what happened (where the disk lets them be written), and the same command finishes the run with
the rows of an uninterrupted one; a checkpoint left beside a finished run is deleted by the next run of its
directory."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from support import CliResult, keeping_first_checkpoint, run_cli

from qsmbench.grid.plan import resumable_blocks
from qsmbench.runs.format import METADATA_KEY
from qsmbench.runs.layout import checkpoint_path, policy_path, run_dir, run_path
from qsmbench.runs.read import read_run, read_status
from qsmbench.runs.spec import make_spec

STEPS, SEEDS = 200, 2
ARGS = ["run", "--algo", "sac", "--env", "Pendulum-v1", "--steps", str(STEPS), "--eval-every", "100", "--eval-episodes", "1",
        "--device", "cpu", "--set", "warmup_steps=50", "--set", "batch_size=16", "--set", "hidden_sizes=64,64", "--name", "",
        "--quiet"]
TIMING = ["wall_time_s", "sps"]


def run(out: Path, capfd: pytest.CaptureFixture[str], *extra: str) -> CliResult:
    return run_cli([*ARGS, "--seeds", str(SEEDS), "--out", str(out), *extra], capfd)


def seed_files(out: Path) -> list[Path]:
    return [run_path(out, "Pendulum-v1", "sac", seed) for seed in range(SEEDS)]


def statuses(out: Path) -> list[str]:
    return [read_run(path).status for path in seed_files(out)]


def full_disk() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def on_second_complete_write(fault: BaseException, persists: bool = False) -> Callable[..., Any]:
    """pq.write_table that raises `fault` on the second file written `complete` (seed 1's final write): once, or
    on every write from then on (`persists`: the disk stays full, so the `failed` statuses cannot be written)."""
    write_table, completes, full = pq.write_table, [], []

    def write(table: Any, where: Any, *args: Any, **kwargs: Any) -> Any:
        if json.loads(table.schema.metadata[METADATA_KEY])["status"] == "complete":
            completes.append(where)
        if len(completes) == 2 and (persists or not full):
            full.append(where)
            raise fault
        return write_table(table, where, *args, **kwargs)

    return write


def on_every_write_from_seed_1s_complete(fault: BaseException) -> Callable[..., Any]:
    return on_second_complete_write(fault, persists=True)


def on_first_policy(fault: BaseException) -> Callable[..., Any]:
    """torch.save that raises `fault` once, on the first saved policy (a checkpoint's write goes through)."""
    save, raised = torch.save, []

    def write(obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(obj, dict) and "document" in obj and "header" not in obj and not raised:
            raised.append(obj)
            raise fault
        return save(obj, *args, **kwargs)

    return write


def assert_same_as_uninterrupted(out: Path, reference: Path) -> None:
    """Every seed complete, with the rows and the policies of the uninterrupted run, and no checkpoint left."""
    assert statuses(out) == ["complete"] * SEEDS
    for path, expected in zip(seed_files(out), seed_files(reference)):
        got, want = read_run(path).curve.drop(columns=TIMING), read_run(expected).curve.drop(columns=TIMING)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        policy, wanted = torch.load(policy_path(path), weights_only=True), torch.load(policy_path(expected), weights_only=True)
        assert same_tensors(policy["tensors"], wanted["tensors"])
    assert not list(run_dir(out, "Pendulum-v1", "sac").glob("checkpoint_*"))


def same_tensors(got: Any, want: Any) -> bool:
    """Whether two nests of dicts and tensors are equal, bit for bit."""
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(same_tensors(got[key], want[key]) for key in want)
    return torch.equal(got, want)


FAULTS = {
    "full disk on seed 1's complete write": (pq, "write_table", on_second_complete_write, full_disk, 1, ["failed"] * SEEDS),
    "disk full from seed 1's complete write on": (
        pq, "write_table", on_every_write_from_seed_1s_complete, full_disk, 1, ["complete", "running"],
    ),
    "full disk while saving the policies": (torch, "save", on_first_policy, full_disk, 1, ["failed"] * SEEDS),
    "second Ctrl-C while saving the policies": (torch, "save", on_first_policy, KeyboardInterrupt, 130, ["interrupted"] * SEEDS),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_in_the_final_writes_leaves_a_true_status_and_the_same_command_finishes(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    module, name, make, error, code, expected = FAULTS[fault]
    assert run(tmp_path / "reference", capfd).returncode == 0
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(module, name, make(error()))
        faulty = run(out, capfd)
    assert faulty.returncode == code, faulty.stderr
    assert statuses(out) == expected
    if code == 1:
        assert "No space left on device" in faulty.stderr
    else:
        assert "marked interrupted" in faulty.stderr
    for path in seed_files(out):
        stored = read_run(path).metadata
        assert stored.status != "failed" or "No space left on device" in (stored.error or "")
    finished = run(out, capfd)
    assert finished.returncode == 0, finished.stderr
    assert_same_as_uninterrupted(out, tmp_path / "reference")


def test_a_checkpoint_stranded_beside_a_finished_run_is_deleted_by_the_next_run_of_its_directory(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A kill between the last `complete` write and the checkpoint's deletion leaves the checkpoint beside a
    finished run: the same command is refused as finished, and the next run of the directory deletes it."""
    checkpoint = checkpoint_path(run_dir(tmp_path, "Pendulum-v1", "sac"), 0, SEEDS)
    with keeping_first_checkpoint(checkpoint, tmp_path / "kept.pt"):
        assert run(tmp_path, capfd, "--checkpoint-every", "100").returncode == 0
    os.link(tmp_path / "kept.pt", checkpoint)
    files = {path: path.read_bytes() for path in seed_files(tmp_path)}
    again = run(tmp_path, capfd, "--checkpoint-every", "100")
    assert again.returncode == 2 and "holds a finished run" in again.stderr
    other_seeds = run_cli([*ARGS, "--seed-start", "2", "--seeds", "1", "--out", str(tmp_path)], capfd)
    assert other_seeds.returncode == 0, other_seeds.stderr
    assert not checkpoint.exists()
    assert {path: path.read_bytes() for path in seed_files(tmp_path)} == files


def test_a_grid_finishes_a_run_whose_final_writes_failed_from_its_checkpoint(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 0 `complete`, seed 1 `running` and the last step's checkpoint (the disk stayed full): `reproduce` plans
    to go on from that checkpoint, as `run` does, instead of training every seed again from scratch."""
    with monkeypatch.context() as patch:
        patch.setattr(pq, "write_table", on_every_write_from_seed_1s_complete(full_disk()))
        assert run(tmp_path, capfd).returncode == 1
    spec = make_spec("sac", ["warmup_steps=50"], env="Pendulum-v1", seeds=SEEDS, steps=STEPS, out=str(tmp_path))
    statuses_now = {seed: read_status(path) for seed, path in enumerate(seed_files(tmp_path))}
    assert statuses_now == {0: "complete", 1: "running"}
    assert resumable_blocks(spec, run_dir(tmp_path, "Pendulum-v1", "sac"), statuses_now) == ([(0, SEEDS, STEPS)], [])
