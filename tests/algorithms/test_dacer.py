"""DACER's update rule against the official update written out (official_dacer.py), and its parts."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from official_dacer import DACERPolicyNet, DistributionalQNet2, GaussianDiffusion, OfficialDACER, vp_betas
from support import CPU, assert_learns_pendulum, assert_same_weights, update_side_by_side

from qsmbench.algorithms.blocks.schedules import DiffusionSchedule
from qsmbench.algorithms.dacer import DACER, DACERConfig, mixture_entropy, scaled_sinusoidal_features

OBS_DIM, ACT_DIM, BATCH = 3, 2, 8
TINY = DACERConfig(
    hidden_sizes=(16, 16, 16), actor_hidden_sizes=(16, 16, 16), diffusion_steps=5, entropy_samples=24, em_iterations=20
)


@pytest.mark.parametrize(("updates", "reward_scale"), [(3, 0.2), (5, 10.0)], ids=["official-scale", "clip-binds"])
def test_updates_match_the_official_update_written_out(updates: int, reward_scale: float) -> None:
    """Both critics, their targets, the denoiser, log alpha, the running stds and the entropy after a few updates
    drawing the same random numbers: entropy and alpha every 2nd update here, so both the updates that estimate
    it and those that keep it run; the policy and the targets every 2nd, with a tau that shows. Rewards scaled
    by 10 put the sampled targets beyond 3 b of the means, where the std loss's clip binds."""
    config = dataclasses.replace(TINY, entropy_every=2, tau=0.3, reward_scale=reward_scale)
    agent = DACER(OBS_DIM, ACT_DIM, [0], CPU, config)
    official = OfficialDACER(agent, config, ACT_DIM)
    update_side_by_side(agent, official, updates, OBS_DIM, ACT_DIM, BATCH)
    for member, (q, target) in enumerate([(official.q1, official.target_q1), (official.q2, official.target_q2)]):
        assert_same_weights(DistributionalQNet2(agent.critic, member), q)
        assert_same_weights(DistributionalQNet2(agent.critic_target, member), target)
    assert_same_weights(DACERPolicyNet(agent.denoiser), official.policy)
    torch.testing.assert_close(agent.log_alpha[0], official.log_alpha.detach())
    torch.testing.assert_close(agent.critic_std[0], torch.stack([official.mean_q1_std, official.mean_q2_std]))
    torch.testing.assert_close(agent.entropy[0], official.entropy, atol=1e-5, rtol=1e-5)
    assert agent.log_alpha[0] < math.log(3.0)  # the entropy of a fresh policy exceeds -0.9 |A|: alpha went down


def test_evaluation_runs_the_chain_alone_and_exploration_adds_the_alpha_noise() -> None:
    agent = DACER(OBS_DIM, ACT_DIM, [0], CPU, TINY)
    official = OfficialDACER(agent, TINY, ACT_DIM)
    obs = torch.randn(1, 6, OBS_DIM)
    for explore in (False, True):
        torch.manual_seed(3)
        ours = agent.act(obs, explore=explore)
        torch.manual_seed(3)
        with torch.no_grad():
            theirs = official.get_action(official.log_alpha, obs[0]) if explore else official.get_deterministic_action(obs[0])
        torch.testing.assert_close(ours[0], theirs, atol=1e-5, rtol=1e-4)


def test_the_schedule_is_the_official_vp_schedule() -> None:
    """The porting notes' check values of relax/utils/diffusion.py for T = 20, and its coefficients."""
    schedule = DiffusionSchedule.make("vp", 20, CPU)
    official = GaussianDiffusion(vp_betas(20))
    assert schedule.betas[0].item() == pytest.approx(0.01722, abs=1e-5)
    assert schedule.betas[19].item() == pytest.approx(0.38592, abs=1e-5)
    assert schedule.alpha_hats[19].item() == pytest.approx(0.00641, abs=1e-5)
    assert schedule.reverse[0].posterior_denoised_scale == pytest.approx(1.0)
    assert schedule.reverse[0].posterior_action_scale == 0.0
    for i, step in enumerate(schedule.reverse):
        assert step.denoised_action_scale == pytest.approx(official.sqrt_recip_alphas_cumprod[i].item(), rel=1e-6)
        assert step.denoised_eps_scale == pytest.approx(official.sqrt_recipm1_alphas_cumprod[i].item(), rel=1e-6)
        assert step.posterior_std == pytest.approx(math.exp(0.5 * official.posterior_log_variance_clipped[i].item()), rel=1e-5)


def test_time_features_are_the_scaled_sinusoidal_encoding() -> None:
    features = scaled_sinusoidal_features(torch.tensor([0, 7]), 16)
    torch.testing.assert_close(features[0], torch.tensor([0.0] * 8 + [0.25] * 8))
    frequencies = 10000.0 ** (-torch.arange(8) / 8)
    torch.testing.assert_close(features[1], torch.cat([(7 * frequencies).sin(), (7 * frequencies).cos()]) / 4)


