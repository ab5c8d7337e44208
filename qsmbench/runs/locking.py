"""One writer per run directory: a claim held for the whole run, given up on any exit.

A claim is two things on `<run dir>/.qsmbench.lock`:

- **`flock`**, which the kernel drops when its holder exits in any way (an exception, SIGTERM, SIGKILL,
  an out-of-memory kill): a lock left by a dead process on this host is stale by construction and the
  next run takes it over at once. Linux NFS clients map `flock` onto NFS byte-range locks, so launchers
  on several hosts sharing a results directory exclude each other as well.
- **A record** in the file: holder (a Slurm array task, a Ray task, or a person's shell), host, pid,
  start time, a heartbeat rewritten every `HEARTBEAT_EVERY_S` with the run's step, and `released` once
  the run ends. It tells a second launcher, and `reproduce --dry-run`, whose run is in the way and how
  far it is. It also guards the filesystems whose locks are only per host (Lustre mounted with
  `localflock`, or one without `flock` at all): a record of another host that is not released and
  has a heartbeat younger than `CLAIM_TIMEOUT_S` keeps the directory claimed even though `flock` was
  granted here, and is taken over once its heartbeat is older (its holder died with its host).

What the record cannot do: on a filesystem whose locks are per host, two launchers on two hosts
claiming the same directory within the same moment can both get it; `flock` shared by the hosts (NFS,
GPFS, CephFS, Lustre with `flock`) has no such gap. The file itself is never deleted: removing it while
another process waits to open it would let two processes lock two different files of the same name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import getpass
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from qsmbench.core.errors import RunLocked
from qsmbench.core.messages import format_duration
from qsmbench.runs.layout import lock_path

HEARTBEAT_EVERY_S = 30.0  # seconds between rewrites of a held claim's record
CLAIM_TIMEOUT_S = 300.0  # a claim of another host whose heartbeat is older than this was left by a dead holder
HOLDER_VARIABLE = "QSMBENCH_HOLDER"  # names the holder in the record (the Ray driver sets it for its tasks)


@dataclass(frozen=True)
class ClaimRecord:
    """Who holds (or last held) a run directory, and how far its run was at its last heartbeat."""

    holder: str
    host: str
    pid: int
    started: float  # unix time
    heartbeat: float  # unix time of the last rewrite
    step: int = 0
    steps: int = 0
    released: bool = False

    def stale(self, now: float) -> bool:
        return now - self.heartbeat > CLAIM_TIMEOUT_S

    def alive_here(self) -> bool | None:
        """Whether the holder's process still exists, when it ran on this host (None: another host)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def describe(self, now: float) -> str:
        """'slurm job 7_3 on host n12, pid 4242, step 300,000 of 1,000,000, heartbeat 12 s ago'."""
        progress = f", step {self.step:,} of {self.steps:,}" if self.steps else ""
        return (
            f"{self.holder} on host {self.host}, pid {self.pid}{progress}, "
            f"heartbeat {format_duration(max(now - self.heartbeat, 0.0))} ago"
        )

    def state(self, now: float) -> str:
        """The claim as `--dry-run` shows it: held, or why it no longer counts."""
        if self.released:
            return "released"
        if self.alive_here() is False:
            return f"left by a dead process: {self.describe(now)}"
        if self.stale(now):
            return f"no heartbeat for {format_duration(now - self.heartbeat)}, taken over by the next launcher: {self.describe(now)}"
        return f"claimed by {self.describe(now)}"


def holder_label() -> str:
    """What holds a claim, for people: $QSMBENCH_HOLDER, else the Slurm array task or job, else the user's run."""
    if os.environ.get(HOLDER_VARIABLE):
        return os.environ[HOLDER_VARIABLE]
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"slurm job {array_job}_{array_task}"
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm job {os.environ['SLURM_JOB_ID']}"
    try:
        return f"a qsmbench run of {getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid
        return f"a qsmbench run of uid {os.getuid()}"


