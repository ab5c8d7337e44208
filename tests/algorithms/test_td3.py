"""TD3's update rule on hand-made batches: the smoothed Bellman target, the policy delay; learning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support import CPU, assert_deterministic_evaluation, assert_learns_pendulum, constant_critic_, make_batch

from qsmbench.algorithms.td3 import TD3, TD3Config

OBS_DIM, ACT_DIM = 3, 2


def test_evaluation_is_deterministic_and_exploration_stochastic() -> None:
    assert_deterministic_evaluation(TD3(OBS_DIM, ACT_DIM, [0, 1, 2], CPU, TD3Config(hidden_sizes=(16,))), OBS_DIM)


def test_td3_bellman_target_on_hand_made_batch() -> None:
    """With a constant target critic, the target is r + gamma (1 - terminated) c whatever the noise."""
    agent = TD3(OBS_DIM, ACT_DIM, [0, 1], CPU, TD3Config(hidden_sizes=(16,), gamma=0.95))
    constant_critic_(agent.critic_target, -2.0)
    batch = make_batch(2, OBS_DIM, ACT_DIM)
    target = agent.bellman_target(batch)
    torch.testing.assert_close(target, batch.reward + 0.95 * (1 - batch.terminated) * -2.0)


def test_td3_target_uses_the_smaller_critic() -> None:
    agent = TD3(OBS_DIM, ACT_DIM, [0], CPU, TD3Config(hidden_sizes=(16,), gamma=1.0))
    last = agent.critic_target.mlp.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias[0, 0].fill_(3.0)
        last.bias[0, 1].fill_(1.0)
    batch = make_batch(1, OBS_DIM, ACT_DIM)
    target = agent.bellman_target(batch)
    torch.testing.assert_close(target, batch.reward + (1 - batch.terminated) * 1.0)


def test_td3_actor_and_targets_update_only_every_policy_delay() -> None:
    agent = TD3(OBS_DIM, ACT_DIM, [0], CPU, TD3Config(hidden_sizes=(16,), policy_delay=2))
    actor_before = [p.clone() for p in agent.actor.parameters()]
    target_before = [p.clone() for p in agent.critic_target.parameters()]
    first = agent.update(make_batch(1, OBS_DIM, ACT_DIM))
    assert "actor_loss" not in first
    assert all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(target_before, agent.critic_target.parameters()))
    second = agent.update(make_batch(1, OBS_DIM, ACT_DIM))
    assert second["actor_loss"].shape == (1,)
    assert not all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(target_before, agent.critic_target.parameters()))


@pytest.mark.slow
def test_learns_pendulum(tmp_path: Path) -> None:
    """TD3's delayed, noise-driven actor swings up later than SAC's, hence the longer budget."""
    small = ["hidden_sizes=128,128"]  # so the test fits CI; update rule unchanged
    assert_learns_pendulum("td3", tmp_path, steps=10_000, overrides=["warmup_steps=1000", *small])
