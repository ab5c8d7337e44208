"""The shared diffusion pieces: schedules, forward noising, the reverse chain, time features."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from qsmbench.algorithms.blocks.diffusion import (
    FourierDenoiser,
    SamplerOptions,
    SinusoidalDenoiser,
    reverse_chain,
    reverse_step,
    sinusoidal_time_features,
)
from qsmbench.algorithms.blocks.nets import seed_generators
from qsmbench.algorithms.blocks.schedules import DiffusionSchedule

CPU = torch.device("cpu")


def test_vp_schedule_for_five_steps_matches_the_official_numbers() -> None:
    schedule = DiffusionSchedule.make("vp", 5, CPU)
    torch.testing.assert_close(schedule.betas, torch.tensor([0.196, 0.459, 0.636, 0.755, 0.835]), atol=1e-3, rtol=0)
    torch.testing.assert_close(
        schedule.alpha_hats, torch.tensor([0.804, 0.435, 0.159, 0.039, 0.0064]), atol=1e-3, rtol=0
    )
    assert schedule.alpha_hats_prev[0] == 1.0


@pytest.mark.parametrize("kind", ["vp", "linear", "cosine"])
def test_schedules_add_noise_monotonically(kind: str) -> None:
    schedule = DiffusionSchedule.make(kind, 20, CPU)
    assert schedule.steps == 20
    assert ((schedule.betas > 0) & (schedule.betas < 1)).all()
    assert (schedule.alpha_hats[1:] < schedule.alpha_hats[:-1]).all()


def test_forward_noising_uses_each_samples_own_step() -> None:
    schedule = DiffusionSchedule.make("vp", 5, CPU)
    action, xi = torch.full((2, 3, 1), 0.5), torch.ones(2, 3, 1)
    t = torch.tensor([[0, 1, 4], [4, 4, 0]])
    noisy = schedule.noise(action, t, xi)
    expected = schedule.alpha_hats[t].sqrt() * 0.5 + (1 - schedule.alpha_hats[t]).sqrt()
    torch.testing.assert_close(noisy.squeeze(-1), expected)


def small_denoiser(seeds: list[int], obs_dim: int = 3, act_dim: int = 2) -> FourierDenoiser:
    return FourierDenoiser(obs_dim, act_dim, (32, 32), 8, 0.2, (16, 16), seed_generators(seeds, "test"))


def test_chain_shapes_and_clipping() -> None:
    denoiser = small_denoiser([0, 1, 2])
    schedule = DiffusionSchedule.make("vp", 5, CPU)
    obs = 100 * torch.randn(3, 7, 3)  # far out of distribution, so unclipped steps would leave [-1, 1]
    for options in (SamplerOptions(), SamplerOptions(posterior_variance=True, clip_every_step=False, clip_denoised=True)):
        action = reverse_chain(denoiser, schedule, obs, 2, options)
        assert action.shape == (3, 7, 2)
        assert action.abs().max() <= 1.0


def test_every_step_clipping_keeps_intermediate_actions_in_range() -> None:
    schedule = DiffusionSchedule.make("vp", 5, CPU)
    huge_eps = torch.full((1, 4, 2), -50.0)
    action = torch.zeros(1, 4, 2)
    clipped = reverse_step(huge_eps, action, 3, schedule, SamplerOptions(temperature=0.0))
    unclipped = reverse_step(huge_eps, action, 3, schedule, SamplerOptions(temperature=0.0, clip_every_step=False))
    assert clipped.abs().max() == 1.0
    assert unclipped.abs().max() > 1.0


def test_denoised_form_equals_eps_form_when_nothing_is_clipped() -> None:
    """The posterior mean written through the predicted clean action is the usual eps-form mean."""
    schedule = DiffusionSchedule.make("vp", 5, CPU)
    action, eps = 0.01 * torch.randn(2, 5, 3), 0.01 * torch.randn(2, 5, 3)
    for i in range(5):
        eps_form = reverse_step(eps, action, i, schedule, SamplerOptions(temperature=0.0, clip_every_step=False))
        denoised_form = reverse_step(
            eps, action, i, schedule, SamplerOptions(temperature=0.0, clip_every_step=False, clip_denoised=True)
        )
        torch.testing.assert_close(eps_form, denoised_form)


def test_no_gradient_flows_through_the_chain_unless_asked() -> None:
    denoiser = small_denoiser([0])
    schedule = DiffusionSchedule.make("vp", 5, CPU)
    obs = torch.randn(1, 4, 3)
    without = reverse_chain(denoiser, schedule, obs, 2, SamplerOptions())
    assert not without.requires_grad
    with_grad = reverse_chain(denoiser, schedule, obs, 2, SamplerOptions(grad=True))
    with_grad.sum().backward()
    assert all(p.grad is not None for p in denoiser.parameters())


def test_denoiser_shapes_and_per_seed_initialisation() -> None:
    together, alone = small_denoiser([0, 1]), small_denoiser([1])
    eps = together(torch.randn(2, 5, 3), torch.randn(2, 5, 2), torch.randint(0, 5, (2, 5)))
    assert eps.shape == (2, 5, 2)
    for p_together, p_alone in zip(together.parameters(), alone.parameters()):
        assert torch.equal(p_together[1], p_alone[0])


def test_sinusoidal_features_of_step_zero() -> None:
    features = sinusoidal_time_features(torch.tensor([[0, 3]]), 16)
    assert features.shape == (1, 2, 16)
    torch.testing.assert_close(features[0, 0], torch.cat([torch.zeros(8), torch.ones(8)]))
    assert not torch.allclose(features[0, 0], features[0, 1])


def ddpm_chain(denoiser: torch.nn.Module, schedule: DiffusionSchedule, obs: torch.Tensor, options: SamplerOptions) -> torch.Tensor:
    """The reverse chain written out from Ho et al. (2020) on the schedule's tensors, one denoiser call per step
    with every sample's t: what `reverse_chain` computes with its precomputed codes and coefficients."""
    action = torch.randn(*obs.shape[:-1], 2)
    for i in reversed(range(schedule.steps)):
        eps = denoiser(obs, action, torch.full(obs.shape[:-1], i))
        coefficients = (schedule.betas, schedule.alphas, schedule.alpha_hats, schedule.alpha_hats_prev)
        beta, alpha, alpha_hat, alpha_hat_prev = (x[i] for x in coefficients)
        if options.clip_denoised:
            denoised = ((action - (1 - alpha_hat).sqrt() * eps) / alpha_hat.sqrt()).clamp(-1, 1)
            mean = (beta * alpha_hat_prev.sqrt() * denoised + (1 - alpha_hat_prev) * alpha.sqrt() * action) / (1 - alpha_hat)
        else:
            mean = (action - beta / (1 - alpha_hat).sqrt() * eps) / alpha.sqrt()
        if i > 0:
            variance = schedule.posterior_variance[i] if options.posterior_variance else beta
            mean = mean + variance.sqrt() * options.temperature * torch.randn_like(action)
        action = mean.clamp(-1, 1) if options.clip_every_step else mean
    return action.clamp(-1, 1)


@pytest.mark.parametrize(
    ("options", "make_denoiser"),
    [
        (SamplerOptions(), small_denoiser),
        (
            SamplerOptions(posterior_variance=True, clip_every_step=False, clip_denoised=True, temperature=0.5),
            lambda seeds: SinusoidalDenoiser(3, 2, (32, 32), 8, 16, seed_generators(seeds, "test")),
        ),
    ],
    ids=["qsm", "diffusion-ql"],
)
def test_the_chain_is_ddpm_written_out(options: SamplerOptions, make_denoiser: Callable[[list[int]], torch.nn.Module]) -> None:
    """Time codes and the states' part of the first layer computed once per chain, and coefficients as floats,
    change the cost, not the samples (each denoiser's own input order)."""
    denoiser, schedule = make_denoiser([0, 1]), DiffusionSchedule.make("vp", 5, CPU)
    obs = torch.randn(2, 6, 3)
    torch.manual_seed(7)
    fast = reverse_chain(denoiser, schedule, obs, 2, options)
    torch.manual_seed(7)
    torch.testing.assert_close(fast, ddpm_chain(denoiser, schedule, obs, options), rtol=1e-5, atol=1e-5)