class RunClaim:
    """The held claim of one run directory: `beat` keeps its heartbeat fresh, `release` (or exit) gives it up.
    `taken_over` is the stale claim of another host it replaced, if any."""

    def __init__(
        self, directory: Path, descriptor: int, record: ClaimRecord, taken_over: ClaimRecord | None,
        heartbeat_every: float,
    ):
        self.directory, self.descriptor, self.record = directory, descriptor, record
        self.taken_over, self.heartbeat_every = taken_over, heartbeat_every
        self.last_beat = time.monotonic()

    def takeover_note(self) -> str | None:
        """A line for the user when this claim replaced another host's whose heartbeat had stopped."""
        if self.taken_over is None:
            return None
        return f"took over {self.directory} from {self.taken_over.describe(self.record.started)}: its heartbeat had stopped"

    def beat(self, step: int) -> None:
        """Rewrite the record with `step` if the last heartbeat is `heartbeat_every` old (a clock read otherwise)."""
        if time.monotonic() - self.last_beat >= self.heartbeat_every and self.descriptor >= 0:
            self._write(dataclasses.replace(self.record, step=step, heartbeat=time.time()))

    def release(self) -> None:
        if self.descriptor >= 0:
            with contextlib.suppress(OSError):  # the claim is given up by closing, whatever the record says
                self._write(dataclasses.replace(self.record, heartbeat=time.time(), released=True))
            os.close(self.descriptor)  # closing the last descriptor releases the flock
            self.descriptor = -1

    def _write(self, record: ClaimRecord) -> None:
        write_record(self.descriptor, record)
        self.record, self.last_beat = record, time.monotonic()

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def claim_run_dir(directory: Path, steps: int = 0, heartbeat_every: float = HEARTBEAT_EVERY_S) -> RunClaim:
    """Claim the run directory (creating it) for a run of `steps`; RunLocked names the live holder."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock_path(directory), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        take_flock(descriptor, directory)
        previous, now = read_record(descriptor), time.time()
        if previous is not None and previous.host != socket.gethostname() and not previous.released and not previous.stale(now):
            raise RunLocked(
                f"{directory} is claimed by {previous.describe(now)} from another host; if that holder died, "
                f"its claim is taken over once its heartbeat is {format_duration(CLAIM_TIMEOUT_S)} old"
            )
        record = ClaimRecord(holder_label(), socket.gethostname(), os.getpid(), now, now, steps=steps)
        write_record(descriptor, record)
    except BaseException:
        os.close(descriptor)
        raise
    foreign = previous is not None and previous.host != record.host and not previous.released
    return RunClaim(directory, descriptor, record, previous if foreign else None, heartbeat_every)


def take_flock(descriptor: int, directory: Path) -> None:
    """The exclusive flock, or RunLocked naming its holder; a filesystem without flock leaves the record alone."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = read_record(descriptor)
        held_by = holder.describe(time.time()) if holder else "another qsmbench run (holder not yet recorded)"
        raise RunLocked(f"{directory} is being written by {held_by}; wait for it to finish or stop it, then run again") from None
    except OSError as error:
        if error.errno not in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise


def write_record(descriptor: int, record: ClaimRecord) -> None:
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(dataclasses.asdict(record)).encode(), 0)
    os.fsync(descriptor)


def read_record(descriptor: int) -> ClaimRecord | None:
    """The record in the lock file; None when it is empty (its first holder has not written it yet) or unreadable."""
    try:
        return ClaimRecord(**json.loads(os.pread(descriptor, 4096, 0)))
    except (OSError, ValueError, TypeError):
        return None


def read_claim(directory: Path) -> ClaimRecord | None:
    """The claim record of a run directory, read without taking anything (for `--dry-run`)."""
    try:
        descriptor = os.open(lock_path(directory), os.O_RDONLY)
    except OSError:
        return None
    try:
        return read_record(descriptor)
    finally:
        os.close(descriptor)
