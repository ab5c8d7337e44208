"""The claim of a run directory (qsmbench.runs.locking) where things go wrong: links planted in the results
directory, filesystems without `flock`, clocks that disagree, long or malformed records, long pauses between steps."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import run_cli

from qsmbench.core.errors import ConfigError, RunLocked
from qsmbench.runs.layout import claim_path, lock_path
from qsmbench.runs.locking import CLAIM_TIMEOUT_S, claim_run_dir, read_claim
from qsmbench.runs.read import read_run

VICTIM = b"another user's file: qsmbench must neither truncate nor write it\n"
RUN = ["run", "--algo", "sac", "--env", "Pendulum-v1", "--seeds", "1", "--steps", "100", "--eval-every", "50", "--eval-episodes", "1",
       "--set", "warmup_steps=50", "--set", "hidden_sizes=64,64", "--name", ""]
NO_FLOCK = "import errno, fcntl; fcntl.flock = lambda *_: (_ for _ in ()).throw(OSError(errno.ENOLCK, 'No locks available')); "


def planted_link(tmp_path: Path, name: Path) -> Path:
    """A symlink at `name` to a file outside the results with known bytes; returns the file."""
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir(exist_ok=True)
    victim.write_bytes(VICTIM)
    name.parent.mkdir(parents=True, exist_ok=True)
    name.symlink_to(victim)
    return victim


def foreign_record(run_dir: Path, age_s: float, clock_offset_s: float = 0.0, **changes: object) -> None:
    """The record a launcher on another host left: last written `age_s` ago (the file's mtime, as the file
    server keeps it), its times read from that host's clock, `clock_offset_s` ahead of ours."""
    run_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    document = {
        "holder": "slurm job 7_3", "host": "node-elsewhere", "pid": 4242, "started": now - 3600 + clock_offset_s,
        "heartbeat": now - age_s + clock_offset_s, "step": 70, "steps": 500, "released": False,
    } | changes
    claim_path(run_dir).write_text(json.dumps(document))
    os.utime(claim_path(run_dir), (now - age_s, now - age_s))


def no_flock(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's filesystem has no `flock`, as on Lustre mounted without it."""

    def refuse(*_args: object) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)


