"""Diffusion-QL (Wang, Hunt, Zhou, ICLR 2023), as the official code runs it, on the replay buffer.

The policy is a DDPM over actions with noise model eps_theta(s, a_t, t), sampled with the
posterior variance and the predicted clean action clipped to [-1, 1]. Per seed, with twin critics
Q_1, Q_2, their Polyak targets Q' and an EMA copy of the actor:

    a'   = chain_ema(s')                                             EMA actor, no gradient
    y    = r + gamma (1 - done) min_j Q'_j(s', a')
    L_Q  = sum_j E[(Q_j(s, a) - y)^2]                               clipped to max_grad_norm per seed
    L_bc = E[ || eps_theta(s, a_t, t) - eps ||^2 ],  a_t = sqrt(alpha_hat_t) a + sqrt(1 - alpha_hat_t) eps
    a_th = chain(s)                                                  differentiable, all T steps
    L_q  = -E[Q_i(s, a_th)] / stopgrad(E|Q_j(s, a_th)|)            (i, j) a random order of (1, 2)
    L_pi = bc_weight L_bc + eta L_q                                  clipped to max_grad_norm per seed

then the EMA actor moves 0.5% toward the actor every 5 updates from update 1,000, and Q' follows Q
with tau every update. Acting for evaluation samples 50 candidate actions and draws one with
probability softmax(min_j Q'_j(s, a)). Online, the replay buffer plays the dataset and exploration
adds N(0, 0.1^2) to one sample. `bc_weight=0` drops the behaviour-cloning term and keeps the rest
of this update; it is not the online learner in the QSM authors' code (score_matching_rl@2e77893,
jaxrl5/agents/score_matching/ddpm_online_learner.py), which maximises the unnormalised min of the
target critics with QSM's sampler, and has no EMA actor and no gradient clipping. Defaults follow
the official code, Zhendong-Wang/Diffusion-Policies-for-Offline-RL@d871f5c (agents/ql_diffusion.py,
agents/diffusion.py, agents/model.py, main.py).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from qsmbench.algorithms.blocks.diffusion import (
    DiffusionPolicyConfig,
    SamplerOptions,
    SinusoidalDenoiser,
    denoising_loss,
    mish,
    reverse_chain,
)
from qsmbench.algorithms.blocks.nets import QEnsemble, frozen, seed_generators, soft_update_
from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise, categorical
from qsmbench.algorithms.blocks.schedules import DiffusionSchedule
from qsmbench.algorithms.blocks.updates import critic_step, optimizer_step, perturb, td_target
from qsmbench.algorithms.contract import Algorithm, Batch
from qsmbench.core.config import DQL_CODE, MAX_WIDTH, require, setting


@dataclass(frozen=True)
class DiffusionQLConfig(DiffusionPolicyConfig):
    hidden_sizes: tuple[int, ...] = setting(
        (256, 256, 256), "hidden layer widths of each critic (Mish)", f"{DQL_CODE} agents/ql_diffusion.py: Critic"
    )
    actor_hidden_sizes: tuple[int, ...] = setting(
        (256, 256, 256), "hidden layer widths of the denoiser eps_theta(s, a_t, t) (Mish)",
        f"{DQL_CODE} agents/model.py: MLP",
    )
    time_features: int = setting(
        16, "sinusoidal embedding width of the diffusion step t (even, at least 4)",
        f"{DQL_CODE} agents/model.py: t_dim",
    )
    time_hidden: int = setting(
        32, "hidden width of the MLP that encodes the time embedding", f"{DQL_CODE} agents/model.py: t_dim * 2"
    )
    eta: float = setting(
        1.0, "weight of the normalised Q loss in the actor loss", f"{DQL_CODE} main.py: eta of the MuJoCo tasks"
    )
    bc_weight: float = setting(
        1.0, "weight of the noise-prediction (behaviour cloning) loss; 0 drops it and keeps the rest",
        f"{DQL_CODE} agents/ql_diffusion.py: actor_loss = bc_loss + eta q_loss",
    )
    max_grad_norm: float = setting(
        9.0, "gradient-norm clip per seed, of both the actor and the critics; 0 turns it off",
        f"{DQL_CODE} main.py: gn of hopper-medium and halfcheetah-medium (1 to 10 per task)",
    )
    ema_decay: float = setting(
        0.995, "decay of the EMA actor that picks the critics' target actions",
        f"{DQL_CODE} agents/ql_diffusion.py: ema_decay",
    )
    ema_every: int = setting(
        5, "updates between the EMA actor's steps", f"{DQL_CODE} agents/ql_diffusion.py: update_ema_every"
    )
    ema_start: int = setting(
        1000, "update from which the EMA actor moves (it keeps the initial weights until then)",
        f"{DQL_CODE} agents/ql_diffusion.py: step_start_ema",
    )
    explore_candidates: int = setting(
        1, "chain samples per exploration action; >1 picks one by softmax over Q, as evaluation does",
        "qsmbench's choice, because the official code is offline and never explores: one sample, as QSM's code",
    )
    eval_candidates: int = setting(
        50, "chain samples per evaluation action, one drawn with probability softmax(min_j Q'_j)",
        f"{DQL_CODE} agents/ql_diffusion.py: sample_action",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            4 <= self.time_features <= MAX_WIDTH and self.time_features % 2 == 0,
            f"time_features must be even, at least 4 and at most {MAX_WIDTH:.0e}",
        )
        require(
            1 <= self.time_hidden <= MAX_WIDTH, f"time_hidden must lie in [1, {MAX_WIDTH:.0e}], got {self.time_hidden}"
        )
        require(self.eta >= 0 and self.bc_weight >= 0, "eta and bc_weight must be non-negative")
        require(self.max_grad_norm >= 0, "max_grad_norm must be non-negative (0 turns clipping off)")
        require(0 <= self.ema_decay <= 1, f"ema_decay must lie in [0, 1], got {self.ema_decay}")
        require(self.ema_every >= 1 and self.ema_start >= 0, "ema_every must be positive, ema_start non-negative")
        require(min(self.explore_candidates, self.eval_candidates) >= 1, "candidate counts must be at least 1")


class DiffusionQL:
    def __init__(
        self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: DiffusionQLConfig
    ):
        self.config, self.act_dim = config, act_dim
        generators = seed_generators(seeds, "dql")
        self.denoiser = SinusoidalDenoiser(
            obs_dim, act_dim, config.actor_hidden_sizes, config.time_features, config.time_hidden, generators
        ).to(device)
        self.denoiser_ema = copy.deepcopy(self.denoiser).requires_grad_(False)
        self.critic = QEnsemble(obs_dim, act_dim, config.hidden_sizes, generators, activation=mish).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.schedule = DiffusionSchedule.make(config.schedule, config.diffusion_steps, device)
        self.sampler = SamplerOptions(posterior_variance=True, clip_every_step=False, clip_denoised=True)
        self.policy_gradient_sampler = dataclasses.replace(self.sampler, grad=True)
        self.actor_optimizer = torch.optim.Adam(self.denoiser.parameters(), lr=config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.updates = 0

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """Evaluation: one of 50 candidates by softmax over Q'. Exploration: a sample plus N(0, 0.1^2)."""
        if explore:
            action = self.select(obs, self.config.explore_candidates, noise)
            return perturb(action, self.config.exploration_noise, noise)
        return self.select(obs, self.config.eval_candidates, noise)

    def select(self, obs: Tensor, candidates: int, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """Draw `candidates` chain samples per state and keep one with probability softmax(min_j Q'_j)."""
        if candidates == 1:
            return reverse_chain(self.denoiser, self.schedule, obs, self.act_dim, self.sampler, noise)
        seeds, n, obs_dim = obs.shape
        repeated = obs.unsqueeze(2).expand(seeds, n, candidates, obs_dim).reshape(seeds, n * candidates, obs_dim)
        actions = reverse_chain(self.denoiser, self.schedule, repeated, self.act_dim, self.sampler, noise)
        q = self.critic_target(repeated, actions).min(dim=1).values.reshape(seeds, n, candidates)
        # a diverged seed's NaN Q must not stop every seed: its rows draw uniformly instead; finite rows are
        # untouched, so live seeds get exactly the same actions
        weights = torch.softmax(q, dim=-1).nan_to_num(nan=1.0)
        choice = categorical(weights, noise).reshape(seeds, n, 1, 1)
        actions = actions.reshape(seeds, n, candidates, self.act_dim)
        return actions.gather(2, choice.expand(seeds, n, 1, self.act_dim)).squeeze(2)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        critic_loss, q = critic_step(
            self.critic, self.critic_optimizer, batch, self.bellman_target(batch), self.config.max_grad_norm
        )
        bc_loss, q_loss = self.update_actor(batch)
        self.updates += 1
        if self.updates >= self.config.ema_start and self.updates % self.config.ema_every == 0:
            soft_update_(self.denoiser_ema, self.denoiser, 1.0 - self.config.ema_decay)
        soft_update_(self.critic_target, self.critic, self.config.tau)
        return {
            "critic_loss": critic_loss.detach(),
            "q_mean": q.detach().mean((-2, -1)),
            "bc_loss": bc_loss.detach(),
            "q_loss": q_loss.detach(),
        }

    @torch.no_grad()
    def bellman_target(self, batch: Batch) -> Tensor:
        """`y = r + gamma (1 - done) min_j Q'_j(s', a')`, a' from the EMA actor's full chain."""
        next_action = reverse_chain(self.denoiser_ema, self.schedule, batch.next_obs, self.act_dim, self.sampler)
        next_q = self.critic_target(batch.next_obs, next_action).min(dim=1).values
        return td_target(batch, self.config.gamma, next_q)

    def update_actor(self, batch: Batch) -> tuple[Tensor, Tensor]:
        bc_loss = denoising_loss(self.denoiser, self.schedule, batch.obs, batch.action)
        q_loss = self.q_loss(batch.obs)
        loss = self.config.bc_weight * bc_loss + self.config.eta * q_loss
        optimizer_step(self.actor_optimizer, loss, self.config.max_grad_norm)
        return bc_loss, q_loss

    def q_loss(self, obs: Tensor) -> Tensor:
        """`-E[Q_i(s, a_th)] / stopgrad(E|Q_j(s, a_th)|)` per seed, with its own random (i, j) per seed."""
        action = reverse_chain(self.denoiser, self.schedule, obs, self.act_dim, self.policy_gradient_sampler)
        with frozen(self.critic):
            q = self.critic(obs, action)  # [seeds, 2, batch]
        first = torch.randint(0, 2, (q.shape[0], 1), device=q.device)
        q_i = q.mean(-1).gather(1, first).squeeze(1)
        scale = q.abs().mean(-1).gather(1, 1 - first).squeeze(1)
        return -q_i / scale.detach()


ALGORITHM = Algorithm(
    name="dql",
    display_name="Diffusion-QL",
    summary="Diffusion-QL: diffusion policy trained by BC plus normalised Q through the chain (Wang et al. 2023)",
    config_cls=DiffusionQLConfig,
    make_agent=DiffusionQL,
    offline=True,
)
