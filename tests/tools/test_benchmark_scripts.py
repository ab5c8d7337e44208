"""The scripts under benchmarks/ that docs/benchmarks.md quotes run at a tiny size: a script that no longer
matches the package's API would leave its numbers unreproducible."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def run_script(name: str, *args: str) -> str:
    """The script's output; it must exit 0."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_plot_scale_times_every_stage_of_a_tiny_tree() -> None:
    """It passed the plot settings where write_tables takes the protocol lines, and stopped with a TypeError."""
    out = run_script("plot_scale.py", "--tasks", "1", "--algos", "2", "--seeds", "2", "--evaluations", "3", "--reps", "10", "--no-figures")
    assert out.startswith("4 files, 2 groups, 10 resamples: read "), out


def test_toy_chain_reproduces_the_documented_shares() -> None:
    """Its perfect denoiser was a bare function after the sampler came to need a `NoiseModel` (time codes, a
    chain), and it stopped with an AttributeError. With 4,000 samples, alpha = 1 at T = 10 holds 16-17% near
    every optimum and alpha = 50 sends every sample to a corner (docs/benchmarks.md)."""
    out = run_script("toy_chain.py", "--steps", "10", "--alphas", "1", "50")
    held, cornered = out.splitlines()
    shares = [float(share) for share in held.split("[")[1].split("]")[0].split()]
    assert all(0.15 < share < 0.19 for share in shares) and held.endswith("in corners 0.00"), held
    assert cornered.endswith("in corners 1.00"), cornered


def test_checkpoint_cost_writes_one_checkpoint() -> None:
    out = run_script("checkpoint_cost.py", "--env", "Pendulum-v1", "--seeds", "1", "--filled", "100")
    assert out.startswith("sac Pendulum-v1 x 1 seeds, 100 steps: checkpoint "), out
