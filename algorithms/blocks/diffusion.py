"""Shared pieces of diffusion-model policies (QSM, Diffusion-QL, DIPO, QVPO, DACER, SDAC, DPMD): their config,
sampling, the noise-prediction loss, the denoisers (the schedules are in blocks/schedules.py).

A policy is a noise model `eps_theta(s, a_t, t)` over actions in [-1, 1] with T discrete steps,
indexed t = 0 .. T-1 (t = 0 is the least noisy). Everything here carries the seed axis: states and
actions are `[seeds, n, dim]`, step indices `[seeds, n]`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qsmbench.algorithms.blocks.nets import BatchedMLP, Init
from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise
from qsmbench.algorithms.blocks.schedules import SCHEDULES, DiffusionSchedule, ScheduleKind
from qsmbench.core.config import DQL_CODE, QSM_CONFIG, QSM_LEARNER, OffPolicyConfig, require, require_widths, setting

MAX_DIFFUSION_STEPS = 1000  # DDPM's own setting; beyond it a run would spend its life sampling


@dataclass(frozen=True)
class DiffusionPolicyConfig(OffPolicyConfig):
    """Settings every diffusion-policy algorithm has; each algorithm sets its own defaults."""

    actor_hidden_sizes: tuple[int, ...] = setting(
        (256, 256), "hidden layer widths of the denoiser eps_theta(s, a_t, t)",
        "qsmbench's choice, because each algorithm sets its own official value (QSM 512-512, Diffusion-QL 3 x 256)",
    )
    diffusion_steps: int = setting(
        5, "T: denoising steps of the reverse chain; every action costs T denoiser passes",
        f"{QSM_CONFIG}: T; {DQL_CODE} main.py: --T",
    )
    schedule: ScheduleKind = setting(
        "vp", "beta schedule of the diffusion: vp (variance preserving), linear, cosine or scaled_linear (0.8 "
        "linspace(1e-4, 0.999)); QSM also cosine_continuous (FlowRL's continuous time, blocks/schedules.py)",
        f"{QSM_LEARNER}: beta_schedule; {DQL_CODE} main.py: --beta_schedule",
    )
    continuous_time: ClassVar[bool] = False  # whether its updates can draw continuous times (cosine_continuous)
    actor_lr: float = setting(
        3e-4, "Adam learning rate of the denoiser", f"{QSM_CONFIG}; {DQL_CODE} main.py: lr of the MuJoCo tasks"
    )
    critic_lr: float = setting(
        3e-4, "Adam learning rate of the twin critics", f"{QSM_CONFIG}; {DQL_CODE} main.py: lr of the MuJoCo tasks"
    )
    exploration_noise: float = setting(
        0.1, "std of the Gaussian noise added to the chain's action when acting in training (actions in [-1, 1])",
        f"{QSM_LEARNER}: sample_actions; for Diffusion-QL qsmbench's choice, because its offline code never explores",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            1 <= self.diffusion_steps <= MAX_DIFFUSION_STEPS,
            f"diffusion_steps must lie in [1, {MAX_DIFFUSION_STEPS}] (every action runs that many denoiser passes; "
            f"QSM and Diffusion-QL use 5), got {self.diffusion_steps}",
        )
        require_widths("actor_hidden_sizes", self.actor_hidden_sizes)
        require(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        require(
            self.schedule != "cosine_continuous" or self.continuous_time,
            "schedule cosine_continuous (FlowRL's continuous time) is QSM's only: this algorithm's update draws step indices",
        )
        require(min(self.actor_lr, self.critic_lr) > 0, "learning rates must be positive")
        require(self.exploration_noise >= 0, "exploration_noise must be non-negative")




ChainStep = Callable[[Tensor, int], Tensor]  # eps_theta(s, a_i, i) for the fixed states of one chain


class NoiseModel(Protocol):
    """A denoiser `eps_theta(s, a_t, t)`. Calling it takes a step per sample (the training losses);
    `chain` gives the T steps of one chain on fixed states, with what does not change along the chain
    computed once (`conditioned_chain`)."""

    def __call__(self, obs: Tensor, noisy_action: Tensor, t: Tensor) -> Tensor: ...

    def time_code(self, t: Tensor) -> Tensor: ...

    def chain(self, obs: Tensor, codes: Tensor) -> ChainStep: ...


def conditioned_chain(mlp: BatchedMLP, layout: dict[str, int], obs: Tensor, codes: Tensor) -> ChainStep:
    """`eps(a_i, i)` of an MLP whose input is the concatenation `layout` (name -> width) of "action", "obs"
    and "time" parts. Its first layer is linear, so it splits into one product per part: the states' part
    (with the bias) is computed once per chain, every step's time-code part (`codes`, `[S, T, width]`)
    once per chain, and only the action's part per step, fused with its additions (`baddbmm`; a denoiser's
    weights are `[S, in, out]`). The samples are those of the concatenated input up to float rounding; a
    step costs an `act_dim`-wide product and two operators instead of the whole input's product and three.
    """
    first = mlp.layers[0]
    weights = dict(zip(layout, first.weight.split(list(layout.values()), dim=-2)))
    states = torch.matmul(obs, weights["obs"]) + first.bias  # [S, n, hidden]
    times = torch.matmul(codes, weights["time"])  # [S, T, hidden]

    def eps(action: Tensor, i: int) -> Tensor:
        return mlp.from_first_layer(torch.baddbmm(states + times[:, i : i + 1], action, weights["action"]))

    return eps


@dataclass(frozen=True)
class SamplerOptions:
    """How the reverse chain steps; each algorithm's official code picks its own.

    QSM: variance beta_t, clip to [-1, 1] after every step, no gradients.
    Diffusion-QL: posterior variance, clip only the predicted clean action, gradients through the chain.
    `initial_scale` scales the chain's start a_T ~ N(0, initial_scale^2 I) (SDAC and DPMD: 0.5).
    """

    posterior_variance: bool = False
    clip_every_step: bool = True
    clip_denoised: bool = False
    temperature: float = 1.0
    grad: bool = False
    initial_scale: float = 1.0


def reverse_chain(
    eps_model: NoiseModel,
    schedule: DiffusionSchedule,
    obs: Tensor,
    act_dim: int,
    options: SamplerOptions,
    noise: Noise = GLOBAL_NOISE,
) -> Tensor:
    """Sample actions `[seeds, n, act_dim]` in [-1, 1] for states `[seeds, n, obs_dim]`: T denoising calls,
    every random draw from `noise`.

    The T time codes are computed in one pass before the loop (every sample of a chain step shares its t),
    and the denoiser's parts that depend only on the states and the step once per chain (`NoiseModel.chain`).
    """
    with torch.set_grad_enabled(options.grad and torch.is_grad_enabled()):
        seeds, steps = obs.shape[0], schedule.steps
        codes = eps_model.time_code(schedule.step_times.expand(seeds, steps))  # [S, T, width]
        eps = eps_model.chain(obs, codes)
        action = noise.normal((*obs.shape[:-1], act_dim), obs.device)
        if options.initial_scale != 1.0:
            action = options.initial_scale * action
        for i in reversed(range(steps)):
            action = reverse_step(eps(action, i), action, i, schedule, options, noise)
        return action.clamp(-1.0, 1.0)


def reverse_step(
    eps: Tensor, action: Tensor, i: int, schedule: DiffusionSchedule, options: SamplerOptions, noise: Noise = GLOBAL_NOISE
) -> Tensor:
    """One step `a_i -> a_{i-1}` of the DDPM reverse process (the step index `i` is a Python int)."""
    step = schedule.reverse[i]
    if options.clip_denoised:
        denoised = (step.denoised_action_scale * action - step.denoised_eps_scale * eps).clamp(-1.0, 1.0)
        mean = step.posterior_denoised_scale * denoised + step.posterior_action_scale * action
    else:
        mean = step.action_scale * action - step.eps_scale * eps
    if i > 0:
        std = step.posterior_std if options.posterior_variance else step.beta_std
        mean = mean + (std * options.temperature) * noise.normal(action.shape, action.device)
    return mean.clamp(-1.0, 1.0) if options.clip_every_step else mean


def best_of_chain(
    eps_model: NoiseModel,
    schedule: DiffusionSchedule,
    options: SamplerOptions,
    critic: Callable[[Tensor, Tensor], Tensor],
    obs: Tensor,
    act_dim: int,
    samples: int,
    noise: Noise = GLOBAL_NOISE,
) -> tuple[Tensor, Tensor, Tensor]:
    """`samples` chain samples per state, no gradients: the best by min_j Q_j of `critic` (`[seeds, critics,
    n]` values) `[seeds, n, act_dim]`, its value and the mean value of all samples `[seeds, n]` (ties: the
    first). Candidates are laid out sample-major (`obs.repeat(1, samples, 1)`), as QVPO's official
    `state.repeat(samples, 1)`; SDAC and DPMD select the same way."""
    seeds, n, _ = obs.shape
    with torch.no_grad():
        repeated = obs.repeat(1, samples, 1)
        actions = reverse_chain(eps_model, schedule, repeated, act_dim, options, noise)
        q = critic(repeated, actions).min(dim=1).values.view(seeds, samples, n)
        best_q, best = q.max(dim=1)
        actions = actions.view(seeds, samples, n, act_dim)
        best_action = actions.gather(1, best.view(seeds, 1, n, 1).expand(seeds, 1, n, act_dim)).squeeze(1)
    return best_action, best_q, q.mean(dim=1)


def denoising_loss(
    eps_model: NoiseModel, schedule: DiffusionSchedule, obs: Tensor, action: Tensor, weight: Tensor | None = None
) -> Tensor:
    """DDPM's noise-prediction loss on `action` `[seeds, n, act_dim]` at a uniformly drawn step per sample,
    `E[w ||eps_theta(s, a_t, t) - eps||^2]` as a mean over samples and action dimensions, per seed `[seeds]`.

    `weight` `[seeds, n]` weighs each sample (QVPO's Q-weights); without it every sample counts alike (the
    behaviour cloning of Diffusion-QL, DIPO's loss on its improved actions)."""
    seeds, n = action.shape[:2]
    t = torch.randint(0, schedule.steps, (seeds, n), device=action.device)
    xi = torch.randn_like(action)
    error = (eps_model(obs, schedule.noise(action, t, xi), t) - xi) ** 2
    if weight is not None:
        error = error * weight.unsqueeze(-1)
    return error.mean((-2, -1))


def mish(x: Tensor) -> Tensor:
    """`x tanh(softplus(x))`, as torch's fused kernel (nn.Mish of the official codes): one operator, not three."""
    return F.mish(x)


class FourierTimeFeatures(nn.Module):
    """Learnable Fourier features of the step t (its index, or FlowRL's float time): `[cos 2 pi t w, sin 2 pi t w]`,
    w ~ N(0, std^2) per seed."""

    def __init__(self, features: int, std: float, generators: Sequence[torch.Generator]):
        super().__init__()
        weights = [torch.randn(1, features // 2, generator=g) * std for g in generators]
        self.weight = nn.Parameter(torch.stack(weights))

    def forward(self, t: Tensor) -> Tensor:
        angles = 2 * math.pi * torch.matmul(t.float().unsqueeze(-1), self.weight)
        return torch.cat([angles.cos(), angles.sin()], dim=-1)


def sinusoidal_time_features(t: Tensor, features: int) -> Tensor:
    """Fixed transformer-style features of the integer step (Diffusion-QL): `[sin, cos]`."""
    half = features // 2
    frequencies = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / (half - 1))
    angles = t.float().unsqueeze(-1) * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FourierDenoiser(nn.Module):
    """QSM's noise model: Fourier time features -> time MLP, then MLP([a_t, s, time code]) -> eps.

    FlowRL's variant (typoverflow/flow-rl@bae22f4 flowrl/flow/ddpm.py:83-95, flowrl/agent/online/qsm.py:143-156)
    adds a mish after the time MLP's last layer (`time_final_activation`) and encodes s with an MLP, mish after
    every layer (`state_encoder_sizes`), before the trunk sees it."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int],
        time_features: int,
        time_feature_std: float,
        time_hidden_sizes: Sequence[int],
        generators: Sequence[torch.Generator],
        init: Init = "xavier",
        state_encoder_sizes: Sequence[int] = (),
        time_final_activation: bool = False,
    ):
        super().__init__()
        self.time_features = FourierTimeFeatures(time_features, time_feature_std, generators)
        time_width = time_hidden_sizes[-1]
        self.time_mlp = BatchedMLP(time_features, time_hidden_sizes[:-1], time_width, generators, activation=mish, init=init)
        self.time_final_activation = time_final_activation
        self.state_encoder = (
            BatchedMLP(obs_dim, state_encoder_sizes[:-1], state_encoder_sizes[-1], generators, activation=mish, init=init)
            if state_encoder_sizes else None
        )
        state_width = state_encoder_sizes[-1] if state_encoder_sizes else obs_dim
        self.layout = {"action": act_dim, "obs": state_width, "time": time_width}  # the MLP's input, in order
        self.mlp = BatchedMLP(sum(self.layout.values()), hidden_sizes, act_dim, generators, activation=mish, init=init)

    def forward(self, obs: Tensor, noisy_action: Tensor, t: Tensor) -> Tensor:
        return self.mlp(torch.cat([noisy_action, self.encode(obs), self.time_code(t)], dim=-1))

    def encode(self, obs: Tensor) -> Tensor:
        """The state as the trunk sees it: itself (official QSM), or FlowRL's encoding."""
        return obs if self.state_encoder is None else mish(self.state_encoder(obs))

    def time_code(self, t: Tensor) -> Tensor:
        code = self.time_mlp(self.time_features(t))
        return mish(code) if self.time_final_activation else code

    def chain(self, obs: Tensor, codes: Tensor) -> ChainStep:
        return conditioned_chain(self.mlp, self.layout, self.encode(obs), codes)


class SinusoidalDenoiser(nn.Module):
    """Diffusion-QL's noise model, also DIPO's and QVPO's: sinusoidal time features -> Linear, Mish, Linear;
    MLP([a_t, time, s]) -> eps."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int],
        time_features: int,
        time_hidden: int,
        generators: Sequence[torch.Generator],
        init: Init = "torch",
    ):
        super().__init__()
        self.time_features = time_features
        self.time_mlp = BatchedMLP(time_features, (time_hidden,), time_features, generators, activation=mish, init=init)
        self.layout = {"action": act_dim, "time": time_features, "obs": obs_dim}  # the MLP's input, in order
        self.mlp = BatchedMLP(sum(self.layout.values()), hidden_sizes, act_dim, generators, activation=mish, init=init)

    def forward(self, obs: Tensor, noisy_action: Tensor, t: Tensor) -> Tensor:
        return self.mlp(torch.cat([noisy_action, self.time_code(t), obs], dim=-1))

    def time_code(self, t: Tensor) -> Tensor:
        return self.time_mlp(sinusoidal_time_features(t, self.time_features))

    def chain(self, obs: Tensor, codes: Tensor) -> ChainStep:
        return conditioned_chain(self.mlp, self.layout, obs, codes)
