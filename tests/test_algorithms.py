"""SAC and TD3 on hand-made batches: Bellman targets, log-probabilities, delays; seed independence for all."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from algorithms import ALGORITHMS
from algorithms.sac import SAC, SACConfig
from algorithms.td3 import TD3, TD3Config
from qsmbench.replay import Batch

OBS_DIM, ACT_DIM, BATCH = 3, 2, 16
CPU = torch.device("cpu")


def make_batch(seeds: int, generator_seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(generator_seed)
    terminated = (torch.rand(seeds, BATCH, generator=g) < 0.3).float()
    return Batch(
        obs=torch.randn(seeds, BATCH, OBS_DIM, generator=g),
        action=torch.rand(seeds, BATCH, ACT_DIM, generator=g) * 2 - 1,
        reward=torch.randn(seeds, BATCH, generator=g),
        next_obs=torch.randn(seeds, BATCH, OBS_DIM, generator=g),
        terminated=terminated,
    )


def perturb_seed(batch: Batch, seed_index: int) -> Batch:
    """The same batch with every field of one seed replaced by other data."""
    other = make_batch(batch.obs.shape[0], generator_seed=99)
    fields = {}
    for name in ("obs", "action", "reward", "next_obs", "terminated"):
        value = getattr(batch, name).clone()
        value[seed_index] = getattr(other, name)[seed_index]
        fields[name] = value
    return Batch(**fields)


def all_tensors(agent: object) -> dict[str, torch.Tensor]:
    """Every parameter of the agent's networks, plus SAC's temperature."""
    tensors = {}
    for attribute, value in vars(agent).items():
        if isinstance(value, torch.nn.Module):
            for name, parameter in value.named_parameters():
                tensors[f"{attribute}.{name}"] = parameter
        elif isinstance(value, torch.Tensor):
            tensors[attribute] = value
    return tensors


def constant_critic_(critic: torch.nn.Module, value: float) -> None:
    """Make a QEnsemble output `value` everywhere: zero last-layer weights, constant bias."""
    last = critic.mlp.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(value)


def small_config(algo: str) -> object:
    """The algorithm's default config with small networks (the update rule is unchanged)."""
    config = ALGORITHMS[algo].config_cls(hidden_sizes=(32, 32))
    if hasattr(config, "actor_hidden_sizes"):
        config = dataclasses.replace(config, actor_hidden_sizes=(32, 32))
    return config


@pytest.mark.parametrize("algo", ["sac", "td3", "qsm", "dql"])
def test_perturbing_one_seed_leaves_other_seeds_bit_identical(algo: str) -> None:
    """Losses are summed over seeds and nothing else couples them, so seed 0 cannot see seed 1's data."""
    spec = ALGORITHMS[algo]
    agent = spec.make_agent(OBS_DIM, ACT_DIM, [0, 1], CPU, small_config(algo))
    twin = copy.deepcopy(agent)
    batch = make_batch(2)
    for updates in range(2):  # two updates, so TD3's delayed actor update runs too
        torch.manual_seed(updates)
        agent.update(batch)
        torch.manual_seed(updates)
        twin.update(perturb_seed(batch, seed_index=1))
    changed_seed_1 = False
    for name, value in all_tensors(agent).items():
        other = all_tensors(twin)[name]
        assert torch.equal(value[0], other[0]), f"seed 0's {name} depends on seed 1's data"
        changed_seed_1 |= not torch.equal(value[1], other[1])
    assert changed_seed_1, "perturbing seed 1's batch should change seed 1's update"


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_actions_have_seed_axis_and_lie_in_unit_box(algo: str) -> None:
    """SAC and TD3 evaluate deterministically (QSM's evaluation is the stochastic chain: test_qsm.py)."""
    spec = ALGORITHMS[algo]
    agent = spec.make_agent(OBS_DIM, ACT_DIM, [0, 1, 2], CPU, spec.config_cls(hidden_sizes=(16,)))
    obs = 10 * torch.randn(3, 5, OBS_DIM)
    explore = agent.act(obs, explore=True)
    evaluate = agent.act(obs, explore=False)
    assert explore.shape == evaluate.shape == (3, 5, ACT_DIM)
    assert explore.abs().max() <= 1.0 and evaluate.abs().max() <= 1.0
    assert torch.equal(evaluate, agent.act(obs, explore=False)), "the evaluation action must be deterministic"
    assert not torch.equal(explore, agent.act(obs, explore=True)), "exploration must be stochastic"


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
    batch = make_batch(2)
    alpha = torch.tensor([[0.5], [2.0]])
    torch.manual_seed(3)
    target = agent.bellman_target(batch, alpha)
    torch.manual_seed(3)
    _, next_log_prob, _ = agent.policy(batch.next_obs)
    expected = batch.reward + 0.9 * (1 - batch.terminated) * (5.0 - alpha * next_log_prob)
    torch.testing.assert_close(target, expected)
    terminal = batch.terminated.bool()
    assert terminal.any() and torch.equal(target[terminal], batch.reward[terminal])


def test_td3_bellman_target_on_hand_made_batch() -> None:
    """With a constant target critic, the target is r + gamma (1 - terminated) c whatever the noise."""
    agent = TD3(OBS_DIM, ACT_DIM, [0, 1], CPU, TD3Config(hidden_sizes=(16,), gamma=0.95))
    constant_critic_(agent.critic_target, -2.0)
    batch = make_batch(2)
    target = agent.bellman_target(batch)
    torch.testing.assert_close(target, batch.reward + 0.95 * (1 - batch.terminated) * -2.0)


def test_td3_target_uses_the_smaller_critic() -> None:
    agent = TD3(OBS_DIM, ACT_DIM, [0], CPU, TD3Config(hidden_sizes=(16,), gamma=1.0))
    last = agent.critic_target.mlp.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias[0, 0].fill_(3.0)
        last.bias[0, 1].fill_(1.0)
    batch = make_batch(1)
    target = agent.bellman_target(batch)
    torch.testing.assert_close(target, batch.reward + (1 - batch.terminated) * 1.0)


def test_td3_actor_and_targets_update_only_every_policy_delay() -> None:
    agent = TD3(OBS_DIM, ACT_DIM, [0], CPU, TD3Config(hidden_sizes=(16,), policy_delay=2))
    actor_before = [p.clone() for p in agent.actor.parameters()]
    target_before = [p.clone() for p in agent.critic_target.parameters()]
    first = agent.update(make_batch(1))
    assert "actor_loss" not in first
    assert all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(target_before, agent.critic_target.parameters()))
    second = agent.update(make_batch(1))
    assert second["actor_loss"].shape == (1,)
    assert not all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(target_before, agent.critic_target.parameters()))


def test_sac_temperature_is_per_seed_and_moves_toward_target_entropy() -> None:
    """A policy far more random than the target entropy makes every seed's alpha shrink."""
    agent = SAC(OBS_DIM, ACT_DIM, [0, 1], CPU, SACConfig(hidden_sizes=(16,), temperature_lr=1e-2))
    diagnostics = agent.update(make_batch(2))
    assert agent.log_alpha.shape == (2,)
    assert diagnostics["alpha"].shape == (2,)
    assert (agent.log_alpha < 0).all()
    assert math.isclose(agent.target_entropy, -ACT_DIM)
