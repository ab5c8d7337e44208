"""Seed-batched replay on the training device, with each observation stored once.

All seeds step in lockstep, so they share the transition write position and size; each seed samples
indices into its own slice only, independently of the others.

Layout. Transitions live in `[seeds, capacity, ...]` tensors (action, reward, terminated). Observations
live in a per-seed stream, `[seeds, rows, obs_dim]`, written in the order the env produced them:
transition i's observation is stream row `obs_row[i]`, and its next observation is always the row after
it. While an episode goes on, that row is also the next transition's observation; where an episode
ended, the row holds the true final observation and the new episode's first observation goes one row
further. So a step costs one observation row, and an episode end one more, instead of two rows per step
(s and s' both stored): 53% of the old bytes for Humanoid, 62% for Hopper (docs/benchmarks.md).

The stream has room for `capacity` transitions plus `spare` episode ends among them. The host knows
where episodes end, so when more ends than that are in the buffer (very short episodes, e.g. a random
policy on Hopper) it doubles the spare rows at once: a few times in a run at most, with no host sync.
Samples are exactly those of storing s and s' per transition.

Improved actions. An agent may ask for a second action per transition (`keep_improved_actions`), which
starts as the action taken and which it rewrites: the memory of actions moved uphill on Q in DIPO's
paper. It has the seed axis of the rest and goes into checkpoints with it.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from qsmbench.algorithms.contract import ActionDraw, Agent, Algorithm, Batch, ReplayAgent


def initial_spare(capacity: int) -> int:
    """Episode ends the observation stream has room for at first: plenty for time-limited locomotion tasks."""
    return max(8, capacity // 32)


def replay_bytes_per_seed_step(obs_dim: int, act_dim: int, capacity: int) -> float:
    """Device bytes per seed and stored transition, before any growth, and the host's episode-end flag."""
    observation = 4 * obs_dim * (capacity + initial_spare(capacity) + 1) / capacity
    return observation + 4 * act_dim + 4 + 1 + 4 + 1  # action, reward, terminated, obs_row, host flag


def make_replay(
    algorithm: Algorithm, agent: Agent, seeds: int, capacity: int, obs_dim: int, act_dim: int, device: torch.device
) -> SeedBatchedReplay:
    """The online replay of `agent`, handed to it when its update draws from the replay itself (DIPO, QVPO)."""
    replay = SeedBatchedReplay(seeds, capacity, obs_dim, act_dim, device)
    if algorithm.draws_from_replay:
        cast(ReplayAgent, agent).use_replay(replay)
    return replay


