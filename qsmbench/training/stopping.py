"""Stopping a run cleanly on a signal: finish the step, write a checkpoint, mark the files, exit.

While a run trains, SIGINT (Ctrl-C), SIGTERM (what schedulers send before a kill) and SIGUSR1 (what
Slurm sends ahead of a time limit with `--signal=USR1@120`) only set a flag; the training loop looks
at it after every step, so the checkpoint it then writes is taken between two steps, where the state
is whole. A second Ctrl-C stops at once (the last periodic checkpoint stays, or during the final writes
the last step's); a second SIGTERM or SIGUSR1 is ignored, so it cannot cut the final writes short.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class Stopped(KeyboardInterrupt):
    """A run stopped by a signal after writing its checkpoint at `step`."""

    def __init__(self, signum: int, step: int):
        super().__init__(signum, step)
        self.signum, self.step = signum, step

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


class StopSignals:
    """A context in which the stop signals set `received` instead of interrupting (main thread only:
    elsewhere Python delivers no signals, and nothing is installed). A signal the process was started
    ignoring (SIGINT in a job a shell put in the background) stays ignored."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            chosen = [signum for signum in STOP_SIGNALS if signal.getsignal(signum) is not signal.SIG_IGN]
            self._previous = {signum: signal.signal(signum, self._handle) for signum in chosen}
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
