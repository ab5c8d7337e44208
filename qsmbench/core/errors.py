"""The errors qsmbench reports as one line: what the user gave (or what is on disk) cannot be used.

The CLI turns a `ConfigError` into `qsmbench: error: <message>` and exit code 2, before any result
file is touched; the subclasses say which kind of input was bad, so callers can tell them apart (the
grid skips a run that another launcher finished or holds: `CompleteRunError`, `RunLocked`).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input: reported as one line and exit code 2 by the CLI."""


class EnvError(ConfigError):
    """An env id that does not name a usable continuous-control task."""


class EnvStateError(EnvError):
    """An env that did not replay to its saved state: it is not deterministic, so it cannot resume exactly."""


class CompleteRunError(ConfigError):
    """Writing would replace a complete run, and replacing was not asked for."""


class RunLocked(ConfigError):
    """Another live launcher holds this run directory's claim."""


class CheckpointError(ConfigError):
    """A checkpoint that cannot be read, or that belongs to another run: one line, and the run is not started."""


class PolicyError(ConfigError):
    """A policy file that cannot be read, or policies that do not belong together: one line."""


class RunFileError(ValueError):
    """A file that cannot be used as a run file; the message says why, in one line. Not a ConfigError:
    readers of a results tree skip such a file with a warning instead of stopping."""
