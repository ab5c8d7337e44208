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

from qsmbench.config import OffPolicyConfig
from qsmbench.replay import Batch


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


def optimizer_step(optimizer: torch.optim.Optimizer, per_seed_loss: Tensor) -> None:
    """One step on the sum of per-seed losses `[seeds]`: each seed's gradient is that of its own loss.

    No gradient clipping or normalisation across the seed axis here: that would couple seeds.
    """
    optimizer.zero_grad(set_to_none=True)
    per_seed_loss.sum().backward()
    optimizer.step()


def td_target(batch: Batch, gamma: float, next_value: Tensor) -> Tensor:
    """`r + gamma (1 - terminated) V(s')`, `[seeds, batch]`: truncated episodes still bootstrap."""
    return batch.reward + gamma * (1.0 - batch.terminated) * next_value


def critic_step(
    critic: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, target: Tensor
) -> tuple[Tensor, Tensor]:
    """Regress every critic of the ensemble onto `target`: per seed, batch mean and critic sum.

    Returns the per-seed loss `[seeds]` and the critics' values `[seeds, critics, batch]`.
    """
    q = critic(batch.obs, batch.action)
    loss = ((q - target.unsqueeze(1)) ** 2).mean(-1).sum(-1)
    optimizer_step(optimizer, loss)
    return loss, q


def perturb(action: Tensor, std: float) -> Tensor:
    """`clip(action + N(0, std^2), -1, 1)`: Gaussian exploration or target-smoothing noise."""
    return (action + std * torch.randn_like(action)).clamp(-1.0, 1.0)
