"""The `qsmbench` command line: parse, validate, call. No training logic lives here.

Bad input ends with one line on stderr and exit code 2, before any result file is touched. A run
stopped by SIGTERM or SIGUSR1 (what schedulers send before a kill or a time limit) writes a checkpoint
and ends with exit code 75 (EX_TEMPFAIL: run the same command again to go on); Ctrl-C writes one too
and ends with 130; either signal outside training ends with 143 or 130. Every completed evaluation is
on disk then, the files marked `interrupted`. A run that finishes with some seeds diverged ends with 3.
"""

from __future__ import annotations

import faulthandler
import signal
import sys

import typer

from qsmbench.cli import bench, evaluate, listing, plot, reproduce, run, toy
from qsmbench.cli.app import app
from qsmbench.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, Terminated, raise_terminated
from qsmbench.core.errors import ConfigError

# The commands, in the order `qsmbench --help` lists them.
app.command()(run.run)
app.command("eval")(evaluate.eval_command)
app.command()(toy.toy)
app.command()(plot.plot)
app.command()(reproduce.reproduce)
app.command("bench")(bench.bench_command)
app.command("list")(listing.list_algorithms)


def main() -> None:
    """Entry point: map errors to one line and an exit code, never a traceback.

    `kill -USR2 <pid>` prints every thread's Python stack to stderr and lets the run go on: the
    way to see where a run that looks stuck is.
    """
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    signal.signal(signal.SIGTERM, raise_terminated)
    signal.signal(signal.SIGUSR1, raise_terminated)
    try:
        code = app(standalone_mode=False)
    except ConfigError as error:
        print(f"qsmbench: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except typer.TyperException as error:
        if error.format_message():  # empty for a bare `qsmbench`, which has printed the help
            print(f"qsmbench: error: {error.format_message()}", file=sys.stderr)
        sys.exit(error.exit_code)
    except typer.Abort as abort:  # Ctrl-C or SIGTERM outside a run: nothing was being written
        sys.exit(EXIT_TERMINATED if isinstance(abort.__cause__, Terminated) else EXIT_INTERRUPTED)
    except Exception as error:
        print(f"qsmbench: run failed: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    sys.exit(code if isinstance(code, int) else 0)
