"""One writer per run directory: a claim held for the whole run, given up on any exit.

A claim is two things, in two files of the run directory:

- **`flock` on `.qsmbench.lock`**, which the kernel drops when its holder exits in any way (an exception,
  SIGTERM, SIGKILL, an out-of-memory kill): a lock left by a dead process on this host is stale by
  construction and the next run takes it over at once. Linux NFS clients map `flock` onto NFS byte-range
  locks, so launchers on several hosts sharing a results directory exclude each other as well. The file
  holds nothing else and is never deleted: removing it while another process waits to open it would let
  two processes lock two different files of the same name.
- **A record in `.qsmbench.claim`**: holder (a Slurm array task, a Ray task, or a person's shell, cut to
  `HOLDER_MAX_CHARS`), host, pid, start time, a heartbeat with the run's step, and `released` once the run
  ends. A thread of the holder rewrites it every `HEARTBEAT_EVERY_S` while the claim is held, whatever the
  run is doing (a restore, an evaluation or a checkpoint write as much as a training step), and it is
  replaced whole (a temporary file and a rename), so a reader finds the last record or the new one, never
  a part. It tells a second launcher, and `reproduce --dry-run`, whose run is in the way and how far it is.
  It also guards the filesystems whose locks are only per host (Lustre mounted with `localflock`) or that
  have no `flock` at all: a record not released, of another host, and written less than `CLAIM_TIMEOUT_S`
  ago keeps the directory claimed even though `flock` was granted here, and is taken over once it is older
  (its holder died with its host). Where `flock` does not work, a record of this host also keeps the
  directory claimed while its process lives and writes it.

How old a record is, is read from the file's mtime, against the mtime of the lock file touched just now:
both are stamped by one clock (an NFS server's, a local kernel's), so hosts whose clocks disagree judge a
claim alike; a filesystem that takes each client's time for its stamps still needs the hosts' clocks to
agree. The `heartbeat` time inside is the holder's own clock, for people and the Ray driver's speed estimate.
A record that cannot be read as one (not JSON, a field of the wrong type, over `RECORD_MAX_BYTES`) is no
claim: `flock` alone decides, and the next claim replaces it.

Neither file is opened through a symbolic link: anyone who can write the results directory could
otherwise point one at another user's file and have a run overwrite it. A link at `.qsmbench.lock` is
refused in one line; one at `.qsmbench.claim` is replaced by the record (a rename replaces the link itself).

What the record cannot do: where locks are per host or absent, two launchers claiming the same directory
within the same moment can both get it; `flock` shared by the hosts (NFS, GPFS, CephFS, Lustre with
`flock`) has no such gap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import getpass
import json
import math
import os
import socket
import stat
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsmbench.core.errors import ConfigError, RunLocked
from qsmbench.core.messages import format_duration
from qsmbench.runs.layout import claim_path, lock_path
from qsmbench.runs.write import replace_atomically

HEARTBEAT_EVERY_S = 30.0  # seconds between rewrites of a held claim's record
CLAIM_TIMEOUT_S = 300.0  # a claim of another host not written for longer than this was left by a dead holder
HOLDER_VARIABLE = "QSMBENCH_HOLDER"  # names the holder in the record (the Ray driver sets it for its tasks)
HOLDER_MAX_CHARS = 200  # a longer holder name is cut: the record stays small
RECORD_MAX_BYTES = 64 * 1024  # a larger record file is not one of ours
JSON_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}
NO_FLOCK = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)  # what flock says on a filesystem without it


@dataclass(frozen=True)
class ClaimRecord:
    """Who holds (or last held) a run directory, and how far its run was at its last heartbeat."""

    holder: str
    host: str
    pid: int
    started: float  # unix time, by the holder's clock
    heartbeat: float  # unix time of the last rewrite, by the holder's clock
    step: int = 0
    steps: int = 0
    released: bool = False
    written: float = dataclasses.field(default=0.0, compare=False)  # the file's mtime as read (not stored)

    def document(self) -> dict[str, Any]:
        """The record as stored: every field but `written`, which the file server keeps as the file's mtime."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if field.name != "written"}

    @classmethod
    def parse(cls, document: object, written: float) -> ClaimRecord | None:
        """The record in a stored document, or None when a field is missing or of the wrong type."""
        fields = {field.name: str(field.type) for field in dataclasses.fields(cls) if field.name != "written"}
        if not isinstance(document, dict) or not all(_of_type(document.get(name), kind) for name, kind in fields.items()):
            return None
        record = cls(**{name: document[name] for name in fields}, written=written)
        return record if record.pid > 0 else None

    def age(self, now: float) -> float:
        """Seconds since the record was written, `now` read from the file server's clock where it matters."""
        return max(now - self.written, 0.0)

    def stale(self, now: float) -> bool:
        return self.age(now) > CLAIM_TIMEOUT_S

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

    def holds(self, now: float, flock_held: bool) -> bool:
        """Whether this record keeps the directory claimed from a launcher that got `flock` (or found none).
        Where `flock` was granted, a holder on this host is gone (the kernel dropped its lock); without
        `flock`, one whose process lives still writes."""
        if self.released or self.stale(now):
            return False
        return self.host != socket.gethostname() or (not flock_held and self.alive_here() is not False)

    def describe(self, now: float) -> str:
        """'slurm job 7_3 on host n12, pid 4242, step 300,000 of 1,000,000, heartbeat 12 s ago'."""
        progress = f", step {self.step:,} of {self.steps:,}" if self.steps else ""
        return f"{self.holder} on host {self.host}, pid {self.pid}{progress}, heartbeat {format_duration(self.age(now))} ago"

    def state(self, now: float) -> str:
        """The claim as `--dry-run` shows it: held, or why it no longer counts."""
        if self.released:
            return "released"
        if self.alive_here() is False:
            return f"left by a dead process: {self.describe(now)}"
        if self.stale(now):
            return f"no heartbeat for {format_duration(self.age(now))}, taken over by the next launcher: {self.describe(now)}"
        return f"claimed by {self.describe(now)}"


