"""Exit codes and how a stop or a signal becomes one line and one of them (see qsmbench.cli for the table)."""

from __future__ import annotations

import signal
import sys

import typer

from qsmbench.training.stopping import Stopped

EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 3, 130, 143
EXIT_CHECKPOINTED = 75  # stopped by SIGTERM or SIGUSR1 with a checkpoint written: requeue and run again


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGUSR1 outside training, raised in the main thread: handled like Ctrl-C."""


def raise_terminated(_signum: int, _frame: object) -> None:
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the final writes short
    raise Terminated


def interrupted(interrupt: KeyboardInterrupt, kept: str) -> typer.Exit:
    """One line saying what stopped us and what was kept, and the exit code that tells the cases apart."""
    if isinstance(interrupt, Stopped):
        print(
            f"qsmbench: stopped by {interrupt.signal_name} at step {interrupt.step:,} with a checkpoint written; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return typer.Exit(EXIT_INTERRUPTED if interrupt.signum == signal.SIGINT else EXIT_CHECKPOINTED)
    cause = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
    print(f"qsmbench: {cause}; {kept}", file=sys.stderr)
    return typer.Exit(EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED)
