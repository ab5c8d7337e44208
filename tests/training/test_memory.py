"""Runs that cannot fit in memory are refused up front, in a moment, with what they need (qsmbench.training.memory)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from qsmbench.core.errors import ConfigError
from qsmbench.envs.environments import env_dims
from qsmbench.runs.spec import make_spec
from qsmbench.training.memory import estimate_memory, host_available_bytes, parameter_count
from qsmbench.training.prepare import prepare


@pytest.mark.parametrize(
    ("algo", "run", "overrides", "largest"),
    [
        ("sac", {"seeds": 100_000}, [], "replay"),  # allocated for 48 s, then crashed
        ("sac", {"eval_episodes": 100_000}, [], "environments"),  # hung building 200k envs
        ("td3", {}, ["batch_size=1e9"], "update activations"),
        ("dql", {}, ["eval_candidates=1e9"], "action batch"),
        ("qsm", {}, ["time_features=1e8"], "update activations"),
        ("qvpo", {}, ["train_samples=1e7"], "sampled actions"),  # 64 per state by default
        ("dacer", {}, ["entropy_samples=1e7"], "sampled actions"),  # 200 per state every 10,000 updates
        ("qvpo", {}, ["eval_samples=1e8"], "action batch"),
    ],
)
def test_a_run_that_cannot_fit_is_refused_at_once(
    tmp_path: Path, algo: str, run: dict[str, int], overrides: list[str], largest: str
) -> None:
    spec = make_spec(algo, overrides, env="Hopper-v4", seeds=run.get("seeds", 2), device="cpu", out=str(tmp_path),
                     eval_episodes=run.get("eval_episodes", 10))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"this run needs about .+ of host memory \({largest} .+\), but .+ is available"):
        prepare(spec)
    assert time.perf_counter() - start < 10.0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("algo", ["sac", "td3", "qsm", "dql", "dipo", "qvpo", "dacer", "sdac", "dpmd"])
def test_the_paper_protocol_fits_a_24_gb_machine_on_hopper(algo: str) -> None:
    """10 seeds, 1M steps, 10 evaluation episodes, official networks: an estimate well under 24 GB."""
    spec = make_spec(algo, env="Hopper-v4", seeds=10)
    need = estimate_memory(spec, env_dims("Hopper-v4"), "Hopper-v4")
    assert 1e9 < sum(need.device.values()) + sum(need.host.values()) < 12e9


def test_parameters_are_counted_without_being_allocated() -> None:
    """A 10^8-wide time embedding is counted (not allocated): QSM's first time layer alone has 10^8 x 128 weights."""
    spec = make_spec("qsm", ["time_features=1e8"], env="Hopper-v4")
    assert parameter_count(spec, env_dims("Hopper-v4")) > 1e10


def test_host_memory_is_read_without_proc_meminfo(tmp_path: Path) -> None:
    """Without /proc/meminfo (macOS) the old fallback, sysconf's SC_AVPHYS_PAGES, does not exist either:
    every run would have crashed; the physical memory stands in for what is available."""
    assert 0 < host_available_bytes(tmp_path / "no-meminfo") <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGESIZE")