def _of_type(value: object, kind: str) -> bool:
    """Whether a JSON value has a record field's type (`kind` as the dataclass spells it): a bool is no number
    (JSON's `true` is not 1), an int is a float, and a float is finite (Python's JSON reads `NaN`)."""
    if isinstance(value, bool) != (kind == "bool"):
        return False
    return isinstance(value, JSON_TYPES[kind]) and (not isinstance(value, float) or math.isfinite(value))


def holder_label() -> str:
    """What holds a claim, for people: $QSMBENCH_HOLDER, else the Slurm array task or job, else the user's run;
    cut to HOLDER_MAX_CHARS."""
    return _holder()[:HOLDER_MAX_CHARS]


def _holder() -> str:
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
    """The held claim of one run directory. A thread rewrites its record every `heartbeat_every` seconds with
    the latest step `beat` gave it, until `release` (or exit) gives the claim up."""

    def __init__(self, directory: Path, descriptor: int, record: ClaimRecord, takeover: str | None, heartbeat_every: float):
        self.directory, self.descriptor, self.record = directory, descriptor, record
        self.step, self.takeover = record.step, takeover
        self.turn = threading.RLock()  # the heartbeat and `release` write the record one at a time
        self.released = threading.Event()
        self.beater = threading.Thread(
            target=beat_until_released, args=(weakref.ref(self), self.released, heartbeat_every),
            name=f"qsmbench claim heartbeat of {directory}", daemon=True,
        )
        self.beater.start()

    def takeover_note(self) -> str | None:
        """A line for the user when this claim replaced another host's whose heartbeat had stopped."""
        return self.takeover

    def beat(self, step: int) -> None:
        """Note the run's step for the next heartbeat: the training loop calls it every step, so it only stores."""
        self.step = step

    def heartbeat(self) -> None:
        """Rewrite the record with the latest step, unless the claim is released (then nothing is written again)."""
        with self.turn:
            if self.descriptor >= 0:
                self.record = dataclasses.replace(self.record, step=self.step, heartbeat=time.time())
                write_record(self.directory, self.record)

    def release(self) -> None:
        """Say `released` in the record, drop the flock, and wait for the heartbeat thread to end."""
        with self.turn:
            if self.descriptor < 0:
                return
            self.released.set()
            self.record = dataclasses.replace(self.record, step=self.step, heartbeat=time.time(), released=True)
            with contextlib.suppress(OSError):  # the claim is given up by closing, whatever the record says
                write_record(self.directory, self.record)
            os.close(self.descriptor)  # closing the last descriptor releases the flock
            self.descriptor = -1
        if self.beater is not threading.current_thread():
            self.beater.join()

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def beat_until_released(claim: weakref.ref[RunClaim], released: threading.Event, every: float) -> None:
    """The heartbeat thread's loop. It holds its claim weakly, so that a claim dropped without `release` is
    still collected (and released). A write that fails (a full disk) is tried again at the next beat."""
    while not released.wait(every):
        held = claim()
        if held is None:
            return
        with contextlib.suppress(OSError):
            held.heartbeat()
        del held


