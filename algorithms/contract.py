"""The contract between the shared trainer and an algorithm.

An algorithm is its networks plus an update rule. It knows nothing about environments, replay
storage, files or the terminal: the trainer hands it observations and batches of transitions,
each with a leading seed axis, and it hands back actions and per-seed diagnostics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise
from qsmbench.core.config import OffPolicyConfig


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


@dataclass(frozen=True)
class ActionDraw:
    """Replay slots `[seeds, n]` with their states and their improved actions (DIPO's diffusion memory)."""

    index: Tensor
    obs: Tensor
    action: Tensor


class Replay(Transitions, Protocol):
    """The online replay as an agent that draws its own minibatches sees it (`Algorithm.draws_from_replay`).

    Asked to (`keep_improved_actions`), it also keeps per slot a second action, initially the one taken,
    which the agent rewrites: the memory of actions moved uphill on Q of DIPO's paper.
    """

    def keep_improved_actions(self) -> None:
        """Keep an improved action per transition from now on (before the first transition is stored)."""
        ...

    def sample_improved(self, batch_size: int) -> ActionDraw:
        """`batch_size` slots per seed, drawn uniformly with replacement, independently of `sample`'s."""
        ...

    def write_improved(self, index: Tensor, action: Tensor) -> None:
        """Replace the improved actions at slots `index` `[seeds, n]`."""
        ...


@dataclass(frozen=True)
class EnvDims:
    """The sizes an agent is built for: its environment's observation and action dimensions."""

    obs_dim: int
    act_dim: int


class Agent(Protocol):
    def act(self, obs: Tensor, explore: bool, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """Actions in [-1, 1], `[seeds, n, act_dim]`, for observations `[seeds, n, obs_dim]`.

        `explore=False` is the evaluation action (e.g. the mean for SAC, no noise for TD3). Every random
        draw comes from `noise` (qsmbench.algorithms.blocks.randomness): evaluation passes one generator per seed.
        """
        ...

    def update(self, batch: Batch) -> dict[str, Tensor]:
        """One gradient step on every seed; returns detached diagnostics of shape `[seeds]`.

        Must not read tensor values on the host (no `.item()`), so the trainer can queue updates
        on a GPU back to back and read the diagnostics only at evaluation time.
        """
        ...


class ReplayAgent(Agent, Protocol):
    def use_replay(self, replay: Replay) -> None:
        """Keep `replay` to draw minibatches from in `update`, beside the batch the trainer hands it."""
        ...


class AgentFactory(Protocol):
    def __call__(
        self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: OffPolicyConfig
    ) -> Agent: ...


@dataclass(frozen=True)
class Algorithm:
    """A registry entry: how `qsmbench run --algo NAME` configures and builds an agent."""

    name: str
    display_name: str  # how figures name it (`QSM`, `Diffusion-QL`); `qsmbench plot --label` overrides it
    summary: str
    config_cls: type[OffPolicyConfig]
    make_agent: AgentFactory
    offline: bool = False  # can train from a fixed dataset (`qsmbench run --dataset`)
    # its update draws more minibatches from the replay than the one it is handed (DIPO, QVPO): its agent is
    # a ReplayAgent, handed the online replay once built
    draws_from_replay: bool = False
