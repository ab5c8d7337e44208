"""Per-seed divergence detection, so one seed's NaN neither passes as a result nor stops the others.

Values the loop already has on the host are checked every step, at no cost: the actions the
simulator needs (before it is stepped with them: DeepMind Control raises PhysicsError on a NaN
action), the rewards and observations it returns, evaluation actions and returns. Values on the
training device are checked every `CHECK_EVERY` steps and before every evaluation, with one host
read: the losses through the running sums of the update diagnostics (a NaN or inf at any step of
the interval stays in the sum), and every parameter of the agent directly.

A seed found non-finite is recorded once, with the step of the check and the quantity, and is dead
from then on: the trainer stops stepping its envs and writing its rows. Its slice of the batched
update keeps being computed, so shapes, and the draws from the shared random generators, stay
exactly those of a run without the fault; slices are independent (losses are summed over seeds,
optimisers and gradient clipping are per element or per seed), so the other seeds never see it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor

from qsmbench.algorithms import Agent
from qsmbench.algorithms.state import seed_tensors
from qsmbench.runs.format import Divergence

CHECK_EVERY = 1000  # steps between device-side checks: one host read per interval


class DivergenceWatch:
    """Which seeds of a run are still live, and where each dead one went non-finite."""

    def __init__(self, seeds: int):
        self.live = np.ones(seeds, dtype=bool)
        self.found: list[Divergence | None] = [None] * seeds

    def check(self, step: int, quantity: str, values: np.ndarray) -> None:
        """Host values `[seeds, ...]`: mark each live seed with a non-finite value."""
        self.mark(~np.isfinite(values.reshape(len(self.live), -1)).all(axis=1), step, quantity)

    def check_device(self, step: int, loss_sums: dict[str, Tensor], agent: Agent) -> None:
        """Running sums of the diagnostics `{name: [seeds]}` and the agent's parameters, in one host read."""
        names = list(loss_sums)
        flags = [torch.isfinite(loss_sums[name]) for name in names]
        parameters = seed_tensors(agent, len(self.live))
        if parameters:
            names.append("parameters")
            seeds = len(self.live)
            flags.append(torch.stack([p.detach().reshape(seeds, -1).isfinite().all(dim=1) for p in parameters]).all(dim=0))
        if flags:
            for name, finite in zip(names, torch.stack(flags).cpu().numpy()):
                self.mark(~finite, step, name)

    def mark(self, dead: np.ndarray, step: int, quantity: str) -> None:
        """Record the seeds in the `[seeds]` mask `dead` that were still live."""
        for index in np.flatnonzero(dead & self.live):
            self.found[index] = Divergence(step, quantity)
        self.live &= ~dead

    @property
    def all_dead(self) -> bool:
        return not self.live.any()

    def state_dict(self) -> dict[str, Any]:
        return {"live": self.live.tolist(), "divergences": [dataclasses.asdict(d) if d else None for d in self.found]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.live[:] = state["live"]
        self.found = [Divergence(**found) if found else None for found in state["divergences"]]

