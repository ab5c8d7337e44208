"""SDAC (Ma et al., ICML 2025, "Efficient Online Reinforcement Learning for Diffusion Policy", arXiv 2502.00361),
as the official code runs it.

The policy is a DDPM over actions (T = 20 steps, betas = 0.8 linspace(1e-4, 0.999, T)) with DACER's noise model
eps_theta(s, a_t, t), sampled from a_T ~ N(0, 0.5^2 I) with the posterior variance and the predicted clean
action clipped to [-1, 1] at every step. Every action is the best of N = 32 chain samples by min_j Q_j of the
online critics, plus N(0, (0.1 alpha)^2) noise (not clipped inside the update). Per seed, update k:

    r    <- 0.2 r                                              the reward scale, inside the update only
    a'   = best_of_N(eps_theta; s') + 0.1 alpha xi             the online denoiser; no entropy term below
    y    = r + gamma (1 - done) min_j Q'_j(s', a')
    L_Q  = sum_j mean_b (Q_j(s, a) - y)^2
    on every 2nd update (from update 0), with the pre-update critics:
    a    = best_of_N(eps_theta; s) + 0.1 alpha xi,  t ~ U{0..T-1},  a~ = sqrt(abar_t) a + sqrt(1 - abar_t) eps1
    a0^j = clip((a~ - sqrt(1 - abar_t) eps2^j) / sqrt(abar_t), -1, 1),  eps2^j ~ N(0, I),  j = 1..64
    w^j  = softmax_j(min_i Q_i(s, a0^j) 5 / alpha)             5: the initial alpha, hard-coded
    L_pi = mean over (b, j, action dims) of w^j (eps_theta(s, a~, t) - eps2^j)^2
    on every 250th update (from update 0):
    L_a  = -log alpha (-H + H_target),  H = d/2 log(2 pi e (0.1 alpha)^2) (no gradient),  H_target = -0.9 d

Adam (3e-4) steps the critics every update; Adam steps eps_theta every 2nd update with a learning rate that
decays linearly from 3e-4 to 3e-5 between its 25,000th and 75,000th step (optax.linear_schedule, counted in
policy steps, so a checkpoint keeps it: the count is `actor_updates`, the rate lives in the optimiser's state);
Adam (7e-3) steps log alpha. On every 2nd update the target critics and an EMA copy of eps_theta follow with tau.
Acting, in training and evaluation, uses the EMA denoiser with the online critics (best of 32); training adds
the 0.1 alpha noise, evaluation does not (its chain noise stays on). Defaults follow the official code,
mahaitongdae/diffusion_policy_online_rl@a50cf41167b8d1ce89487f00684ac4d4691b090d (relax/algorithm/sdac.py,
relax/network/diffv2.py, relax/network/blocks.py, relax/utils/diffusion.py, scripts/train_mujoco.py).

Kept as the code has it (see docs/porting/sdac_dpmd.md): the entropy in the alpha loss hard-codes 0.1 rather
than noise_scale; the weights' scale 5 / alpha hard-codes the initial alpha; the weights use Q at the clipped
a0 while the target is the unclipped eps2. Deviations: the acting action is clipped to [-1, 1] (the contract's
range), so the replay stores clipped actions where the official buffer stores unclipped ones; the policy's
loss and its draws are computed only on the updates that apply it (the JAX code computes it every update and
drops it, which changes no parameter); the running mean and std of the scaled Q, which SDAC only logs, are
not kept; the evaluation's chain noise comes from the evaluation generator, not a hash of the observation.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qsmbench.algorithms.blocks.diffusion import DiffusionPolicyConfig, SamplerOptions, best_of_chain, mish
from qsmbench.algorithms.blocks.nets import QEnsemble, seed_generators, soft_update_
from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise
from qsmbench.algorithms.blocks.schedules import DiffusionSchedule, ScheduleKind
from qsmbench.algorithms.blocks.updates import linear_schedule, optimizer_step, perturb, td_target
from qsmbench.algorithms.contract import Algorithm, Batch
from qsmbench.algorithms.dacer import DACERDenoiser
from qsmbench.core.config import MAX_WIDTH, SDAC_DPMD_CODE, require, setting

ENTROPY_NOISE_SCALE = 0.1  # relax/algorithm/sdac.py log_alpha_loss_fn: the 0.1 of (0.1 alpha)^2, hard-coded
WEIGHT_SCALE = 5.0  # relax/algorithm/sdac.py policy_loss_fn: q * 5 / exp(log_alpha), "5 is the initial alpha value"


@dataclass(frozen=True)
class SDACFamilyConfig(DiffusionPolicyConfig):
    """What SDAC and DPMD share: relax/network/diffv2.py, the trainer and scripts/train_mujoco.py."""

    hidden_sizes: tuple[int, ...] = setting(
        (256, 256, 256), "hidden layer widths of each critic (Mish)", f"{SDAC_DPMD_CODE} scripts/train_mujoco.py: hidden_sizes"
    )
    actor_hidden_sizes: tuple[int, ...] = setting(
        (256, 256, 256), "hidden layer widths of the denoiser eps_theta(s, a_t, t) (Mish)",
        f"{SDAC_DPMD_CODE} scripts/train_mujoco.py: diffusion_hidden_sizes",
    )
    time_features: int = setting(
        16, "width of the scaled sinusoidal embedding of the step t (its MLP is 2x wide, then back; even, >= 2)",
        f"{SDAC_DPMD_CODE} relax/network/blocks.py: DACERPolicyNet.time_dim",
    )
    diffusion_steps: int = setting(
        20, "T: denoising steps of the reverse chain; every action costs T denoiser passes per candidate",
        f"{SDAC_DPMD_CODE} scripts/train_mujoco.py: --diffusion_steps",
    )
    schedule: ScheduleKind = setting(
        "scaled_linear", "beta schedule of the diffusion",
        f"{SDAC_DPMD_CODE} scripts/train_mujoco.py: --beta_schedule_type linear, --beta_schedule_scale 0.8",
    )
    initial_noise: float = setting(
        0.5, "std of the chain's start a_T", f"{SDAC_DPMD_CODE} relax/utils/diffusion.py: p_sample (0.5 * normal)"
    )
    actor_lr: float = setting(3e-4, "Adam learning rate of the denoiser at the start", f"{SDAC_DPMD_CODE} scripts/train_mujoco.py: --lr")
    actor_lr_end: float = setting(
        3e-5, "the denoiser's learning rate after its linear decay", f"{SDAC_DPMD_CODE} scripts/train_mujoco.py: --lr_schedule_end"
    )
    actor_lr_decay_start: int = setting(
        25_000, "denoiser steps before its learning rate starts to decay",
        f"{SDAC_DPMD_CODE} relax/algorithm/sdac.py: linear_schedule transition_begin",
    )
    actor_lr_decay_steps: int = setting(
        50_000, "denoiser steps over which its learning rate decays linearly to actor_lr_end",
        f"{SDAC_DPMD_CODE} relax/algorithm/sdac.py: linear_schedule transition_steps",
    )
    critic_lr: float = setting(3e-4, "Adam learning rate of both critics", f"{SDAC_DPMD_CODE} scripts/train_mujoco.py: --lr")
    exploration_noise: float = setting(
        0.0, "std of extra Gaussian noise on the training action, beside the noise_scale * alpha noise; 0: none",
        f"{SDAC_DPMD_CODE} relax/network/diffv2.py: get_action adds only the alpha noise",
    )
    noise_scale: float = setting(
        0.1, "lambda: the best candidate gets N(0, (lambda alpha)^2) noise (acting, targets, proposals)",
        f"{SDAC_DPMD_CODE} scripts/train_mujoco.py: --noise_scale",
    )
    candidates: int = setting(
        32, "chain samples per state of every action (acting, evaluation, targets, proposals); the best by Q is taken",
        f"{SDAC_DPMD_CODE} scripts/train_mujoco.py: --num_particles",
    )
    init_temperature: float = setting(
        5.0, "alpha at the start (the noise's scale factor and the weights' temperature)",
        f"{SDAC_DPMD_CODE} relax/network/diffv2.py: log_alpha = log 5",
    )
    temperature_lr: float = setting(7e-3, "Adam learning rate of log alpha", f"{SDAC_DPMD_CODE} scripts/train_mujoco.py: --alpha_lr")
    target_entropy_per_dim: float = setting(
        -0.9, "the entropy alpha steers the exploration noise's toward, per action dimension",
        f"{SDAC_DPMD_CODE} relax/network/diffv2.py: target_entropy = -0.9 act_dim",
    )
    temperature_every: int = setting(
        250, "updates between the steps of log alpha (from the first update)",
        f"{SDAC_DPMD_CODE} scripts/train_mujoco.py: --delay_alpha_update",
    )
    policy_delay: int = setting(
        2, "updates per step of the denoiser and of the target critics and EMA denoiser",
        f"{SDAC_DPMD_CODE} relax/algorithm/sdac.py: delay_update",
    )
    reward_scale: float = setting(
        0.2, "factor on the rewards inside the update (logged returns are unscaled)",
        f"{SDAC_DPMD_CODE} relax/algorithm/sdac.py: reward_scale",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            2 <= self.time_features <= MAX_WIDTH and self.time_features % 2 == 0,
            f"time_features must be even, at least 2 and at most {MAX_WIDTH:.0e}",
        )
        require(self.initial_noise > 0, f"initial_noise must be positive, got {self.initial_noise}")
        require(self.actor_lr_end > 0, f"actor_lr_end must be positive, got {self.actor_lr_end}")
        require(self.actor_lr_decay_start >= 0, "actor_lr_decay_start must be non-negative")
        require(self.actor_lr_decay_steps >= 1, "actor_lr_decay_steps must be at least 1")
        require(self.noise_scale >= 0, f"noise_scale must be non-negative, got {self.noise_scale}")
        require(self.candidates >= 1, "candidates must be at least 1")
        require(self.init_temperature > 0, f"init_temperature must be positive, got {self.init_temperature}")
        require(self.temperature_lr > 0, f"temperature_lr must be positive, got {self.temperature_lr}")
        require(min(self.temperature_every, self.policy_delay) >= 1, "temperature_every and policy_delay must be at least 1")
        require(self.reward_scale > 0, f"reward_scale must be positive, got {self.reward_scale}")


@dataclass(frozen=True)
class SDACConfig(SDACFamilyConfig):
    reverse_samples: int = setting(
        64, "reverse candidates a0^j per state that the policy loss weighs by softmax(Q)",
        f"{SDAC_DPMD_CODE} relax/algorithm/sdac.py: reverse_mc_num (hard-coded)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.reverse_samples >= 1, "reverse_samples must be at least 1")


class SDACFamilyAgent:
    """Networks, acting, critic target, alpha and the update's schedule that SDAC and DPMD share; subclasses
    give `actor_loss`."""

    def __init__(
        self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: SDACFamilyConfig, name: str
    ):
        self.config, self.act_dim = config, act_dim
        generators = seed_generators(seeds, name)
        self.denoiser = DACERDenoiser(obs_dim, act_dim, config.actor_hidden_sizes, config.time_features, generators).to(device)
        self.denoiser_target = copy.deepcopy(self.denoiser).requires_grad_(False)  # the EMA policy that acts
        self.critic = QEnsemble(
            obs_dim, act_dim, config.hidden_sizes, generators, init="truncated_normal", activation=mish
        ).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.full((len(seeds),), math.log(config.init_temperature), device=device).requires_grad_(True)
        self.target_entropy = config.target_entropy_per_dim * act_dim
        self.schedule = DiffusionSchedule.make(config.schedule, config.diffusion_steps, device)
        self.sampler = SamplerOptions(
            posterior_variance=True, clip_every_step=False, clip_denoised=True, initial_scale=config.initial_noise
        )
        self.updates = 0
        self.actor_updates = 0  # the denoiser's Adam steps: optax's count, which its learning rate follows
        self.actor_optimizer = torch.optim.Adam(self.denoiser.parameters(), lr=self.actor_lr())
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.temperature_lr)

    def sample(self, denoiser: nn.Module, obs: Tensor, noise: Noise = GLOBAL_NOISE, alpha_noise: bool = True) -> Tensor:
        """relax/network/diffv2.py get_action, no gradients: the best of `candidates` chain samples of `denoiser`
        by the online min_j Q_j, plus N(0, (noise_scale alpha)^2) unless `alpha_noise` is off; not clipped."""
        with torch.no_grad():
            action = best_of_chain(
                denoiser, self.schedule, self.sampler, self.critic, obs, self.act_dim, self.config.candidates, noise
            )[0]
            if not alpha_noise:
                return action
            scale = self.config.noise_scale * self.log_alpha.detach().exp().view(-1, *([1] * (obs.dim() - 1)))
            return action + scale * noise.normal(action.shape, action.device)

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """The EMA denoiser's best candidate by the online critics; training adds the alpha noise (then clips)."""
        action = self.sample(self.denoiser_target, obs, noise, alpha_noise=explore).clamp(-1.0, 1.0)
        return perturb(action, self.config.exploration_noise, noise) if explore and self.config.exploration_noise > 0 else action

    def scaled(self, batch: Batch) -> Batch:
        return Batch(batch.obs, batch.action, self.config.reward_scale * batch.reward, batch.next_obs, batch.terminated)

    @torch.no_grad()
    def bellman_target(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """`y = 0.2 r + gamma (1 - done) min_j Q'_j(s', a')` `[seeds, batch]`, and a' (the online denoiser's best
        candidate plus the alpha noise; no entropy term)."""
        next_action = self.sample(self.denoiser, batch.next_obs)
        next_q = self.critic_target(batch.next_obs, next_action).min(dim=1).values
        return td_target(self.scaled(batch), self.config.gamma, next_q), next_action

    def critic_loss(self, batch: Batch, target: Tensor) -> tuple[Tensor, Tensor]:
        """`sum_j mean_b (Q_j(s, a) - y)^2` per seed (no 1/2), and the critics' values."""
        q = self.critic(batch.obs, batch.action)
        return ((q - target.unsqueeze(1)) ** 2).mean(-1).sum(-1), q

    def temperature_loss(self) -> Tensor:
        """`-log alpha (-H + H_target)` per seed, H the entropy of N(0, (0.1 alpha)^2 I) (no gradient)."""
        alpha = self.log_alpha.detach().exp()
        entropy = 0.5 * self.act_dim * torch.log(2 * math.pi * math.e * (ENTROPY_NOISE_SCALE * alpha) ** 2)
        return -self.log_alpha * (-entropy + self.target_entropy)

    def step_actor(self, loss: Tensor) -> None:
        """One Adam step of the denoiser at this step's rate, then the rate of the next (optax's count)."""
        optimizer_step(self.actor_optimizer, loss)
        self.actor_updates += 1
        self.actor_optimizer.param_groups[0]["lr"] = self.actor_lr()

    def actor_lr(self) -> float:
        """optax.linear_schedule(actor_lr, actor_lr_end, transition_steps, transition_begin) at `actor_updates`."""
        config = self.config
        return linear_schedule(
            config.actor_lr, config.actor_lr_end, config.actor_lr_decay_start, config.actor_lr_decay_steps, self.actor_updates
        )

    def finish_update(self, step: int) -> None:
        """log alpha's step (every `temperature_every`), the targets' (every `policy_delay`), the count."""
        config = self.config
        if step % config.temperature_every == 0:
            optimizer_step(self.alpha_optimizer, self.temperature_loss())
        if step % config.policy_delay == 0:
            soft_update_(self.critic_target, self.critic, config.tau)
            soft_update_(self.denoiser_target, self.denoiser, config.tau)
        self.updates += 1


class SDAC(SDACFamilyAgent):
    def __init__(self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: SDACConfig):
        super().__init__(obs_dim, act_dim, seeds, device, config, "sdac")

    def update(self, batch: Batch) -> dict[str, Tensor]:
        step = self.updates
        target, _ = self.bellman_target(batch)
        critic_loss, q = self.critic_loss(batch, target)
        diagnostics = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean((-2, -1))}
        if step % self.config.policy_delay == 0:  # before the critics' step: the weights use the pre-update critics
            actor_loss, weight_max = self.actor_loss(batch.obs)
            self.step_actor(actor_loss)
            diagnostics |= {"actor_loss": actor_loss.detach(), "weight_max": weight_max}
        optimizer_step(self.critic_optimizer, critic_loss)
        self.finish_update(step)
        return {**diagnostics, "alpha": self.log_alpha.detach().exp()}

    def actor_loss(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """The softmax(Q)-weighted reverse-sample loss per seed, and the mean largest weight per seed."""
        seeds, n, _ = obs.shape
        samples, act_dim = self.config.reverse_samples, self.act_dim
        with torch.no_grad():
            proposal = self.sample(self.denoiser, obs)
            t = torch.randint(0, self.schedule.steps, (seeds, n), device=obs.device)
            noisy = self.schedule.noise(proposal, t, torch.randn_like(proposal))
            eps = torch.randn(seeds, n, samples, act_dim, device=obs.device)
            alpha_hat = self.schedule.alpha_hats[t].view(seeds, n, 1, 1)
            recon = (noisy.unsqueeze(2) * (1.0 / alpha_hat).sqrt() - eps * (1.0 / alpha_hat - 1.0).sqrt()).clamp(-1.0, 1.0)
            q = self.critic(obs.repeat_interleave(samples, dim=1), recon.view(seeds, n * samples, act_dim))
            q = q.min(dim=1).values.view(seeds, n, samples) * WEIGHT_SCALE / self.log_alpha.exp().view(-1, 1, 1)
            weight = torch.softmax(q, dim=-1)
        predicted = self.denoiser(obs, noisy, t)
        loss = (weight.unsqueeze(-1) * (predicted.unsqueeze(2) - eps) ** 2).mean((-3, -2, -1))
        return loss, weight.max(-1).values.mean(-1)


ALGORITHM = Algorithm(
    name="sdac",
    display_name="SDAC",
    summary="SDAC: diffusion policy trained by softmax(Q)-weighted score matching on reverse samples, best-of-32 "
    "actions with alpha-tuned noise (Ma et al. 2025)",
    config_cls=SDACConfig,
    make_agent=SDAC,
)
