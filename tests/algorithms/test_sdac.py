"""SDAC's update rule against the official update written out (official_sdac_dpmd.py), and its parts."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import pytest
import torch
from official_sdac_dpmd import DACERPolicyNet, OfficialSDAC, QNet, linear_schedule, sdac_diffusion
from support import CPU, assert_learns_pendulum, assert_same_weights, make_batch, update_side_by_side

from qsmbench.algorithms.blocks.schedules import DiffusionSchedule
from qsmbench.algorithms.sdac import SDAC, SDACConfig
from qsmbench.algorithms.state import load_state, training_state

OBS_DIM, ACT_DIM, BATCH = 3, 2, 8
TINY = SDACConfig(
    hidden_sizes=(16, 16, 16), actor_hidden_sizes=(16, 16, 16), diffusion_steps=5, candidates=4, reverse_samples=6,
    temperature_every=2, tau=0.3, actor_lr=1e-3, actor_lr_end=1e-4, actor_lr_decay_start=1, actor_lr_decay_steps=2,
)


def run_both(config: SDACConfig, updates: int) -> tuple[SDAC, OfficialSDAC]:
    agent = SDAC(OBS_DIM, ACT_DIM, [0], CPU, config)
    official = OfficialSDAC(agent, config, ACT_DIM)
    update_side_by_side(agent, official, updates, OBS_DIM, ACT_DIM, BATCH)
    return agent, official


@pytest.mark.parametrize(
    ("updates", "overrides"), [(5, {}), (4, {"init_temperature": 0.2, "reward_scale": 10.0})], ids=["official", "sharp-weights"]
)
def test_updates_match_the_official_update_written_out(updates: int, overrides: dict) -> None:
    """Both critics, their targets, the denoiser, its EMA copy, log alpha and the denoiser's learning rate after a
    few updates drawing the same random numbers: the policy, alpha and the targets every 2nd update, with a tau
    that shows, and a learning rate that decays within the run. alpha = 0.2 makes the softmax weights 25x sharper."""
    agent, official = run_both(dataclasses.replace(TINY, **overrides), updates)
    for member, (q, target) in enumerate([(official.q1, official.target_q1), (official.q2, official.target_q2)]):
        assert_same_weights(QNet(agent.critic, member), q)
        assert_same_weights(QNet(agent.critic_target, member), target)
    assert_same_weights(DACERPolicyNet(agent.denoiser), official.policy)
    assert_same_weights(DACERPolicyNet(agent.denoiser_target), official.target_policy)
    torch.testing.assert_close(agent.log_alpha[0], official.log_alpha.detach())
    assert agent.actor_updates == official.policy_count == (updates + 1) // 2
    assert agent.actor_optimizer.param_groups[0]["lr"] == pytest.approx(
        linear_schedule(TINY.actor_lr, TINY.actor_lr_end, 2, 1, official.policy_count)
    )


def test_acting_is_the_ema_denoisers_best_candidate_and_exploration_adds_the_alpha_noise() -> None:
    """After updates that move the EMA copy away from the denoiser: evaluation is the official
    get_deterministic_action of the target policy, training its get_action clipped to [-1, 1]."""
    agent, official = run_both(dataclasses.replace(TINY, init_temperature=20.0), 3)
    obs = torch.randn(1, 6, OBS_DIM)
    for explore in (False, True):
        torch.manual_seed(3)
        ours = agent.act(obs, explore=explore)
        torch.manual_seed(3)
        theirs = official.get_action(official.target_policy, official.log_alpha.detach(), obs[0], noise=explore)
        torch.testing.assert_close(ours[0], theirs.clip(-1, 1), atol=1e-5, rtol=1e-4)
    assert (ours.abs() == 1).any()  # alpha 20: noise of std 2, clipped


def test_the_denoisers_learning_rate_decay_survives_a_checkpoint() -> None:
    """A fresh agent loaded with the training state of one 5 updates in goes on exactly as the original."""
    config = dataclasses.replace(TINY, actor_lr_decay_start=2, actor_lr_decay_steps=3)
    agent = SDAC(OBS_DIM, ACT_DIM, [0, 1], CPU, config)
    for update in range(5):
        agent.update(make_batch(2, OBS_DIM, ACT_DIM, BATCH, generator_seed=update))
    resumed = SDAC(OBS_DIM, ACT_DIM, [0, 1], CPU, config)
    load_state(resumed, copy.deepcopy(training_state(agent)))  # as saved: Adam's loaded moments would be shared
    assert resumed.actor_updates == 3
    assert resumed.actor_optimizer.param_groups[0]["lr"] == pytest.approx(linear_schedule(1e-3, 1e-4, 3, 2, 3))
    for each in (agent, resumed):
        for update in range(5, 8):
            torch.manual_seed(update)
            each.update(make_batch(2, OBS_DIM, ACT_DIM, BATCH, generator_seed=update))
    assert resumed.actor_updates == agent.actor_updates == 4
    assert resumed.actor_optimizer.param_groups[0]["lr"] == agent.actor_optimizer.param_groups[0]["lr"] == pytest.approx(4e-4)
    for mine, theirs in zip(agent.denoiser.parameters(), resumed.denoiser.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, atol=0, rtol=0)


def test_the_schedule_is_the_official_scaled_linear_schedule() -> None:
    """The porting notes' check values of relax/utils/diffusion.py for T = 20, scale 0.8, and its coefficients."""
    schedule = DiffusionSchedule.make("scaled_linear", 20, CPU)
    official = sdac_diffusion(20)
    assert schedule.betas[0].item() == pytest.approx(8e-5, rel=1e-5)
    assert schedule.betas[19].item() == pytest.approx(0.7992, rel=1e-5)
    assert schedule.alpha_hats[1].item() == pytest.approx(0.958, abs=5e-4)
    assert schedule.alpha_hats[19].item() == pytest.approx(5.27e-6, rel=1e-3)  # the notes' "1e-5" is rounded
    torch.testing.assert_close(schedule.alpha_hats, official.alphas_cumprod)
    for i, step in enumerate(schedule.reverse):
        assert step.denoised_action_scale == pytest.approx(official.sqrt_recip_alphas_cumprod[i].item(), rel=1e-6)
        assert step.denoised_eps_scale == pytest.approx(official.sqrt_recipm1_alphas_cumprod[i].item(), rel=1e-6)
        assert step.posterior_denoised_scale == pytest.approx(official.posterior_mean_coef1[i].item(), rel=1e-6)
        assert step.posterior_action_scale == pytest.approx(official.posterior_mean_coef2[i].item(), rel=1e-6, abs=1e-12)
        if i > 0:
            assert step.posterior_std == pytest.approx(math.exp(0.5 * official.posterior_log_variance_clipped[i].item()), rel=1e-5)


