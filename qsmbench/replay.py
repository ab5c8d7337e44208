"""Seed-batched replay: one `[seeds, capacity, dim]` tensor per field, on the training device.

All seeds step in lockstep, so they share the write position and size; each seed samples indices
into its own slice only, independently of the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Batch:
    """Transitions with a leading seed axis: `[seeds, batch, ...]`.

    `terminated` marks true terminal states only; a time-limit truncation is stored as not
    terminated so that the target bootstraps through it.
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor


class Transitions(Protocol):
    """Where updates draw their minibatches: the replay buffer online, the dataset offline."""

    def sample(self, batch_size: int) -> Batch:
        """`batch_size` transitions per seed, `[seeds, batch_size, ...]`, each seed from its own draw."""
        ...


class SeedBatchedReplay:
    def __init__(self, seeds: int, capacity: int, obs_dim: int, act_dim: int, device: torch.device):
        self.seeds, self.capacity, self.act_dim, self.device = seeds, capacity, act_dim, device
        self.obs = torch.empty(seeds, capacity, obs_dim, device=device)
        self.action = torch.empty(seeds, capacity, act_dim, device=device)
        self.reward = torch.empty(seeds, capacity, device=device)
        self.next_obs = torch.empty(seeds, capacity, obs_dim, device=device)
        self.terminated = torch.empty(seeds, capacity, device=device)
        self.position = 0
        self.size = 0
        self._seed_index = torch.arange(seeds, device=device).unsqueeze(1)

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
    ) -> None:
        """Store one transition per seed (`[seeds, ...]` each), overwriting the oldest when full."""
        i = self.position
        self.obs[:, i] = torch.as_tensor(obs, device=self.device)
        self.action[:, i] = torch.as_tensor(action, device=self.device)
        self.reward[:, i] = torch.as_tensor(reward, device=self.device)
        self.next_obs[:, i] = torch.as_tensor(next_obs, device=self.device)
        self.terminated[:, i] = torch.as_tensor(terminated, dtype=torch.float32, device=self.device)
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        """`batch_size` transitions per seed, drawn uniformly with replacement from that seed's data."""
        index = torch.randint(0, self.size, (self.seeds, batch_size), device=self.device)
        rows = (self._seed_index, index)
        return Batch(self.obs[rows], self.action[rows], self.reward[rows], self.next_obs[rows], self.terminated[rows])
