"""DIPO's update rule against the official update written out (official_dipo.py), and its parts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from official_dipo import Diffusion, Model, OfficialDiPo, Transitions, assert_same_weights
from support import CPU, assert_learns_pendulum, fill_replay, make_batch

from qsmbench.algorithms import ALGORITHMS
from qsmbench.algorithms.contract import Batch
from qsmbench.algorithms.dipo import DIPO, DIPOConfig, improve_actions
from qsmbench.training.replay import make_replay

OBS_DIM, ACT_DIM, BATCH = 3, 2, 8
TINY = DIPOConfig(hidden_sizes=(16, 16, 16), actor_hidden_sizes=(16, 16, 16), time_hidden=16, diffusion_steps=10)


def agent_with_replay(config: DIPOConfig, seeds: int = 1) -> DIPO:
    agent = DIPO(OBS_DIM, ACT_DIM, list(range(seeds)), CPU, config)
    fill_replay(make_replay(ALGORITHMS["dipo"], agent, seeds, 32, OBS_DIM, ACT_DIM, CPU), 32)
    return agent


def official_batch(batch: Batch, gamma: float) -> Transitions:
    """Seed 0 of `batch` as the official ReplayMemory hands it out: masks are gamma, or 0 at a terminal."""
    return Transitions(
        batch.obs[0], batch.action[0], batch.reward[0].unsqueeze(-1), batch.next_obs[0],
        (gamma * (1 - batch.terminated[0])).unsqueeze(-1),
    )


@pytest.mark.parametrize("keep", [False, True], ids=["official-memory", "kept-improved-actions"])
def test_updates_match_the_official_update_written_out(keep: bool) -> None:
    """Critic, action gradient, denoiser and both targets after three updates, drawing the same random numbers."""
    config = dataclasses.replace(TINY, keep_improved_actions=keep, actor_target_every=2, tau=0.5)  # targets that show
    agent = agent_with_replay(config)
    replay = agent.replay
    memory_states, memory_actions = replay.transitions_at(torch.arange(32).unsqueeze(0)).obs[0], replay.action[0].clone()
    official = OfficialDiPo(agent, config, ACT_DIM)
    for update in range(3):
        batch = make_batch(1, OBS_DIM, ACT_DIM, BATCH, generator_seed=update)
        torch.manual_seed(update)
        agent.update(batch)
        torch.manual_seed(update)
        improved = official.train(official_batch(batch, config.gamma), memory_states, memory_actions)
        if keep:  # what the paper means and DiffusionMemory.replace does not do: the memory keeps them
            torch.manual_seed(update)
            official_index = _draw_like_the_update(config, BATCH, replay.size)
            memory_actions[official_index] = improved
    for ours, theirs in [
        (agent.critic, official.critic), (agent.critic_target, official.critic_target),
        (agent.denoiser, official.actor.model), (agent.denoiser_target, official.actor_target.model),
    ]:
        assert_same_weights(ours, theirs)
    if keep:
        torch.testing.assert_close(replay.improved_action[0], memory_actions)
    else:
        assert replay.improved_action is None


def _draw_like_the_update(config: DIPOConfig, batch_size: int, size: int) -> torch.Tensor:
    """The memory indices an update draws: after the target chain's normals (T of them), one randint."""
    for _ in range(config.diffusion_steps):
        torch.randn(batch_size, ACT_DIM)
    return torch.randint(0, size, (batch_size,))


class Quadratic(torch.nn.Module):
    """Twin critics `Q_j(s, a) = -c_j ||a - a*||^2`, as qsmbench (`[seeds, 2, n]`) or the official code (q1, q2) calls them."""

    def __init__(self, optimum: torch.Tensor, scales: tuple[float, float], official: bool = False):
        super().__init__()
        self.optimum, self.scales, self.official = optimum, scales, official

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        distance = ((action - self.optimum) ** 2).sum(-1, keepdim=True)
        if self.official:
            return -self.scales[0] * distance, -self.scales[1] * distance
        return torch.cat([-scale * distance for scale in self.scales], dim=-1).transpose(-1, -2)


@pytest.mark.parametrize("ratio", [0.0, 0.05, 1.0], ids=["no-clip", "clip-binds-early", "clip-never-binds"])
def test_the_action_gradient_is_the_official_one(ratio: float) -> None:
    """Adam is blind to a constant gradient scale, so the clip shows only where it binds on some steps and not
    on others: far from the optimum the gradient's norm exceeds ratio * d, close to it not."""
    config = dataclasses.replace(TINY, action_grad_ratio=ratio, action_gradient_steps=40)
    agent = agent_with_replay(config)
    optimum = torch.tensor([0.3, -0.2])
    agent.critic = Quadratic(optimum, (0.5, 0.3))
    official = OfficialDiPo(agent_with_replay(config), config, ACT_DIM)
    official.critic = Quadratic(optimum, (0.5, 0.3), official=True)
    official.action_grad_norm = official.action_grad_norm or float("inf")  # the official code skips the clip at 0
    torch.manual_seed(0)
    _, improved, _ = agent.action_gradient(BATCH)
    torch.manual_seed(0)
    drawn = agent.replay.sample(BATCH)
    torch.testing.assert_close(improved[0], official.action_gradient(drawn.obs[0], drawn.action[0]), atol=1e-6, rtol=0)


