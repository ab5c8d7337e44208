"""SAC's update rule on hand-made batches: log-probabilities, the Bellman target, the temperature; learning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from support import CPU, assert_deterministic_evaluation, assert_learns_pendulum, constant_critic_, make_batch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from qsmbench.algorithms.sac import SAC, SACConfig

OBS_DIM, ACT_DIM = 3, 2


def test_evaluation_is_deterministic_and_exploration_stochastic() -> None:
    assert_deterministic_evaluation(SAC(OBS_DIM, ACT_DIM, [0, 1, 2], CPU, SACConfig(hidden_sizes=(16,))), OBS_DIM)


def test_sac_log_prob_matches_tanh_transformed_gaussian() -> None:
    agent = SAC(OBS_DIM, ACT_DIM, [0, 1], CPU, SACConfig(hidden_sizes=(16,)))
    obs = torch.randn(2, 64, OBS_DIM)
    torch.manual_seed(0)
    action, log_prob, _ = agent.policy(obs)
    mean, log_std = agent.actor(obs).chunk(2, dim=-1)
    std = log_std.clamp(agent.config.log_std_min, agent.config.log_std_max).exp()
    reference = TransformedDistribution(Normal(mean, std), [TanhTransform()])
    expected = reference.log_prob(action.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    assert log_prob.shape == (2, 64)
    torch.testing.assert_close(log_prob, expected, atol=2e-3, rtol=1e-4)


def test_sac_bellman_target_on_hand_made_batch() -> None:
    """y = r + gamma (1 - terminated) (Q' - alpha log pi(a'|s')), with Q' made constant."""
    config = SACConfig(hidden_sizes=(16,), gamma=0.9)
    agent = SAC(OBS_DIM, ACT_DIM, [0, 1], CPU, config)
    constant_critic_(agent.critic_target, 5.0)
    batch = make_batch(2, OBS_DIM, ACT_DIM)
    alpha = torch.tensor([[0.5], [2.0]])
    torch.manual_seed(3)
    target = agent.bellman_target(batch, alpha)
    torch.manual_seed(3)
    _, next_log_prob, _ = agent.policy(batch.next_obs)
    expected = batch.reward + 0.9 * (1 - batch.terminated) * (5.0 - alpha * next_log_prob)
    torch.testing.assert_close(target, expected)
    terminal = batch.terminated.bool()
    assert terminal.any() and torch.equal(target[terminal], batch.reward[terminal])


def test_sac_temperature_is_per_seed_and_moves_toward_target_entropy() -> None:
    """A policy far more random than the target entropy makes every seed's alpha shrink."""
    agent = SAC(OBS_DIM, ACT_DIM, [0, 1], CPU, SACConfig(hidden_sizes=(16,), temperature_lr=1e-2))
    diagnostics = agent.update(make_batch(2, OBS_DIM, ACT_DIM))
    assert agent.log_alpha.shape == (2,)
    assert diagnostics["alpha"].shape == (2,)
    assert (agent.log_alpha < 0).all()
    assert math.isclose(agent.target_entropy, -ACT_DIM)


@pytest.mark.slow
def test_learns_pendulum(tmp_path: Path) -> None:
    small = ["hidden_sizes=128,128"]  # so the test fits CI; update rule unchanged
    assert_learns_pendulum("sac", tmp_path, steps=6000, overrides=["warmup_steps=1000", *small])
