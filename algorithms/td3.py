"""Twin Delayed DDPG (Fujimoto, van Hoof, Meger, 2018).

Per seed, with deterministic actor mu, twin critics Q_1, Q_2 and their targets mu', Q':

    a'   = clip(mu'(s') + clip(eps, -c, c), -1, 1),   eps ~ N(0, sigma_target^2)
    y    = r + gamma (1 - done) min_j Q'_j(s', a')
    L_Q  = sum_j E[(Q_j(s, a) - y)^2]                  every update
    L_mu = -E[Q_1(s, mu(s))]                           every `policy_delay` updates,
                                                       followed by the Polyak target updates

Exploration adds N(0, sigma_explore^2) to mu(s). Losses are batch means summed over seeds.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from qsmbench.algorithms.blocks.nets import BatchedMLP, QEnsemble, frozen, seed_generators, soft_update_
from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise
from qsmbench.algorithms.blocks.updates import critic_step, optimizer_step, perturb, td_target
from qsmbench.algorithms.contract import Algorithm, Batch
from qsmbench.core.config import TD3_CODE, OffPolicyConfig, require, setting


@dataclass(frozen=True)
class TD3Config(OffPolicyConfig):
    actor_lr: float = setting(3e-4, "Adam learning rate of the actor", f"{TD3_CODE} TD3.py")
    critic_lr: float = setting(3e-4, "Adam learning rate of the twin critics", f"{TD3_CODE} TD3.py")
    exploration_noise: float = setting(
        0.1, "std of the Gaussian noise added to the actor's action when acting in training (actions in [-1, 1])",
        f"{TD3_CODE} main.py: expl_noise",
    )
    target_noise: float = setting(
        0.2, "std of the target policy smoothing noise on the next action", f"{TD3_CODE} main.py: policy_noise"
    )
    target_noise_clip: float = setting(
        0.5, "the smoothing noise is clipped to [-c, c] with this c", f"{TD3_CODE} main.py: noise_clip"
    )
    policy_delay: int = setting(
        2, "critic updates per actor update (and per target update)", f"{TD3_CODE} main.py: policy_freq"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(min(self.actor_lr, self.critic_lr) > 0, "learning rates must be positive")
        require(self.exploration_noise >= 0 and self.target_noise >= 0, "noise scales must be non-negative")
        require(self.target_noise_clip >= 0, f"target_noise_clip must be non-negative, got {self.target_noise_clip}")
        require(self.policy_delay >= 1, f"policy_delay must be at least 1, got {self.policy_delay}")


class TD3:
    def __init__(
        self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: TD3Config
    ):
        self.config = config
        generators = seed_generators(seeds, "td3")
        self.actor = BatchedMLP(obs_dim, config.hidden_sizes, act_dim, generators).to(device)
        self.critic = QEnsemble(obs_dim, act_dim, config.hidden_sizes, generators).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.updates = 0

    def mu(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.actor(obs))

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool, noise: Noise = GLOBAL_NOISE) -> Tensor:
        action = self.mu(obs)
        return perturb(action, self.config.exploration_noise, noise) if explore else action

    def update(self, batch: Batch) -> dict[str, Tensor]:
        critic_loss, q = self.update_critic(batch)
        diagnostics = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean((-2, -1))}
        self.updates += 1
        if self.updates % self.config.policy_delay == 0:
            diagnostics["actor_loss"] = self.update_actor(batch.obs).detach()
            soft_update_(self.actor_target, self.actor, self.config.tau)
            soft_update_(self.critic_target, self.critic, self.config.tau)
        return diagnostics

    @torch.no_grad()
    def bellman_target(self, batch: Batch) -> Tensor:
        """`y = r + gamma (1 - done) min_j Q'_j(s', a')` with the smoothed target action a'."""
        config = self.config
        noise = (config.target_noise * torch.randn_like(batch.action)).clamp(
            -config.target_noise_clip, config.target_noise_clip
        )
        next_action = (torch.tanh(self.actor_target(batch.next_obs)) + noise).clamp(-1.0, 1.0)
        next_q = self.critic_target(batch.next_obs, next_action).min(dim=1).values
        return td_target(batch, config.gamma, next_q)

    def update_critic(self, batch: Batch) -> tuple[Tensor, Tensor]:
        return critic_step(self.critic, self.critic_optimizer, batch, self.bellman_target(batch))

    def update_actor(self, obs: Tensor) -> Tensor:
        with frozen(self.critic):
            loss = -self.critic(obs, self.mu(obs))[:, 0].mean(-1)
        optimizer_step(self.actor_optimizer, loss)
        return loss


ALGORITHM = Algorithm(
    name="td3",
    display_name="TD3",
    summary="TD3: deterministic actor, twin critics, target policy smoothing, delayed actor updates",
    config_cls=TD3Config,
    make_agent=TD3,
)