def test_evaluation_runs_the_chain_without_step_noise_and_exploration_with_it() -> None:
    agent = DIPO(OBS_DIM, ACT_DIM, [0], CPU, TINY)
    official = Diffusion(Model(agent.denoiser), TINY.diffusion_steps, 1.0)
    obs = torch.randn(1, 6, OBS_DIM)
    for explore, ratio in [(False, 0.0), (True, 1.0)]:
        torch.manual_seed(3)
        ours = agent.act(obs, explore=explore)
        torch.manual_seed(3)
        theirs = official.sample(obs[0], noise_ratio=ratio)
        torch.testing.assert_close(ours[0], theirs, atol=1e-5, rtol=1e-4)


def test_action_gradient_climbs_to_the_critics_optimum_in_steps_of_the_action_learning_rate() -> None:
    """Q = -||a - a*||^2 per critic: Adam climbs to a*; its first step moves a coordinate by lr whatever the
    (clipped) gradient's scale, less only where the gradient is within a few eps of 0."""
    critic = Quadratic(torch.tensor([0.5, -0.25]), (1.0, 1.0))
    action = (torch.rand(2, 64, 2) * 2 - 1) * 0.9
    improved = improve_actions(critic, torch.zeros(2, 64, 1), action, steps=200, lr=0.03, max_norm=0.2)
    assert (improved - critic.optimum).norm(dim=-1).max() < 0.05
    one_step = improve_actions(critic, torch.zeros(2, 64, 1), action, steps=1, lr=0.03, max_norm=0.2)
    moved = (one_step - action).abs()
    assert moved.max() <= 0.03 + 1e-6 and moved.median() == pytest.approx(0.03, abs=3e-4)
    assert improved.abs().max() <= 1.0


def test_defaults_follow_the_official_code() -> None:
    config = DIPOConfig()
    assert (config.diffusion_steps, config.schedule, config.noise_ratio, config.exploration_noise) == (100, "cosine", 1.0, 0.0)
    assert (config.action_lr, config.action_gradient_steps, config.action_grad_ratio) == (0.03, 20, 0.1)
    assert (config.actor_lr, config.critic_lr, config.max_grad_norm, config.actor_target_every) == (3e-4, 3e-4, 2.0, 1)
    assert config.hidden_sizes == config.actor_hidden_sizes == (256, 256, 256)
    assert (config.time_features, config.time_hidden, config.keep_improved_actions) == (32, 256, False)
    assert (config.batch_size, config.warmup_steps, config.tau, config.gamma) == (256, 10_000, 0.005, 0.99)


def test_weights_are_normal_with_std_half_over_root_fan_in_and_biases_zero() -> None:
    """agent/helpers.py init_weights: N(0, 1/(4 fan_in)); its truncation never reaches the layer."""
    agent = DIPO(OBS_DIM, ACT_DIM, [0], CPU, dataclasses.replace(TINY, hidden_sizes=(512, 512, 512)))
    layer = agent.critic.mlp.layers[1]
    std = 1 / (2 * 512**0.5)
    assert abs(layer.weight.std().item() / std - 1) < 0.01
    assert (layer.weight.abs() > 2 * std).float().mean() > 0.03  # about 4.6% lie beyond two stds: not truncated
    assert torch.count_nonzero(layer.bias) == 0


def test_a_kept_improved_action_memory_starts_as_the_actions_taken() -> None:
    agent = agent_with_replay(dataclasses.replace(TINY, keep_improved_actions=True), seeds=2)
    torch.testing.assert_close(agent.replay.improved_action, agent.replay.action)


@pytest.mark.slow
def test_learns_pendulum(tmp_path: Path) -> None:
    """The paper's variant (improved actions kept) with a 5-step chain, 5 action-gradient steps, faster
    learning rates and no gradient clip, so that 7,000 steps fit CI: at the official rates and 10 steps
    it needs about 10,000 (the tries are in docs/benchmarks.md). The update rule is the official one."""
    small = ["hidden_sizes=64,64", "actor_hidden_sizes=64,64", "time_hidden=64", "diffusion_steps=5"]
    faster = ["keep_improved_actions=true", "action_gradient_steps=5", "actor_lr=1e-3", "action_lr=0.1", "max_grad_norm=0"]
    assert_learns_pendulum("dipo", tmp_path, steps=7000, overrides=["warmup_steps=1000", *small, *faster])