def eventually(condition: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Whether `condition` holds within `timeout_s` (a bound for a slow machine, not a timing check)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ------------------------------------------------------------------------------------------------ links


def test_a_linked_lock_file_is_refused_in_one_line_and_its_target_is_untouched(tmp_path: Path) -> None:
    """A symlink at `.qsmbench.lock` is never opened: the claim is refused naming it, and the file it points
    to keeps its bytes; a dangling link does not create its target."""
    run_dir = tmp_path / "out" / "Pendulum-v1" / "sac"
    victim = planted_link(tmp_path, lock_path(run_dir))
    with pytest.raises(ConfigError, match="symbolic link") as refused:
        claim_run_dir(run_dir)
    assert str(lock_path(run_dir)) in str(refused.value) and "\n" not in str(refused.value)
    assert victim.read_bytes() == VICTIM
    figures = tmp_path / "out" / "_figures"  # `reproduce` claims the figures through the same function
    lock_path(figures).parent.mkdir()
    lock_path(figures).symlink_to(tmp_path / "elsewhere" / "created.txt")
    with pytest.raises(ConfigError, match="symbolic link"):
        claim_run_dir(figures)
    assert not (tmp_path / "elsewhere" / "created.txt").exists()


def test_run_refuses_a_linked_lock_file_with_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`qsmbench run` into a run directory whose lock file is a link: exit 2, one line naming it, no result."""
    run_dir = tmp_path / "Pendulum-v1" / "sac"
    victim = planted_link(tmp_path, lock_path(run_dir))
    result = run_cli([*RUN, "--out", str(tmp_path)], capfd)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(lock_path(run_dir)) in result.stderr and "symbolic link" in result.stderr
    assert victim.read_bytes() == VICTIM and not (run_dir / "seed_0.parquet").exists()


def test_a_linked_record_is_replaced_not_written_through(tmp_path: Path) -> None:
    """A symlink where the record goes is replaced by the record itself; the file it pointed to keeps its bytes."""
    victim = planted_link(tmp_path, claim_path(tmp_path / "run"))
    with claim_run_dir(tmp_path / "run", steps=10) as claim:
        assert not claim_path(tmp_path / "run").is_symlink() and read_claim(tmp_path / "run") == claim.record
    assert victim.read_bytes() == VICTIM


# ------------------------------------------------------------------------------------------------ without flock


def test_without_flock_a_live_holder_on_this_host_keeps_its_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two launchers on one host, on a filesystem without `flock`: while the first lives, the second is refused
    naming it; once it is dead, its claim is taken over."""
    holder = subprocess.Popen(
        [sys.executable, "-c", NO_FLOCK + "import sys, time; from pathlib import Path; from qsmbench.runs.locking import "
         "claim_run_dir; claim = claim_run_dir(Path(sys.argv[1])); print('held', flush=True); time.sleep(120)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    no_flock(monkeypatch)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"pid {holder.pid}, heartbeat"):
            claim_run_dir(tmp_path)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with claim_run_dir(tmp_path, steps=5) as claim:
        assert claim.record.pid == os.getpid() and claim.takeover_note() is None  # a dead process of this host
    with claim_run_dir(tmp_path):  # released: nobody's
        pass


# ------------------------------------------------------------------------------------------------ the heartbeat


def test_the_heartbeat_goes_on_while_no_step_is_taken_and_stops_with_release(tmp_path: Path) -> None:
    """A restore, an evaluation or a checkpoint write can outlast the claim timeout: the heartbeat is rewritten
    while the claim is held, whether the loop calls `beat` or not, with the last step it gave; after `release`
    the record says released and is never written again."""
    claim = claim_run_dir(tmp_path, steps=500, heartbeat_every=0.01)
    first = read_claim(tmp_path)
    claim.beat(42)  # the last step before a long evaluation
    assert eventually(lambda: (record := read_claim(tmp_path)) is not None and record.step == 42)
    assert first is not None and eventually(lambda: read_claim(tmp_path).heartbeat > first.heartbeat)  # type: ignore[union-attr]
    claim.release()
    released = read_claim(tmp_path)
    assert released is not None and released.released and released.step == 42 and not claim.beater.is_alive()
    time.sleep(0.1)
    assert read_claim(tmp_path) == released


def test_release_while_the_heartbeat_writes_leaves_a_released_record(tmp_path: Path) -> None:
    """`release` and the heartbeat take turns: however they meet, the last record says released."""
    for attempt in range(20):
        claim = claim_run_dir(tmp_path / str(attempt), heartbeat_every=0)
        claim.beat(attempt)
        claim.release()
        record = read_claim(tmp_path / str(attempt))
        assert record is not None and record.released and not claim.beater.is_alive()


def test_a_reader_always_finds_a_whole_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--dry-run` and the Ray driver read the record while its holder rewrites it: before every write step
    of the rewrite, a reader still finds a whole record."""
    with claim_run_dir(tmp_path):
        pass
    seen: list[object] = []
    for name in ("ftruncate", "pwrite", "write", "fsync", "replace", "rename"):
        original = getattr(os, name)

        def reading_first(*args: object, _original: Callable[..., object] = original) -> object:
            seen.append(read_claim(tmp_path))
            return _original(*args)

        monkeypatch.setattr(os, name, reading_first)
    with claim_run_dir(tmp_path, steps=3):
        pass
    monkeypatch.undo()
    assert seen and None not in seen


# ------------------------------------------------------------------------------------------------ other hosts


def test_a_live_host_whose_clock_is_behind_keeps_its_claim(tmp_path: Path) -> None:
    """Staleness is judged by the file server's clock: a record written 10 s ago by a host whose clock is
    10 minutes behind is a live claim, not a dead one."""
    foreign_record(tmp_path, age_s=10, clock_offset_s=-600)
    with pytest.raises(RunLocked, match=r"claimed by slurm job 7_3 on host node-elsewhere, pid 4242, step 70 of 500, heartbeat 1\d s ago"):
        claim_run_dir(tmp_path)


def test_a_dead_host_whose_clock_was_ahead_is_taken_over(tmp_path: Path) -> None:
    """A record not written for longer than the timeout is left by a dead holder, whatever time its host's
    clock wrote into it."""
    foreign_record(tmp_path, age_s=CLAIM_TIMEOUT_S + 60, clock_offset_s=CLAIM_TIMEOUT_S + 60)
    stale = read_claim(tmp_path)
    assert stale is not None and "taken over by the next launcher" in stale.state(time.time())
    with claim_run_dir(tmp_path) as claim:
        note = claim.takeover_note()
        assert note is not None and "from slurm job 7_3 on host node-elsewhere, pid 4242" in note


def test_a_long_holder_name_is_bounded_and_a_long_record_is_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record over 4,096 bytes is read whole (another host's still holds); our own holder name is cut to 200 characters."""
    foreign_record(tmp_path / "foreign", age_s=10, holder="ray task " + "x" * 5000)
    with pytest.raises(RunLocked, match=r"claimed by ray task x{5000} on host node-elsewhere"):
        claim_run_dir(tmp_path / "foreign")
    monkeypatch.setenv("QSMBENCH_HOLDER", "h" * 5000)
    with claim_run_dir(tmp_path / "ours"):
        record = read_claim(tmp_path / "ours")
        assert record is not None and record.holder == "h" * 200


@pytest.mark.parametrize("changes", [{"heartbeat": "yesterday"}, {"pid": "4242"}, {"released": "no"}, {"step": 1.5},
                                     {"host": None}, {"steps": True}])
def test_a_record_with_wrong_types_is_no_claim(tmp_path: Path, changes: dict[str, object]) -> None:
    """A record whose fields have the wrong types is not a claim: readers ignore it, and the next claim replaces it."""
    foreign_record(tmp_path, age_s=10, **changes)
    assert read_claim(tmp_path) is None
    with claim_run_dir(tmp_path) as claim:
        assert claim.takeover_note() is None and read_claim(tmp_path) == claim.record


def test_a_run_replaces_a_record_with_wrong_types(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Through the CLI: another host's record with a string heartbeat neither crashes the run nor stops it."""
    foreign_record(tmp_path / "Pendulum-v1" / "sac", age_s=10, heartbeat="yesterday")
    result = run_cli([*RUN, "--out", str(tmp_path), "--quiet"], capfd)
    assert result.returncode == 0, result.stderr
    assert read_run(tmp_path / "Pendulum-v1" / "sac" / "seed_0.parquet").status == "complete"
