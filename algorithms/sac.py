"""Soft Actor-Critic (Haarnoja et al., 2018), with automatic entropy tuning.

Per seed, with twin critics Q_1, Q_2, target critics Q', temperature alpha and a tanh-squashed
Gaussian policy pi:

    y       = r + gamma (1 - done) [min_j Q'_j(s', a') - alpha log pi(a'|s')],  a' ~ pi(.|s')
    L_Q     = sum_j E[(Q_j(s, a) - y)^2]
    L_pi    = E[alpha log pi(a~|s) - min_j Q_j(s, a~)],                       a~ ~ pi(.|s)
    L_alpha = E[-alpha (log pi(a~|s) + H_target)],                            H_target = -|A|

Each loss is a mean over the batch and a sum over seeds, so every seed gets exactly the gradient
it would get alone, with its own temperature.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from qsmbench.algorithms.blocks.nets import BatchedMLP, QEnsemble, frozen, seed_generators, soft_update_
from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise
from qsmbench.algorithms.blocks.updates import critic_step, optimizer_step, td_target
from qsmbench.algorithms.contract import Algorithm, Batch
from qsmbench.core.config import OffPolicyConfig, require, setting

LOG_STD_LIMIT = 20.0  # past it exp() under- or overflows float32, and log pi becomes inf
SAC_PAPER = "SAC paper (Haarnoja et al. 2018, arXiv 1812.05905, Table 1)"


@dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    actor_lr: float = setting(3e-4, "Adam learning rate of the policy", SAC_PAPER)
    critic_lr: float = setting(3e-4, "Adam learning rate of the twin critics", SAC_PAPER)
    temperature_lr: float = setting(3e-4, "Adam learning rate of log alpha, the entropy temperature", SAC_PAPER)
    init_temperature: float = setting(
        1.0, "entropy temperature alpha at the start; tuned toward target_entropy from there",
        "qsmbench's choice, because log alpha = 0 is where CleanRL's sac_continuous_action.py starts its autotune",
    )
    target_entropy: float | None = setting(
        None, "policy entropy that the temperature tuning aims for; None: -|A| (minus the action dimension)",
        f"{SAC_PAPER}: -dim(A)",
    )
    log_std_min: float = setting(
        -5.0, "lower clamp of the policy's log standard deviation", "CleanRL sac_continuous_action.py: LOG_STD_MIN"
    )
    log_std_max: float = setting(
        2.0, "upper clamp of the policy's log standard deviation", "CleanRL sac_continuous_action.py: LOG_STD_MAX"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(min(self.actor_lr, self.critic_lr, self.temperature_lr) > 0, "learning rates must be positive")
        require(self.init_temperature > 0, f"init_temperature must be positive, got {self.init_temperature}")
        require(
            -LOG_STD_LIMIT <= self.log_std_min < self.log_std_max <= LOG_STD_LIMIT,
            f"log_std_min < log_std_max must both lie in [-{LOG_STD_LIMIT}, {LOG_STD_LIMIT}] (a std of e^-20 is already "
            f"deterministic in float32), got {self.log_std_min} and {self.log_std_max}",
        )


class SAC:
    def __init__(
        self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: SACConfig
    ):
        self.config = config
        generators = seed_generators(seeds, "sac")
        self.actor = BatchedMLP(obs_dim, config.hidden_sizes, 2 * act_dim, generators).to(device)
        self.critic = QEnsemble(obs_dim, act_dim, config.hidden_sizes, generators).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.full((len(seeds),), math.log(config.init_temperature), device=device)
        self.log_alpha.requires_grad_(True)
        self.target_entropy = -float(act_dim) if config.target_entropy is None else config.target_entropy
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.temperature_lr)

    def policy(self, obs: Tensor, noise: Noise = GLOBAL_NOISE) -> tuple[Tensor, Tensor, Tensor]:
        """Sample a ~ pi(.|s): returns (action, log pi(action|s), tanh of the mean)."""
        mean, log_std = self.actor(obs).chunk(2, dim=-1)
        std = log_std.clamp(self.config.log_std_min, self.config.log_std_max).exp()
        u = mean + std * noise.normal(mean.shape, mean.device)
        gaussian_log_prob = (-0.5 * ((u - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        tanh_log_det = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), gaussian_log_prob - tanh_log_det, torch.tanh(mean)

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool, noise: Noise = GLOBAL_NOISE) -> Tensor:
        action, _, mean_action = self.policy(obs, noise)
        return action if explore else mean_action

    def update(self, batch: Batch) -> dict[str, Tensor]:
        alpha = self.log_alpha.detach().exp().unsqueeze(-1)
        critic_loss, q = self.update_critic(batch, alpha)
        actor_loss, log_prob = self.update_actor(batch.obs, alpha)
        alpha_loss = self.update_temperature(log_prob)
        soft_update_(self.critic_target, self.critic, self.config.tau)
        return {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "alpha_loss": alpha_loss.detach(),
            "alpha": alpha.squeeze(-1),
            "entropy": -log_prob.mean(-1),
            "q_mean": q.detach().mean((-2, -1)),
        }

    @torch.no_grad()
    def bellman_target(self, batch: Batch, alpha: Tensor) -> Tensor:
        """`y = r + gamma (1 - done) [min_j Q'_j(s', a') - alpha log pi(a'|s')]`, `[seeds, batch]`."""
        next_action, next_log_prob, _ = self.policy(batch.next_obs)
        next_q = self.critic_target(batch.next_obs, next_action).min(dim=1).values
        return td_target(batch, self.config.gamma, next_q - alpha * next_log_prob)

    def update_critic(self, batch: Batch, alpha: Tensor) -> tuple[Tensor, Tensor]:
        return critic_step(self.critic, self.critic_optimizer, batch, self.bellman_target(batch, alpha))

    def update_actor(self, obs: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
        action, log_prob, _ = self.policy(obs)
        with frozen(self.critic):
            q = self.critic(obs, action).min(dim=1).values
        loss = (alpha * log_prob - q).mean(-1)
        optimizer_step(self.actor_optimizer, loss)
        return loss, log_prob.detach()

    def update_temperature(self, log_prob: Tensor) -> Tensor:
        alpha = self.log_alpha.exp().unsqueeze(-1)
        loss = -(alpha * (log_prob + self.target_entropy)).mean(-1)
        optimizer_step(self.alpha_optimizer, loss)
        return loss


ALGORITHM = Algorithm(
    name="sac",
    display_name="SAC",
    summary="Soft Actor-Critic: tanh-Gaussian policy, twin critics, automatic entropy tuning",
    config_cls=SACConfig,
    make_agent=SAC,
)
