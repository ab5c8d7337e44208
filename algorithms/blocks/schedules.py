"""Noise schedules of diffusion-model policies: the DDPM quantities of a schedule of T steps, each reverse step's
coefficients, and how a training update draws its noise levels.

Discrete schedules (vp, linear, cosine, scaled_linear) index their steps t = 0 .. T-1, the denoiser's time input
is the index, and a training update draws an index uniformly. FlowRL's continuous-time cosine schedule
(`cosine_continuous`; typoverflow/flow-rl@bae22f4 flowrl/flow/continuous_ddpm.py, CD below) is the same DDPM
machinery on a grid of times: the denoiser's input is the float time t, a training update draws
t ~ U(0.001, 0.9946) with alpha_t = cos(pi/2 (t + s)/(1 + s)) / cos(pi/2 s/(1 + s)) (CD:26-31, 107-115), and
the reverse chain walks the 21-point grid ts_k = 0.001 + 0.9945 k/T down to ts_0 (CD:35-40, 134-138, 159-174,
220): alpha_hat_k = alpha(ts_k)^2, so the chain's first step starts below 1 and its last ends at alpha(0.001)^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

ScheduleKind = Literal["vp", "linear", "cosine", "scaled_linear", "cosine_continuous"]
SCHEDULES: tuple[ScheduleKind, ...] = ("vp", "linear", "cosine", "scaled_linear", "cosine_continuous")
CONTINUOUS_TIMES = (0.001, 0.9946)  # FlowRL's t range for its cosine schedule (CD:84-85: epsilon, 0.9946)
COSINE_OFFSET = 0.008  # s of the cosine schedules (Nichol and Dhariwal)


def vp_betas(steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> Tensor:
    """The variance-preserving schedule of IDQL, QSM and Diffusion-QL, discretised to `steps`.

    Schedules are made in float64 on the CPU whatever the default device (resources.py builds agents on
    `meta`): the reverse steps' coefficients are read from them as floats."""
    k = torch.arange(1, steps + 1, dtype=torch.float64, device="cpu")
    alphas = torch.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * k - 1) / steps**2)
    return 1.0 - alphas


def linear_betas(steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> Tensor:
    return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64, device="cpu")


def scaled_linear_betas(steps: int, scale: float = 0.8) -> Tensor:
    """SDAC's and DPMD's schedule (relax/utils/diffusion.py linear_beta_schedule with --beta_schedule_scale 0.8):
    `scale * linspace(1e-4, 0.999, steps)`."""
    return scale * torch.linspace(1e-4, 0.999, steps, dtype=torch.float64, device="cpu")


def cosine_betas(steps: int, s: float = COSINE_OFFSET) -> Tensor:
    """Nichol and Dhariwal's cosine schedule, betas clipped at 0.999."""
    x = torch.linspace(0, steps, steps + 1, dtype=torch.float64, device="cpu")
    alpha_hat = torch.cos(((x / steps) + s) / (1 + s) * math.pi * 0.5) ** 2
    alpha_hat = alpha_hat / alpha_hat[0]
    return (1 - alpha_hat[1:] / alpha_hat[:-1]).clamp(max=0.999)


def continuous_cosine_alpha(t: Tensor, s: float = COSINE_OFFSET) -> Tensor:
    """FlowRL's alpha_t = sqrt(alpha_hat(t)) of continuous time t (CD:26-31, t clipped to [0, 0.9946] as there)."""
    angle = lambda x: math.pi / 2.0 * (x + s) / (1 + s)
    return torch.cos(angle(t.clamp(0.0, CONTINUOUS_TIMES[1]))) / math.cos(angle(0.0))


def continuous_times(steps: int) -> Tensor:
    """The sampling grid ts_0 .. ts_T (CD:35-40 with n = 1, 134), float64."""
    low, high = CONTINUOUS_TIMES
    return (high - low) * torch.linspace(0, 1, steps + 1, dtype=torch.float64, device="cpu") + low


@dataclass(frozen=True)
class NoiseLevels:
    """The noise levels a training update draws, one per sample `[seeds, n]`: the denoiser's time input and the
    forward process' scales, a_t = signal a + sigma xi."""

    time: Tensor
    signal: Tensor
    sigma: Tensor

    def noise(self, action: Tensor, xi: Tensor) -> Tensor:
        return self.signal.unsqueeze(-1) * action + self.sigma.unsqueeze(-1) * xi


@dataclass(frozen=True)
class ReverseStep:
    """The coefficients of one reverse step `a_i -> a_{i-1}` as Python floats, computed once in float64, so
    that sampling does no arithmetic on 0-d schedule tensors (each such op is a kernel launch on a GPU)."""

    action_scale: float  # mean = action_scale a - eps_scale eps  (DDPM's eps form)
    eps_scale: float
    denoised_action_scale: float  # a_0 = denoised_action_scale a - denoised_eps_scale eps  (predicted clean action)
    denoised_eps_scale: float
    posterior_denoised_scale: float  # mean = posterior_denoised_scale a_0 + posterior_action_scale a
    posterior_action_scale: float
    beta_std: float  # sqrt(beta_i): the noise of QSM's sampler
    posterior_std: float  # sqrt(posterior variance): Diffusion-QL's


