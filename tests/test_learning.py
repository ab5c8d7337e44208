"""Learning on a small task: SAC, TD3, QSM and Diffusion-QL solve Pendulum-v1 within a CI-sized budget.

A random policy scores about -1200 on Pendulum-v1 and a solved one about -150; a mean evaluation
return above -400 over the last two evaluations means the swing-up was learned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from algorithms import ALGORITHMS
from qsmbench.config import RunConfig, apply_overrides
from qsmbench.progress import PlainReporter
from qsmbench.storage import read_run
from qsmbench.trainer import Trainer, prepare

SOLVED = -400.0
STEPS = {"sac": 6000, "td3": 10_000, "qsm": 6000, "dql": 6000}  # TD3's delayed, noise-driven actor swings up later
SMALL_NETS = ["hidden_sizes=128,128", "actor_hidden_sizes=128,128"]  # so the test fits CI; update rules unchanged
OVERRIDES = {
    "sac": ["warmup_steps=1000"],
    "td3": ["warmup_steps=1000"],
    "qsm": ["warmup_steps=1000", *SMALL_NETS],
    # the BC-free variant: with the default BC weight the normalised Q term moves the policy slowly
    # on Pendulum (still -1171 after 6,000 steps; docs/benchmarks.md)
    "dql": ["warmup_steps=1000", *SMALL_NETS, "bc_weight=0"],
}


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["sac", "td3", "qsm", "dql"])
def test_learns_pendulum(algo: str, tmp_path: Path) -> None:
    run = RunConfig(
        algo=algo, env="Pendulum-v1", seeds=2, steps=STEPS[algo], eval_every=1000, eval_episodes=5, device="cpu",
        out=str(tmp_path),
    )
    config = apply_overrides(ALGORITHMS[algo].config_cls(), OVERRIDES[algo])
    prepared = prepare(run, config, overwrite=False)
    Trainer(prepared, PlainReporter(algo, run.seed_values, run.steps)).train()
    curves = [read_run(path)[0] for path in prepared.paths]
    final = np.mean([curve["eval_return"].iloc[-2:].mean() for curve in curves])
    mean_curve = np.mean([curve["eval_return"].to_numpy() for curve in curves], axis=0).round()
    assert final > SOLVED, f"{algo} did not learn Pendulum-v1: mean eval returns {mean_curve.tolist()}"
