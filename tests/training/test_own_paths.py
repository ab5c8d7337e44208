"""What a run creates, replaces or deletes below --out: never through a symbolic link, never over a directory,
and no temporary left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from support import run_cli

from qsmbench.runs.format import RunHeader, RunMetadata
from qsmbench.runs.layout import run_dir, temporary_path
from qsmbench.runs.read import read_run, read_status
from qsmbench.runs.spec import make_spec
from qsmbench.runs.write import write_run
from qsmbench.training.prepare import prepare

ARGS = ["run", "--algo", "sac", "--env", "Pendulum-v1", "--seeds", "2", "--steps", "100", "--eval-every", "50", "--eval-episodes",
        "1", "--device", "cpu", "--set", "warmup_steps=50", "--set", "batch_size=16", "--set", "hidden_sizes=64,64", "--name", "",
        "--quiet"]


def tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under `root` with its bytes (a link: where it points), to show that nothing changed."""
    entries: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        entries[name] = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else "dir"
    return entries


@pytest.mark.parametrize("linked", ["Pendulum-v1", "Pendulum-v1/sac", "Pendulum-v1/sac/_policies", "_tensorboard"])
def test_a_link_below_out_is_refused_before_anything_is_written_and_its_target_untouched(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], linked: str
) -> None:
    """A folder the run writes in that is a link to another user's folder (with a policy of theirs in it): one line
    naming it, exit 2, and their folder as it was."""
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.mkdir()
    (victim / "seed_0.pt").write_bytes(b"someone else's policy")
    link = out / linked
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim, target_is_directory=True)
    before = tree(victim)
    result = run_cli([*ARGS, "--out", str(out), "--track", "tensorboard"], capfd)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(link) in result.stderr and "link" in result.stderr
    assert tree(victim) == before


def test_out_itself_may_be_a_link(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Results linked to scratch space: --out is a link, and everything below it real."""
    scratch, out = tmp_path / "scratch", tmp_path / "results"
    scratch.mkdir()
    out.symlink_to(scratch, target_is_directory=True)
    result = run_cli([*ARGS, "--out", str(out)], capfd)
    assert result.returncode == 0, result.stderr
    assert read_run(scratch / "Pendulum-v1" / "sac" / "seed_1.parquet").status == "complete"
    assert (scratch / "Pendulum-v1" / "sac" / "_policies" / "seed_1.pt").is_file()


def test_a_link_planted_at_a_temporary_name_is_not_followed(tmp_path: Path) -> None:
    """Someone who can write in the run directory plants `.seed_0.parquet.<pid>.tmp` -> their victim: the
    write neither truncates the victim nor leaves the run file a link to it."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"not ours")
    path = tmp_path / "run" / "seed_0.parquet"
    path.parent.mkdir()
    temporary_path(path).symlink_to(victim)
    header = RunHeader("sac", "Pendulum-v1", "Pendulum-v1")
    write_run(path, pd.DataFrame({"step": [0], "seed": [0]}), RunMetadata(header, 0, "running"))
    assert victim.read_bytes() == b"not ours"
    assert not path.is_symlink() and read_status(path) == "running"
    assert not temporary_path(path).exists() and not temporary_path(path).is_symlink()


@pytest.mark.parametrize("name", ["seed_0.parquet", "checkpoint_seeds_0-1.pt", "_policies/seed_1.pt", "_policies"])
def test_a_directory_where_a_run_writes_a_file_is_refused_up_front(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], name: str
) -> None:
    """Even with --overwrite, which would replace a file there: one line naming it, before training."""
    directory = run_dir(tmp_path, "Pendulum-v1", "sac") / name
    if name == "_policies":
        directory.parent.mkdir(parents=True)
        directory.write_text("a file where the policies' folder goes")
    else:
        directory.mkdir(parents=True)
    before = tree(tmp_path)
    result = run_cli([*ARGS, "--out", str(tmp_path), "--overwrite"], capfd)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(directory) in result.stderr
    assert tree(tmp_path) == before


def test_policy_temporaries_are_cleared_when_the_directory_is_taken(tmp_path: Path) -> None:
    """A kill while saving a policy leaves `_policies/.seed_k.pt.<pid>.tmp`: the next run of the directory removes it."""
    spec = make_spec("sac", ["warmup_steps=50"], env="Pendulum-v1", seeds=1, steps=100, eval_every=50, device="cpu",
                     out=str(tmp_path))
    policies = run_dir(tmp_path, "Pendulum-v1", "sac") / "_policies"
    policies.mkdir(parents=True)
    stale = policies / ".seed_0.pt.4242.tmp"
    stale.write_bytes(b"half a policy")
    with prepare(spec).claim():
        assert not stale.exists()
