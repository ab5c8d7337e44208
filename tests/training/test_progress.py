"""The plain log lines of a run (`--quiet`, or stdout not a terminal): content, rate and ETA."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import numpy as np
import pytest
from rich.console import Console

from qsmbench.training.progress import LiveReporter, PlainReporter


def clock(monkeypatch: pytest.MonkeyPatch, readings: list[float]) -> None:
    """time.perf_counter returns `readings` in order: the reporter's timing, made exact."""
    ticks: Iterator[float] = iter(readings)
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks))


def test_plain_lines_have_steps_per_second_and_eta(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The rate is that of the steps since the previous line; the ETA is the remaining steps at that rate. Each
    seed's return is one comma-separated item without thousands separators: `[-1,200.0 -1,100.0]` read as four."""
    clock(monkeypatch, [0.0, 10.0, 20.0, 25.0])
    reporter = PlainReporter("sac Pendulum-v1", [0, 1], 10_000)
    reporter.evaluated(0, np.array([-1200.0, -1100.0]))
    for step in range(1, 1001):
        reporter.advance(step)
    reporter.evaluated(1000, np.array([-100.0, -200.0]))
    reporter.evaluated(2000, np.array([-100.0, np.nan]))
    assert capsys.readouterr().out.splitlines() == [
        "sac Pendulum-v1 step 0/10000 t=10s - steps/s ETA - eval_return mean=-1150.0 per_seed=[-1200.0, -1100.0]",
        "sac Pendulum-v1 step 1000/10000 t=20s 100 steps/s ETA 90 s eval_return mean=-150.0 per_seed=[-100.0, -200.0]",
        "sac Pendulum-v1 step 2000/10000 t=25s 200 steps/s ETA 40 s eval_return mean=-100.0 per_seed=[-100.0, diverged]",
    ]


def test_a_resumed_run_times_its_first_line_from_the_checkpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A resumed run's first report is `advance(checkpoint step)`: the first line's rate counts from there."""
    clock(monkeypatch, [0.0, 1.0, 11.0])
    reporter = PlainReporter("td3 Hopper-v4", [3], 1_000_000)
    reporter.advance(5000)
    reporter.advance(5001)
    reporter.evaluated(6000, np.array([250.0]))
    line = capsys.readouterr().out.strip()
    assert line == "td3 Hopper-v4 step 6000/1000000 t=11s 100 steps/s ETA 2.8 h eval_return mean=250.0 per_seed=[250.0]"


def test_live_returns_have_no_thousands_separators() -> None:
    """The live table shows each seed's return as the plain lines do: -1325.8, not -1,325.8."""
    reporter = LiveReporter("sac Pendulum-v1", [0, 1, 2], 10_000)
    reporter.evaluated(2000, np.array([-1325.8, -1298.1, np.nan]))
    reporter.close()
    console = Console(file=io.StringIO(), width=80)
    console.print(reporter)
    rows = [line.split() for line in console.file.getvalue().splitlines()[1:]]
    assert rows == [["0", "2,000", "-1325.8"], ["1", "2,000", "-1298.1"], ["2", "2,000", "diverged"]]
