"""DPMD's update rule against the official update written out (official_sdac_dpmd.py), and its parts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from official_sdac_dpmd import DACERPolicyNet, OfficialDPMD, QNet, linear_schedule
from support import CPU, assert_learns_pendulum, assert_same_weights, make_batch, update_side_by_side

from qsmbench.algorithms.dpmd import DPMD, DPMDConfig
from qsmbench.algorithms.sdac import SDACConfig, SDACFamilyConfig
from qsmbench.algorithms.state import training_state

OBS_DIM, ACT_DIM, BATCH = 3, 2, 8
TINY = DPMDConfig(
    hidden_sizes=(16, 16, 16), actor_hidden_sizes=(16, 16, 16), diffusion_steps=5, candidates=4,
    temperature_every=2, tau=0.3, actor_lr=1e-3, actor_lr_end=1e-4, actor_lr_decay_start=1, actor_lr_decay_steps=2,
)


@pytest.mark.parametrize(
    ("updates", "mean", "std"), [(5, 2.0, 4.0), (4, -14.0, 4.0)], ids=["precedence-shows", "clip-binds"]
)
def test_updates_match_the_official_update_written_out(updates: int, mean: float, std: float) -> None:
    """Both critics (two Adam steps per update), their targets, the denoiser, its EMA copy, log alpha, the
    running mean and std and the denoiser's learning rate after a few updates drawing the same random numbers.
    Both sides start from running stats where q - m / sigma differs from (q - m) / sigma, and, in the second
    case, where the clip at 3 binds for most weights; alpha 0.5 sharpens them."""
    config = dataclasses.replace(TINY, init_temperature=0.5)
    agent = DPMD(OBS_DIM, ACT_DIM, [0], CPU, config)
    official = OfficialDPMD(agent, config, ACT_DIM)
    agent.running_mean.fill_(mean)
    agent.running_std.fill_(std)
    official.running_mean, official.running_std = torch.tensor(mean), torch.tensor(std)
    update_side_by_side(agent, official, updates, OBS_DIM, ACT_DIM, BATCH)
    for member, (q, target) in enumerate([(official.q1, official.target_q1), (official.q2, official.target_q2)]):
        assert_same_weights(QNet(agent.critic, member), q)
        assert_same_weights(QNet(agent.critic_target, member), target)
    assert_same_weights(DACERPolicyNet(agent.denoiser), official.policy)
    assert_same_weights(DACERPolicyNet(agent.denoiser_target), official.target_policy)
    torch.testing.assert_close(agent.log_alpha[0], official.log_alpha.detach())
    torch.testing.assert_close(agent.running_mean[0], official.running_mean)
    torch.testing.assert_close(agent.running_std[0], official.running_std)
    assert agent.actor_updates == official.policy_count == (updates + 1) // 2
    assert agent.actor_optimizer.param_groups[0]["lr"] == pytest.approx(
        linear_schedule(TINY.actor_lr, TINY.actor_lr_end, 2, 1, official.policy_count)
    )


@pytest.mark.parametrize("repeat", [True, False])
def test_the_critics_take_two_adam_steps_per_update_unless_told_otherwise(repeat: bool) -> None:
    agent = DPMD(OBS_DIM, ACT_DIM, [0, 1], CPU, dataclasses.replace(TINY, repeat_critic_step=repeat))
    for update in range(3):
        agent.update(make_batch(2, OBS_DIM, ACT_DIM, BATCH, generator_seed=update))
    steps = {int(state["step"]) for state in agent.critic_optimizer.state.values()}
    assert steps == {6 if repeat else 3}


def test_the_weights_are_the_codes_and_centred_weights_the_intended() -> None:
    """q - m / sigma by default, (q - m) / sigma with centred_weights; clipped to [-3, 3], over alpha, exp'd."""
    q = torch.tensor([[-4.0, 0.0, 1.0, 10.0]])
    for centred in (False, True):
        agent = DPMD(OBS_DIM, ACT_DIM, [0], CPU, dataclasses.replace(TINY, centred_weights=centred, init_temperature=2.0))
        agent.running_mean.fill_(2.0)
        agent.running_std.fill_(4.0)
        normalised = (q - 2.0) / 4.0 if centred else q - 0.5
        torch.testing.assert_close(agent.weights(q), (normalised.clamp(-3, 3) / 2.0).exp())


def test_the_running_stats_are_saved_with_the_agent() -> None:
    state = training_state(DPMD(OBS_DIM, ACT_DIM, [0, 1], CPU, TINY))
    torch.testing.assert_close(state["running_mean"], torch.zeros(2))
    torch.testing.assert_close(state["running_std"], torch.ones(2))


def test_defaults_follow_the_official_code() -> None:
    """The settings DPMD shares with SDAC have SDAC's defaults (test_sdac checks them against the code); its own
    keep the code's precedence and its repeated critic step."""
    shared = {field.name for field in dataclasses.fields(SDACFamilyConfig)}
    dpmd, sdac = dataclasses.asdict(DPMDConfig()), dataclasses.asdict(SDACConfig())
    assert {name: dpmd[name] for name in shared} == {name: sdac[name] for name in shared}
    assert (DPMDConfig().repeat_critic_step, DPMDConfig().centred_weights) == (True, False)


@pytest.mark.slow
def test_learns_pendulum(tmp_path: Path) -> None:
    """The official update rule (the code's weights and repeated critic step included) with 64-64 networks,
    the best of 4 chains of 5 steps (official 32 of 20), batches of 128 (official 256) and learning rates of
    1e-3 (official 3e-4), so that 7,000 steps fit CI (the tries are in docs/benchmarks.md)."""
    small = ["hidden_sizes=64,64", "actor_hidden_sizes=64,64", "diffusion_steps=5", "candidates=4", "batch_size=128"]
    faster = ["actor_lr=1e-3", "critic_lr=1e-3"]
    assert_learns_pendulum("dpmd", tmp_path, steps=7000, overrides=["warmup_steps=1000", *small, *faster])
