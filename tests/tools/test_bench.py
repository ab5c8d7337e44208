"""`qsmbench bench`: measured speeds and operator counts, appended with their provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import run_cli


def test_bench_appends_one_measurement_per_algorithm_and_seed_count(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Every measurement is a positive rate with the operator counts and where it was taken; a second call
    appends. A seed-batched update launches as many operators for 2 seeds as for 1."""
    out = tmp_path / "bench.jsonl"
    args = ["bench", "--algos", "td3,qsm", "--seeds", "1,2", "--calls", "2", "--env", "Pendulum-v1", "--device", "cpu"]
    first = run_cli([*args, "--out", str(out)], capfd)
    assert first.returncode == 0, first.stderr
    assert "appended 4 results" in first.stdout and "qsmbench bench: Pendulum-v1 on cpu" in first.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["algo"], line["seeds"]) for line in lines] == [("td3", 1), ("td3", 2), ("qsm", 1), ("qsm", 2)]
    for line in lines:
        assert min(line[key] for key in ("env_sps", "act_per_s", "update_per_s", "loop_sps")) > 0
        assert line["update_operators"] > line["act_operators"] > 0
        assert line["device"] == "cpu" and line["provenance"]["git_commit"] and line["provenance"]["versions"]["torch"]
        assert line["compiled"] is False
    for algo in ("td3", "qsm"):
        one, two = (line["update_operators"] for line in lines if line["algo"] == algo)
        assert abs(one - two) <= 0.05 * one, f"{algo}: operators should not grow with seeds ({one} vs {two})"
    assert run_cli([*args[:2], "td3", "--seeds", "1", "--calls", "1", "--env", "Pendulum-v1", "--out", str(out)], capfd).returncode == 0
    assert len(out.read_text().splitlines()) == 5


@pytest.mark.parametrize(
    ("args", "said"),
    [(["--seeds", "0"], "--seeds needs whole numbers of at least 1"), (["--seeds", "one"], "--seeds must be comma-separated"),
     (["--algos", "ppo"], "unknown algorithm 'ppo'"), (["--env", "Hoper-v4"], "Hoper-v4"), (["--calls", "0"], "--calls at least 1"),
     (["--compile", "--device", "cpu"], "--compile is for CUDA")],
)
def test_bad_bench_options_are_one_line(args: list[str], said: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    result = run_cli(["bench", "--out", str(tmp_path / "bench.jsonl"), *args], capfd)
    assert result.returncode == 2 and said in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bench.jsonl").exists()