@dataclass(frozen=True)
class DiffusionSchedule:
    """The DDPM quantities of one beta schedule, as float32 tensors `[T]` on the training device, and each
    reverse step's coefficients as floats (`reverse[i]`)."""

    betas: Tensor
    alphas: Tensor
    alpha_hats: Tensor
    alpha_hats_prev: Tensor
    reverse: tuple[ReverseStep, ...]
    step_times: Tensor  # [T] the denoiser's time input at each step: the index, or (continuous) the grid's time
    continuous: bool = False  # training draws t ~ U(CONTINUOUS_TIMES), not a step index

    @classmethod
    def make(cls, kind: ScheduleKind, steps: int, device: torch.device) -> DiffusionSchedule:
        if kind == "cosine_continuous":
            times = continuous_times(steps)
            grid = continuous_cosine_alpha(times) ** 2  # alpha_hat(ts_0) .. alpha_hat(ts_T) (CD:135)
            alpha_hats, alpha_hats_prev = grid[1:], grid[:-1]
            betas = 1.0 - alpha_hats / alpha_hats_prev  # (CD:136-138)
            step_times = times[1:].to(device=device, dtype=torch.float32)
        else:
            makers = {"vp": vp_betas, "linear": linear_betas, "cosine": cosine_betas, "scaled_linear": scaled_linear_betas}
            betas = makers[kind](steps)
            alpha_hats = torch.cumprod(1.0 - betas, dim=0)
            alpha_hats_prev = torch.cat([torch.ones(1, dtype=torch.float64, device="cpu"), alpha_hats[:-1]])
            step_times = torch.arange(steps, device=device)
        as_float = lambda x: x.to(device=device, dtype=torch.float32)
        reverse = tuple(reverse_step_coefficients(*map(float, values)) for values in zip(betas, alpha_hats, alpha_hats_prev))
        tensors = (as_float(betas), as_float(1.0 - betas), as_float(alpha_hats), as_float(alpha_hats_prev))
        return cls(*tensors, reverse, step_times, continuous=kind == "cosine_continuous")

    def draw_levels(self, shape: tuple[int, ...], device: torch.device) -> NoiseLevels:
        """One noise level per sample for a training update: a step index drawn uniformly (one `randint`), or
        (continuous) t ~ U(0.001, 0.9946) with FlowRL's alpha_t and sigma_t = sqrt(1 - alpha_t^2) (CD:107-115)."""
        if self.continuous:
            low, high = CONTINUOUS_TIMES
            t = torch.rand(shape, device=device) * (high - low) + low
            signal = continuous_cosine_alpha(t)
            return NoiseLevels(t, signal, (1.0 - signal**2).sqrt())
        return self.levels_at(torch.randint(0, self.steps, shape, device=device))

    def levels_at(self, t: Tensor) -> NoiseLevels:
        """The noise levels of step indices `t`: sqrt(alpha_hat_t) and sqrt(1 - alpha_hat_t)."""
        alpha_hat = self.alpha_hats[t]
        return NoiseLevels(t, alpha_hat.sqrt(), (1.0 - alpha_hat).sqrt())

    @property
    def steps(self) -> int:
        return self.betas.shape[0]

    @property
    def posterior_variance(self) -> Tensor:
        """Variance of q(a_{t-1} | a_t, a_0): `beta_t (1 - alpha_hat_{t-1}) / (1 - alpha_hat_t)`, `[T]`."""
        return self.betas * (1 - self.alpha_hats_prev) / (1 - self.alpha_hats)

    def noise(self, action: Tensor, t: Tensor, xi: Tensor) -> Tensor:
        """Forward process: `a_t = sqrt(alpha_hat_t) a + sqrt(1 - alpha_hat_t) xi` for step indices `t`."""
        return self.levels_at(t).noise(action, xi)


def reverse_step_coefficients(beta: float, alpha_hat: float, alpha_hat_prev: float) -> ReverseStep:
    """DDPM's reverse step (Ho et al. 2020, eqs. 7 and 11) for one step of the schedule, in float64."""
    alpha = 1.0 - beta
    return ReverseStep(
        action_scale=1.0 / math.sqrt(alpha),
        eps_scale=beta / (math.sqrt(1.0 - alpha_hat) * math.sqrt(alpha)),
        denoised_action_scale=1.0 / math.sqrt(alpha_hat),
        denoised_eps_scale=math.sqrt(1.0 - alpha_hat) / math.sqrt(alpha_hat),
        posterior_denoised_scale=beta * math.sqrt(alpha_hat_prev) / (1.0 - alpha_hat),
        posterior_action_scale=(1.0 - alpha_hat_prev) * math.sqrt(alpha) / (1.0 - alpha_hat),
        beta_std=math.sqrt(max(beta, 1e-20)),
        posterior_std=math.sqrt(max(beta * (1.0 - alpha_hat_prev) / (1.0 - alpha_hat), 1e-20)),
    )