def test_the_chain_starts_from_half_a_standard_normal() -> None:
    """With a denoiser that predicts the noise exactly and one step, the chain returns a_T / sqrt(abar_0)
    clipped: its start is 0.5 N(0, I) (the official p_sample's)."""
    agent = SDAC(OBS_DIM, ACT_DIM, [0], CPU, dataclasses.replace(TINY, diffusion_steps=1, candidates=1))
    torch.manual_seed(0)
    start = 0.5 * torch.randn(1, 4000, ACT_DIM)
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in (agent.denoiser.mlp.layers[-1],):
            layer.weight.zero_()
            layer.bias.zero_()
        action = agent.sample(agent.denoiser, torch.zeros(1, 4000, OBS_DIM), alpha_noise=False)
    torch.testing.assert_close(action, (start / agent.schedule.alpha_hats[0].sqrt()).clamp(-1, 1))


def test_defaults_follow_the_official_code() -> None:
    config = SDACConfig()
    assert (config.diffusion_steps, config.schedule, config.time_features, config.initial_noise) == (20, "scaled_linear", 16, 0.5)
    assert config.hidden_sizes == config.actor_hidden_sizes == (256, 256, 256)
    assert (config.actor_lr, config.actor_lr_end, config.actor_lr_decay_start, config.actor_lr_decay_steps) == (
        3e-4, 3e-5, 25_000, 50_000
    )
    assert (config.critic_lr, config.temperature_lr, config.init_temperature, config.temperature_every) == (3e-4, 7e-3, 5.0, 250)
    assert (config.noise_scale, config.candidates, config.reverse_samples, config.exploration_noise) == (0.1, 32, 64, 0.0)
    assert (config.policy_delay, config.reward_scale, config.target_entropy_per_dim) == (2, 0.2, -0.9)
    assert (config.batch_size, config.tau, config.gamma) == (256, 0.005, 0.99)


@pytest.mark.slow
def test_learns_pendulum(tmp_path: Path) -> None:
    """The official update rule with 64-64 networks, the best of 4 chains of 5 steps (official 32 of 20),
    16 reverse samples per state (official 64), batches of 128 (official 256) and learning rates of 1e-3
    (official 3e-4), so that 6,000 steps fit CI (the tries are in docs/benchmarks.md)."""
    small = ["hidden_sizes=64,64", "actor_hidden_sizes=64,64", "diffusion_steps=5", "candidates=4", "reverse_samples=16",
             "batch_size=128"]
    faster = ["actor_lr=1e-3", "critic_lr=1e-3"]
    assert_learns_pendulum("sdac", tmp_path, steps=6000, overrides=["warmup_steps=1000", *small, *faster])
