"""The contract between the shared trainer and an algorithm.

An algorithm is its networks plus an update rule. It knows nothing about environments, replay
storage, files or the terminal: the trainer hands it observations and replay batches, each with a
leading seed axis, and it hands back actions and per-seed diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch import Tensor, nn

from qsmbench.config import OffPolicyConfig, require
from qsmbench.diffusion import SCHEDULES
from qsmbench.replay import Batch


@dataclass(frozen=True)
class DiffusionPolicyConfig(OffPolicyConfig):
    """Settings every diffusion-policy algorithm has; each algorithm sets its own defaults."""

    actor_hidden_sizes: tuple[int, ...] = (256, 256)
    diffusion_steps: int = 5
    schedule: str = "vp"
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    exploration_noise: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.diffusion_steps >= 1, f"diffusion_steps must be at least 1, got {self.diffusion_steps}")
        require(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        require(min(self.actor_lr, self.critic_lr) > 0, "learning rates must be positive")
        require(self.exploration_noise >= 0, "exploration_noise must be non-negative")


class Agent(Protocol):
    def act(self, obs: Tensor, explore: bool) -> Tensor:
        """Actions in [-1, 1], `[seeds, n, act_dim]`, for observations `[seeds, n, obs_dim]`.

        `explore=False` is the evaluation action (e.g. the mean for SAC, no noise for TD3).
        """
        ...

    def update(self, batch: Batch) -> dict[str, Tensor]:
        """One gradient step on every seed; returns detached diagnostics of shape `[seeds]`.

        Must not synchronise with the host (no `.item()`), so the trainer can run it on a GPU
        back to back and read the diagnostics only at evaluation time.
        """
        ...


class AgentFactory(Protocol):
    def __call__(
        self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: OffPolicyConfig
    ) -> Agent: ...


@dataclass(frozen=True)
class Algorithm:
    """A registry entry: how `qsmbench run --algo NAME` builds and configures an agent."""

    name: str
    summary: str
    config_cls: type[OffPolicyConfig]
    make_agent: AgentFactory
    offline: bool = False  # can train from a fixed dataset (`qsmbench run --dataset`)


def optimizer_step(optimizer: torch.optim.Optimizer, per_seed_loss: Tensor, max_grad_norm: float = 0.0) -> None:
    """One step on the sum of per-seed losses `[seeds]`: each seed's gradient is that of its own loss.

    `max_grad_norm > 0` clips each seed's gradient norm on its own; a norm taken across the seed
    axis, as `clip_grad_norm_` would, would let one seed's gradient shrink another's step.
    """
    optimizer.zero_grad(set_to_none=True)
    per_seed_loss.sum().backward()
    if max_grad_norm > 0:
        clip_grad_norm_per_seed_([p for group in optimizer.param_groups for p in group["params"]], max_grad_norm)
    optimizer.step()


@torch.no_grad()
def clip_grad_norm_per_seed_(parameters: Sequence[Tensor], max_norm: float) -> Tensor:
    """Scale each seed's gradients (leading axis of every parameter) to a norm of at most `max_norm`.

    Returns the per-seed norms before clipping, `[seeds]`; no host sync.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    norms = torch.stack([g.reshape(g.shape[0], -1).pow(2).sum(-1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for grad in grads:
        grad.mul_(scale.view(-1, *([1] * (grad.dim() - 1))))
    return norms


def td_target(batch: Batch, gamma: float, next_value: Tensor) -> Tensor:
    """`r + gamma (1 - terminated) V(s')`, `[seeds, batch]`: truncated episodes still bootstrap."""
    return batch.reward + gamma * (1.0 - batch.terminated) * next_value


def critic_step(
    critic: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, target: Tensor, max_grad_norm: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Regress every critic of the ensemble onto `target`: per seed, batch mean and critic sum.

    Returns the per-seed loss `[seeds]` and the critics' values `[seeds, critics, batch]`.
    """
    q = critic(batch.obs, batch.action)
    loss = ((q - target.unsqueeze(1)) ** 2).mean(-1).sum(-1)
    optimizer_step(optimizer, loss, max_grad_norm)
    return loss, q


def perturb(action: Tensor, std: float) -> Tensor:
    """`clip(action + N(0, std^2), -1, 1)`: Gaussian exploration or target-smoothing noise."""
    return (action + std * torch.randn_like(action)).clamp(-1.0, 1.0)