class SeedBatchedReplay:
    def __init__(self, seeds: int, capacity: int, obs_dim: int, act_dim: int, device: torch.device):
        self.seeds, self.capacity, self.obs_dim, self.act_dim, self.device = seeds, capacity, obs_dim, act_dim, device
        self.spare = initial_spare(capacity)
        self.stream = torch.empty(seeds, self.rows, obs_dim, device=device)
        self.obs_row = torch.zeros(seeds, capacity, dtype=torch.int32, device=device)
        self.action = torch.empty(seeds, capacity, act_dim, device=device)
        self.reward = torch.empty(seeds, capacity, device=device)
        self.terminated = torch.empty(seeds, capacity, dtype=torch.bool, device=device)
        self.improved_action: Tensor | None = None
        self.position = 0
        self.size = 0
        self.head = np.zeros(seeds, dtype=np.int64)  # per seed, the stream row the next observation goes to
        self.ended = np.zeros((seeds, capacity), dtype=bool)  # host copy: which stored transitions end an episode
        self.ends = np.zeros(seeds, dtype=np.int64)  # per seed, how many stored transitions end an episode
        self._seeds = torch.arange(seeds, device=device)
        self._seed_index = self._seeds.unsqueeze(1)

    @property
    def rows(self) -> int:
        """Stream rows: one per transition, one per episode end among them, one for the newest s'."""
        return self.capacity + self.spare + 1

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        ended: np.ndarray,
    ) -> None:
        """Store one transition per seed (`[seeds, ...]` each), overwriting the oldest when full.

        `ended` marks the seeds whose episode ended with this step (terminated or truncated): their
        `next_obs` gets a row of its own. Where it is False, `next_obs` must be the `obs` of the seed's
        next `add`, as it is for an env that goes on: the two share a row.
        """
        i = self.position
        if self.size == self.capacity:
            self.ends -= self.ended[:, i]
        self.ended[:, i] = ended
        self.ends += ended
        if self.ends.max() > self.spare:
            self._grow()
        rows = torch.as_tensor(self.head, device=self.device)
        self.stream[self._seeds, rows] = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        self.stream[self._seeds, (rows + 1) % self.rows] = torch.as_tensor(next_obs, dtype=torch.float32, device=self.device)
        self.obs_row[:, i] = rows.to(torch.int32)
        self.action[:, i] = torch.as_tensor(action, device=self.device)
        if self.improved_action is not None:
            self.improved_action[:, i] = self.action[:, i]
        self.reward[:, i] = torch.as_tensor(reward, device=self.device)
        self.terminated[:, i] = torch.as_tensor(terminated, device=self.device)
        self.head = (self.head + 1 + ended) % self.rows
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        """`batch_size` transitions per seed, drawn uniformly with replacement from that seed's data."""
        return self.transitions_at(torch.randint(0, self.size, (self.seeds, batch_size), device=self.device))

    def keep_improved_actions(self) -> None:
        """Keep an improved action per transition from now on, each starting as the stored action."""
        if self.improved_action is None:
            self.improved_action = self.action.clone()

    def sample_improved(self, batch_size: int) -> ActionDraw:
        """`batch_size` slots per seed, drawn as `sample` draws, with their states and improved actions."""
        if self.improved_action is None:
            raise RuntimeError("this replay keeps no improved actions (keep_improved_actions was never called)")
        index = torch.randint(0, self.size, (self.seeds, batch_size), device=self.device)
        rows = self.obs_row[self._seed_index, index].long()
        return ActionDraw(index, self.stream[self._seed_index, rows], self.improved_action[self._seed_index, index])

    def write_improved(self, index: Tensor, action: Tensor) -> None:
        """Replace the improved actions at slots `index` `[seeds, n]` (of a slot drawn twice, one write wins)."""
        self.improved_action[self._seed_index, index] = action

    def transitions_at(self, index: Tensor) -> Batch:
        """The transitions stored at slots `index` `[seeds, n]`, each seed's from its own slice."""
        rows = self.obs_row[self._seed_index, index].long()
        return Batch(
            self.stream[self._seed_index, rows],
            self.action[self._seed_index, index],
            self.reward[self._seed_index, index],
            self.stream[self._seed_index, (rows + 1) % self.rows],
            self.terminated[self._seed_index, index].float(),
        )

    def _grow(self) -> None:
        """Double the spare rows, moving each seed's live rows to the start of a larger stream, in order."""
        oldest = (self.position if self.size == self.capacity else 0) % self.capacity
        base = self.obs_row[:, oldest].long() if self.size else torch.zeros(self.seeds, dtype=torch.long)
        base = base.to(self.device)
        old_rows = self.rows
        self.spare *= 2
        order = (base.unsqueeze(1) + torch.arange(old_rows, device=self.device)) % old_rows
        stream = torch.empty(self.seeds, self.rows, self.obs_dim, device=self.device)
        stream[:, :old_rows] = self.stream[self._seed_index, order]
        self.stream = stream
        self.obs_row = ((self.obs_row.long() - base.unsqueeze(1)) % old_rows).to(torch.int32)
        self.head = (self.head - base.cpu().numpy()) % old_rows

    # -------------------------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The filled part, compact copies on the CPU (a saved view would save its whole storage)."""
        filled = self.size
        stream_end = self.rows if self.size == self.capacity else int(self.head.max()) + 2
        return {
            "position": self.position, "size": self.size, "spare": self.spare,
            "head": torch.from_numpy(self.head.copy()), "ended": torch.from_numpy(self.ended[:, :filled].copy()),
            "stream": _compact(self.stream[:, : min(stream_end, self.rows)]),
            "obs_row": _compact(self.obs_row[:, :filled]), "action": _compact(self.action[:, :filled]),
            "reward": _compact(self.reward[:, :filled]), "terminated": _compact(self.terminated[:, :filled]),
            **({} if self.improved_action is None else {"improved_action": _compact(self.improved_action[:, :filled])}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position, self.size, filled = int(state["position"]), int(state["size"]), int(state["size"])
        if int(state["spare"]) != self.spare:
            self.spare = int(state["spare"])
            self.stream = torch.empty(self.seeds, self.rows, self.obs_dim, device=self.device)
        self.head = state["head"].numpy().astype(np.int64)
        self.ended[:] = False
        self.ended[:, :filled] = state["ended"].numpy()
        self.ends = self.ended.sum(axis=1).astype(np.int64)
        self.stream[:, : state["stream"].shape[1]] = state["stream"].to(self.device)
        if ("improved_action" in state) != (self.improved_action is not None):
            raise ValueError("the saved replay and this one differ in keeping improved actions")
        for name in ("obs_row", "action", "reward", "terminated", *(("improved_action",) if "improved_action" in state else ())):
            getattr(self, name)[:, :filled] = state[name].to(self.device)


def _compact(tensor: Tensor) -> Tensor:
    return tensor.to("cpu", copy=True).contiguous()