def test_weights_are_haikus_truncated_normal_and_biases_zero() -> None:
    """hk.Linear's default: N(0, 1/fan_in) truncated at two stds, no variance correction (std 0.88/sqrt(fan_in))."""
    agent = DACER(OBS_DIM, ACT_DIM, [0], CPU, dataclasses.replace(TINY, hidden_sizes=(512, 512, 512)))
    layer = agent.critic.mlp.layers[1]
    bound = 1 / 512**0.5
    assert layer.weight.abs().max() <= 2 * bound
    assert layer.weight.std().item() / bound == pytest.approx(0.8796, abs=0.005)
    assert torch.count_nonzero(layer.bias) == 0


def known_mixtures(samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples `[2 seeds, 3 states, samples, 2]` of well-separated 3-component full-covariance mixtures (each
    state its own), and each mixture's H(w) + sum_k w_k H(N_k) `[2, 3]`."""
    g = torch.Generator().manual_seed(0)
    data, entropies = [], []
    for _ in range(6):
        means = torch.tensor([[-0.6, -0.6], [0.6, -0.6], [0.0, 0.6]]) + 0.1 * torch.randn(3, 2, generator=g)
        weights = torch.softmax(0.5 * torch.randn(3, generator=g), 0)
        factors = 0.03 * torch.eye(2) + 0.03 * torch.rand(3, 2, 2, generator=g).tril()
        component = torch.multinomial(weights, samples, replacement=True, generator=g)
        data.append(means[component] + (factors[component] @ torch.randn(samples, 2, 1, generator=g)).squeeze(-1))
        log_det = 2 * factors.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        entropies.append(-(weights * weights.log()).sum() + (weights * (1 + math.log(2 * math.pi) + 0.5 * log_det)).sum())
    return torch.stack(data).view(2, 3, samples, 2), torch.stack(entropies).view(2, 3)


def test_the_mixture_entropy_recovers_known_mixtures() -> None:
    samples, expected = known_mixtures(4000)
    fitted = mixture_entropy(samples, components=3, iterations=100)
    assert fitted.shape == (2, 3)
    torch.testing.assert_close(fitted, expected, atol=0.05, rtol=0)


def test_the_mixture_entropy_of_each_state_ignores_the_others() -> None:
    """All states of all seeds are fitted at once, each as if alone; 200 samples, as DACER draws."""
    samples, expected = known_mixtures(200)
    together = mixture_entropy(samples, components=3, iterations=100)
    alone = torch.stack([mixture_entropy(s.unsqueeze(0), 3, 100)[0] for s in samples.view(6, 200, 2)]).view(2, 3)
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(together, expected, atol=0.25, rtol=0)


def test_the_mixture_entropy_of_samples_piled_at_a_bound_is_finite() -> None:
    """Clipped actions can all sit on one corner: the covariances are reg_covar alone, the entropy very negative."""
    piled = torch.ones(1, 50, 3)
    entropy = mixture_entropy(piled, components=3, iterations=5)
    assert torch.isfinite(entropy).all() and entropy.item() < -15


def test_defaults_follow_the_official_code() -> None:
    config = DACERConfig()
    assert (config.diffusion_steps, config.schedule, config.time_features, config.noise_scale) == (20, "vp", 16, 0.15)
    assert config.hidden_sizes == config.actor_hidden_sizes == (256, 256, 256)
    assert (config.actor_lr, config.critic_lr, config.temperature_lr, config.init_temperature) == (1e-4, 1e-4, 3e-2, 3.0)
    assert (config.entropy_every, config.entropy_samples, config.mixture_components, config.em_iterations) == (10_000, 200, 3, 100)
    assert (config.policy_delay, config.reward_scale, config.target_entropy_per_dim, config.exploration_noise) == (2, 0.2, -0.9, 0.0)
    assert (config.batch_size, config.tau, config.gamma) == (256, 0.005, 0.99)


@pytest.mark.slow
def test_learns_pendulum(tmp_path: Path) -> None:
    """The official update rule with 64-64 networks, a 5-step chain, batches of 128, learning rates of 1e-3
    (official 1e-4) and the entropy estimate every 1,000 updates, not 10,000, so that alpha moves within
    7,000 steps (the tries are in docs/benchmarks.md)."""
    small = ["hidden_sizes=64,64", "actor_hidden_sizes=64,64", "diffusion_steps=5", "entropy_every=1000", "entropy_samples=50",
             "batch_size=128"]
    faster = ["actor_lr=1e-3", "critic_lr=1e-3"]
    assert_learns_pendulum("dacer", tmp_path, steps=7000, overrides=["warmup_steps=1000", *small, *faster])
