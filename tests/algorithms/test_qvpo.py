"""QVPO's update rule against the official update written out (official_dipo.py), and its parts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from official_dipo import OfficialQVPO, Transitions, assert_same_weights
from support import CPU, assert_learns_pendulum, fill_replay, make_batch

from qsmbench.algorithms import ALGORITHMS
from qsmbench.algorithms.qvpo import QVPO, QVPOConfig
from qsmbench.training.replay import make_replay

OBS_DIM, ACT_DIM, BATCH = 3, 2, 8
TINY = QVPOConfig(
    hidden_sizes=(16, 16, 16), actor_hidden_sizes=(16, 16, 16), time_hidden=16, diffusion_steps=6, train_samples=8,
)


def agent_with_replay(config: QVPOConfig, seeds: int = 1) -> QVPO:
    agent = QVPO(OBS_DIM, ACT_DIM, list(range(seeds)), CPU, config)
    fill_replay(make_replay(ALGORITHMS["qvpo"], agent, seeds, 32, OBS_DIM, ACT_DIM, CPU), 32)
    return agent


def test_updates_match_the_official_update_written_out() -> None:
    """Three updates, drawing the same random numbers; the entropy weight decays over a short budget to show."""
    config = dataclasses.replace(  # targets, entropy weight and critics that move enough to show
        TINY, tau=0.5, warmup_steps=10, entropy_decay_steps=20, entropy_weight=0.5, critic_lr=0.03, target_samples=16
    )
    agent = agent_with_replay(config)
    memory_states = agent.replay.transitions_at(torch.arange(32).unsqueeze(0)).obs[0]
    official = OfficialQVPO(agent, config)
    for update in range(3):
        batch = make_batch(1, OBS_DIM, ACT_DIM, BATCH, generator_seed=update)
        torch.manual_seed(update)
        agent.update(batch)
        torch.manual_seed(update)
        masks = (config.gamma * (1 - batch.terminated[0])).unsqueeze(-1)
        transitions = Transitions(batch.obs[0], batch.action[0], batch.reward[0].unsqueeze(-1), batch.next_obs[0], masks)
        official.train(transitions, memory_states, steps=config.warmup_steps + update)
        assert agent.entropy_weight() == pytest.approx(official.entropy_alpha)
    for ours, theirs in [
        (agent.critic, official.critic), (agent.critic_target, official.critic_target),
        (agent.denoiser, official.actor.model), (agent.denoiser_target, official.actor_target.model),
    ]:
        assert_same_weights(ours, theirs)


@pytest.mark.parametrize("explore", [True, False], ids=["explore", "evaluate"])
def test_acting_is_the_best_of_several_noisy_chain_samples_by_the_critics(explore: bool) -> None:
    agent = QVPO(OBS_DIM, ACT_DIM, [0], CPU, TINY)
    official = OfficialQVPO(agent, TINY)
    obs = torch.randn(1, 5, OBS_DIM)
    torch.manual_seed(1)
    ours = agent.act(obs, explore=explore)
    torch.manual_seed(1)
    samples = TINY.behavior_samples if explore else TINY.eval_samples
    theirs = official.best_of(official.actor, official.critic, obs[0], samples)[0]
    torch.testing.assert_close(ours[0], theirs, atol=1e-5, rtol=1e-4)


def test_the_entropy_weight_decays_linearly_with_the_steps_to_its_floor() -> None:
    """main.py: after the update at environment step s, lambda = min(w0, max(0.002, w0 - s / num_steps w0))."""
    agent = QVPO(OBS_DIM, ACT_DIM, [0], CPU, dataclasses.replace(TINY, warmup_steps=100, entropy_decay_steps=1000))
    weights = []
    for updates in (0, 1, 401, 801, 900, 5000):
        agent.updates = updates
        weights.append(agent.entropy_weight())
    assert weights == pytest.approx([0.02, 0.018, 0.01, 0.002, 0.002, 0.002])


def test_defaults_follow_the_official_code() -> None:
    config = QVPOConfig()
    assert (config.diffusion_steps, config.schedule, config.actor_lr, config.critic_lr) == (20, "cosine", 1e-4, 3e-4)
    samples = (config.train_samples, config.behavior_samples, config.target_samples, config.eval_samples)
    assert samples == (64, 4, 4, 32)
    assert (config.entropy_weight, config.entropy_weight_min, config.entropy_decay_steps, config.entropy_samples) == (
        0.02, 0.002, 1_000_000, 10,
    )
    assert (config.noise_ratio, config.exploration_noise, config.max_grad_norm, config.actor_target_every) == (1.0, 0.0, 2.0, 1)
    assert config.hidden_sizes == config.actor_hidden_sizes == (256, 256, 256)
    assert (config.time_features, config.time_hidden, config.batch_size, config.warmup_steps) == (32, 256, 256, 10_000)


def test_the_policy_loss_weighs_the_best_sample_by_its_advantage_over_the_mean() -> None:
    """With a critic that ranks all samples equally the Q-weights vanish, and so does the loss."""
    agent = agent_with_replay(TINY)
    last = agent.critic.mlp.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
    loss, weight = agent.update_actor(torch.randn(1, BATCH, OBS_DIM))
    assert torch.count_nonzero(loss) == 0 and torch.count_nonzero(weight) == 0


@pytest.mark.slow
def test_learns_pendulum(tmp_path: Path) -> None:
    """A 5-step chain, the best of 4 samples per state instead of 64, lambda decaying over the run, a faster
    denoiser and no gradient clip, so that 6,000 steps fit CI: with the clip and the official rate it needs
    about 10,000 (the tries are in docs/benchmarks.md). The update rule is the official one."""
    small = ["hidden_sizes=64,64", "actor_hidden_sizes=64,64", "time_hidden=64", "diffusion_steps=5", "train_samples=4"]
    faster = ["entropy_decay_steps=6000", "actor_lr=3e-4", "max_grad_norm=0"]
    assert_learns_pendulum("qvpo", tmp_path, steps=6000, overrides=["warmup_steps=1000", *small, *faster])
