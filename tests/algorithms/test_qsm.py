"""QSM's update rule: the critic target, the Q-score-matching step and its sign."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from support import assert_learns_pendulum
from torch import Tensor, nn

from qsmbench.algorithms.contract import Batch
from qsmbench.algorithms.qsm import QSM, QSMConfig

CPU = torch.device("cpu")
SMALL = QSMConfig(hidden_sizes=(32, 32), actor_hidden_sizes=(64, 64), time_hidden_sizes=(16, 16), time_features=16)


class QuadraticCritic(nn.Module):
    """A hand-made twin critic `Q_j(s, a) = -c_j ||a - a*||^2`, shaped `[seeds, 2, batch]`."""

    def __init__(self, optimum: Tensor, scales: tuple[float, float] = (1.0, 1.0)):
        super().__init__()
        self.optimum = optimum
        self.scales = nn.Parameter(torch.tensor(scales))

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        distance = ((action - self.optimum) ** 2).sum(-1)
        return -self.scales.view(1, 2, 1) * distance.unsqueeze(1)


def replay_batch(seeds: int, batch_size: int, obs_dim: int, act_dim: int) -> Batch:
    return Batch(
        obs=torch.zeros(seeds, batch_size, obs_dim),
        action=torch.rand(seeds, batch_size, act_dim) * 2 - 1,
        reward=torch.zeros(seeds, batch_size),
        next_obs=torch.zeros(seeds, batch_size, obs_dim),
        terminated=torch.zeros(seeds, batch_size),
    )


def test_q_score_is_the_mean_of_the_two_critics_gradients() -> None:
    agent = QSM(1, 2, [0], CPU, SMALL)
    optimum = torch.tensor([0.5, -0.5])
    agent.critic = QuadraticCritic(optimum, scales=(1.0, 3.0))
    action = torch.rand(1, 8, 2)
    score = agent.q_score(torch.zeros(1, 8, 1), action)
    torch.testing.assert_close(score, -2.0 * 2.0 * (action - optimum))  # mean of -2(a - a*) and -6(a - a*)
    assert not score.requires_grad


def test_score_matching_moves_samples_toward_the_critics_optimum() -> None:
    """Sign check: with Q(a) = -c ||a - a*||^2, a few hundred QSM actor steps pull the chain's samples to a*.

    The curvature c is small enough for alpha = 50 and the coarse T = 5 chain to contract rather
    than overshoot to the clip boundary (2 alpha c = 3).
    """
    torch.manual_seed(0)
    agent = QSM(1, 2, [0], CPU, dataclasses.replace(SMALL, actor_lr=1e-3))
    optimum = torch.tensor([0.6, -0.4])
    agent.critic = QuadraticCritic(optimum, scales=(0.02, 0.04))
    obs = torch.zeros(1, 512, 1)
    before = agent.act(obs, explore=False)
    for _ in range(300):
        agent.update_actor(replay_batch(1, 256, 1, 2))
    after = agent.act(obs, explore=False)
    distance_before = (before - optimum).norm(dim=-1).mean()
    distance_after = (after - optimum).norm(dim=-1).mean()
    assert distance_after < 0.5 * distance_before, (distance_before, distance_after)
    assert (after.mean(dim=1) - optimum).norm() < 0.3


def test_critic_target_uses_the_chain_and_the_min_of_target_critics() -> None:
    agent = QSM(1, 2, [0, 1], CPU, SMALL)
    last = agent.critic_target.mlp.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias[:, 0].fill_(4.0)
        last.bias[:, 1].fill_(2.0)
    batch = replay_batch(2, 16, 1, 2)
    batch = dataclasses.replace(batch, reward=torch.randn(2, 16), terminated=(torch.rand(2, 16) < 0.5).float())
    target = agent.bellman_target(batch)
    torch.testing.assert_close(target, batch.reward + 0.99 * (1 - batch.terminated) * 2.0)


def test_actions_and_diagnostics_have_the_seed_axis() -> None:
    agent = QSM(3, 2, [0, 1, 2], CPU, SMALL)
    obs = torch.randn(3, 5, 3)
    for explore in (True, False):
        action = agent.act(obs, explore=explore)
        assert action.shape == (3, 5, 2) and action.abs().max() <= 1.0
    diagnostics = agent.update(replay_batch(3, 16, 3, 2))
    assert set(diagnostics) == {"critic_loss", "q_mean", "actor_loss", "q_score_norm"}
    assert all(value.shape == (3,) and not value.requires_grad for value in diagnostics.values())


def test_actor_learning_rate_follows_a_cosine_decay() -> None:
    agent = QSM(1, 2, [0], CPU, dataclasses.replace(SMALL, actor_lr=1e-3, actor_lr_decay_steps=4))
    rates = []
    for _ in range(5):
        agent.update_actor(replay_batch(1, 8, 1, 2))
        rates.append(agent.actor_optimizer.param_groups[0]["lr"])
    torch.testing.assert_close(torch.tensor(rates), torch.tensor([0.85355, 0.5, 0.14645, 0.0, 0.0]) * 1e-3)


@pytest.mark.slow
def test_learns_pendulum(tmp_path: Path) -> None:
    small = ["hidden_sizes=128,128", "actor_hidden_sizes=128,128"]  # so the test fits CI; update rule unchanged
    assert_learns_pendulum("qsm", tmp_path, steps=6000, overrides=["warmup_steps=1000", *small])
