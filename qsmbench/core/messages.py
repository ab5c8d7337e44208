"""Small formatting helpers for one-line messages: counts, sizes, durations and paths."""

from __future__ import annotations

import math
from pathlib import Path


def format_bytes(size: float) -> str:
    """1234567 -> '1.23 MB', for messages."""
    units = ("B", "KB", "MB", "GB", "TB", "PB", "EB")
    exponent = min(int(math.log10(max(size, 1.0)) // 3), len(units) - 1)
    return f"{size / 1000**exponent:.3g} {units[exponent]}"


def format_duration(seconds: float) -> str:
    """45 s, 12 min, 3.4 h or 12.5 days: one unit, rounded, as a message needs no more."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 120 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def plural(count: int, noun: str) -> str:
    """`1 run`, `2 runs`, `0 runs`: a count and its noun, for every message (the nouns counted here take -s)."""
    return f"{count} {noun}{'s' * (count != 1)}"


def short_path(path: Path, keep: int = 60) -> str:
    """A path short enough for a one-line message: its start and end around an ellipsis."""
    text = str(path)
    return text if len(text) <= keep else f"{text[: keep // 2]}...{text[-keep // 2 :]}"


def quoted(value: object, keep: int = 60) -> str:
    """A value read from a file, as a one-line message quotes it: its repr, cut to `keep` characters."""
    text = repr(value)
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text):,} characters)"
