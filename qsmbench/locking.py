"""One writer per run directory: a lock held for the whole run, released on any exit.

The lock is `flock` on `<run dir>/.qsmbench.lock`. The kernel drops it when its holder exits in any
way (an exception, SIGTERM, SIGKILL, an out-of-memory kill), so a lock file left by a dead process
is stale by construction and the next run simply takes it over; there is no timeout to tune and no
lock to clean up by hand. Linux NFS clients map `flock` onto NFS byte-range locks, so launchers on
several hosts sharing a results directory exclude each other as well.

The file also holds who took the lock (host, pid, start time), so that a second writer can be told
whose run is in the way. The file itself is never deleted: removing it while another process waits
to open it would let two processes lock two different files of the same name.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

from qsmbench.config import ConfigError

LOCK_NAME = ".qsmbench.lock"


class RunLocked(ConfigError):
    """Another live process is writing this run directory."""


class RunDirLock:
    """The held lock of one run directory; `release` (or process exit) gives it back."""

    def __init__(self, directory: Path, descriptor: int):
        self.directory, self.descriptor = directory, descriptor

    def release(self) -> None:
        if self.descriptor >= 0:
            os.close(self.descriptor)  # closing the last descriptor releases the flock
            self.descriptor = -1

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def lock_run_dir(directory: Path) -> RunDirLock:
    """Take the run directory's lock, creating the directory; RunLocked names the live holder."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(descriptor)
        os.close(descriptor)
        raise RunLocked(
            f"{directory} is being written by another qsmbench run ({holder}); "
            "wait for it to finish or stop it, then run again"
        ) from None
    _write_holder(descriptor)
    return RunDirLock(directory, descriptor)


def _write_holder(descriptor: int) -> None:
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": started})
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, record.encode(), 0)
    os.fsync(descriptor)


def _read_holder(descriptor: int) -> str:
    """'host H, pid P, started T' from the lock file; the holder may not have written it yet."""
    try:
        record = json.loads(os.pread(descriptor, 4096, 0))
        return f"host {record['host']}, pid {record['pid']}, started {record['started']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "holder not yet recorded"