def claim_run_dir(directory: Path, steps: int = 0, heartbeat_every: float = HEARTBEAT_EVERY_S) -> RunClaim:
    """Claim the run directory (creating it) for a run of `steps`; RunLocked names the live holder."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = open_lock(directory)
    try:
        flock_held = take_flock(descriptor, directory)
        previous, now = read_claim(directory), server_now(descriptor)
        if previous is not None and previous.holds(now, flock_held):
            raise RunLocked(refusal(directory, previous, now))
        record = ClaimRecord(holder_label(), socket.gethostname(), os.getpid(), time.time(), time.time(), steps=steps)
        write_record(directory, record)
    except BaseException:
        os.close(descriptor)
        raise
    foreign = previous is not None and previous.host != record.host and not previous.released
    takeover = f"took over {directory} from {previous.describe(now)}: its heartbeat had stopped" if foreign else None
    return RunClaim(directory, descriptor, record, takeover, heartbeat_every)


def refusal(directory: Path, holder: ClaimRecord, now: float) -> str:
    """Why the record `holder` keeps `directory` claimed, in one line."""
    if holder.host != socket.gethostname():
        return (
            f"{directory} is claimed by {holder.describe(now)} from another host; if that holder died, "
            f"its claim is taken over once its heartbeat is {format_duration(CLAIM_TIMEOUT_S)} old"
        )
    return (
        f"{directory} is being written by {holder.describe(now)} (this filesystem has no flock); "
        "wait for it to finish or stop it, then run again"
    )


def open_lock(directory: Path) -> int:
    """The lock file's descriptor, opened (created) without following a link; ConfigError names a file that
    is a link, or not a regular file, or cannot be opened."""
    path = lock_path(directory)
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ConfigError(f"{path} is a symbolic link; qsmbench writes through no link in a results directory: remove it") from None
        raise ConfigError(f"cannot open {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise ConfigError(f"{path} is not a regular file; remove it")
    return descriptor


def take_flock(descriptor: int, directory: Path) -> bool:
    """Take the exclusive flock (True), or learn that the filesystem has none (False); RunLocked names its holder."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = read_claim(directory)
        held_by = holder.describe(server_now(descriptor)) if holder else "another qsmbench run (holder not yet recorded)"
        raise RunLocked(f"{directory} is being written by {held_by}; wait for it to finish or stop it, then run again") from None
    except OSError as error:
        if error.errno not in NO_FLOCK:
            raise
        return False
    return True


def server_now(descriptor: int) -> float:
    """Now, by the clock that stamps the records' mtimes (the file server's): the mtime of the lock file
    touched just now; this host's clock where the file cannot be touched."""
    try:
        os.utime(descriptor)
        return os.fstat(descriptor).st_mtime
    except OSError:
        return time.time()


def write_record(directory: Path, record: ClaimRecord) -> None:
    """Replace the record whole: a reader finds the last record or this one, never a part."""
    data = json.dumps(record.document()).encode()
    replace_atomically(claim_path(directory), lambda handle: handle.write(data))


def read_claim(directory: Path) -> ClaimRecord | None:
    """The claim record of a run directory, read without taking anything (also for `--dry-run`); None when
    there is none, or it is a link, or it cannot be read as a record."""
    try:
        descriptor = os.open(claim_path(directory), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        try:
            status = os.fstat(descriptor)
            data = handle.read(RECORD_MAX_BYTES + 1) if stat.S_ISREG(status.st_mode) else b""
            return ClaimRecord.parse(json.loads(data), status.st_mtime) if 0 < len(data) <= RECORD_MAX_BYTES else None
        except (OSError, ValueError, RecursionError):  # RecursionError: deeply nested JSON
            return None
