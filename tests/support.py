"""Helpers for test files: hand-made batches, small configs, and the learning check on Pendulum-v1.

Imported by name (`from support import ...`): pytest puts this folder on sys.path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from qsmbench.algorithms import ALGORITHMS, Agent
from qsmbench.config import OffPolicyConfig, RunConfig
from qsmbench.progress import PlainReporter
from qsmbench.replay import Batch
from qsmbench.spec import make_spec
from qsmbench.storage import read_run
from qsmbench.trainer import train

CPU = torch.device("cpu")
PENDULUM_SOLVED = -400.0  # a random policy scores about -1200 on Pendulum-v1, a solved one about -150


def make_batch(seeds: int, obs_dim: int = 3, act_dim: int = 2, batch: int = 16, generator_seed: int = 0) -> Batch:
    """Random transitions `[seeds, batch, ...]`, about 30% of them terminal."""
    g = torch.Generator().manual_seed(generator_seed)
    return Batch(
        obs=torch.randn(seeds, batch, obs_dim, generator=g),
        action=torch.rand(seeds, batch, act_dim, generator=g) * 2 - 1,
        reward=torch.randn(seeds, batch, generator=g),
        next_obs=torch.randn(seeds, batch, obs_dim, generator=g),
        terminated=(torch.rand(seeds, batch, generator=g) < 0.3).float(),
    )


def constant_critic_(critic: torch.nn.Module, value: float) -> None:
    """Make a QEnsemble output `value` everywhere: zero last-layer weights, constant bias."""
    last = critic.mlp.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(value)


def assert_deterministic_evaluation(agent: Agent, obs_dim: int) -> None:
    """The evaluation action is a function of the state; the exploration action is not."""
    obs = 10 * torch.randn(3, 5, obs_dim)
    assert torch.equal(agent.act(obs, explore=False), agent.act(obs, explore=False))
    assert not torch.equal(agent.act(obs, explore=True), agent.act(obs, explore=True))


def small_overrides(algo: str) -> list[str]:
    """Overrides that shrink every network of `algo` to 32-32 (the update rule is unchanged)."""
    fields = {field.name for field in dataclasses.fields(ALGORITHMS[algo].config_cls)}
    return [f"{name}=32,32" for name in ("hidden_sizes", "actor_hidden_sizes") if name in fields]


def small_config(algo: str) -> OffPolicyConfig:
    return make_spec(algo, RunConfig(env="Pendulum-v1"), small_overrides(algo)).config


def assert_learns_pendulum(algo: str, out: Path, steps: int, overrides: Sequence[str]) -> None:
    """Train 2 seeds on Pendulum-v1; the mean of their last two evaluations must beat PENDULUM_SOLVED."""
    run = RunConfig(env="Pendulum-v1", seeds=2, steps=steps, eval_every=1000, eval_episodes=5, device="cpu", out=str(out))
    trainer = train(make_spec(algo, run, overrides), PlainReporter(algo, run.seed_values, run.steps))
    curves = [read_run(path).curve for path in trainer.files.paths]
    final = np.mean([curve["eval_return"].iloc[-2:].mean() for curve in curves])
    mean_curve = np.mean([curve["eval_return"].to_numpy() for curve in curves], axis=0).round()
    assert final > PENDULUM_SOLVED, f"{algo} did not learn Pendulum-v1: mean eval returns {mean_curve.tolist()}"
