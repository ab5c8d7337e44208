"""Running per-seed means of the update diagnostics, summed on the training device and read at evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


class DiagnosticsMean:
    """Sums `{name: [seeds]}` of every update since the last `pop`, and how many were added."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, diagnostics: dict[str, Tensor]) -> None:
        for name, value in diagnostics.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + 1

    def pop(self) -> dict[str, np.ndarray]:
        """The means since the last call, read to the host (one sync), and a fresh start."""
        means = {name: (total / self.counts[name]).cpu().numpy() for name, total in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means

    def state_dict(self) -> dict[str, Any]:
        """Named as a checkpoint stores them: the sums among its tensors, the counts in its document."""
        return {"diagnostic_sums": self.sums, "diagnostic_counts": self.counts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = {name: total.to(self.device) for name, total in state["diagnostic_sums"].items()}
        self.counts = dict(state["diagnostic_counts"])
