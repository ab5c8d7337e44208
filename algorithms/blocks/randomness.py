"""Where an action's randomness comes from.

Training acts with torch's global generator: one draw covers every seed (`GLOBAL_NOISE`), the cheapest on
a GPU. Evaluation acts with a generator per seed, seeded from the run seed and the evaluation's step
(`SeedNoise.for_evaluation`): seed k's evaluation is then the same whichever seeds share its batch or
its evaluation process, evaluating never moves the training's random stream (so `--eval-every` cannot
change what a seed learns), and a resumed run needs no evaluation generator state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

EVALUATION_SALT = 0x401_5E  # apart from every other use of a run seed (eval_env_seed salts with 0xE7A1)


class Noise(Protocol):
    """Standard normal and uniform draws of `shape`, whose first axis is the seed axis."""

    def normal(self, shape: Sequence[int], device: torch.device) -> Tensor: ...

    def uniform(self, shape: Sequence[int], device: torch.device) -> Tensor: ...


class GlobalNoise:
    """torch's global generator on `device`: one draw for all seeds."""

    def normal(self, shape: Sequence[int], device: torch.device) -> Tensor:
        return torch.randn(*shape, device=device)

    def uniform(self, shape: Sequence[int], device: torch.device) -> Tensor:
        return torch.rand(*shape, device=device)


GLOBAL_NOISE = GlobalNoise()


class SeedNoise:
    """One CPU generator per seed: slice k of every draw comes from generator k alone, then moves to `device`."""

    def __init__(self, generators: Sequence[torch.Generator]):
        self.generators = list(generators)

    @classmethod
    def for_evaluation(cls, seeds: Sequence[int], step: int, stream: Sequence[int] = ()) -> SeedNoise:
        """The generators of the evaluation at `step`, one per run seed (`stream`: as for `eval_env_seed`)."""
        return cls([
            torch.Generator().manual_seed(
                int(np.random.SeedSequence([seed, EVALUATION_SALT, *stream, step]).generate_state(1)[0])
            )
            for seed in seeds
        ])

    def normal(self, shape: Sequence[int], device: torch.device) -> Tensor:
        return self._draw(torch.randn, shape, device)

    def uniform(self, shape: Sequence[int], device: torch.device) -> Tensor:
        return self._draw(torch.rand, shape, device)

    def _draw(self, draw: Callable[..., Tensor], shape: Sequence[int], device: torch.device) -> Tensor:
        if shape[0] != len(self.generators):
            raise ValueError(f"a draw of shape {tuple(shape)} for {len(self.generators)} seeds")
        return torch.stack([draw(*shape[1:], generator=generator) for generator in self.generators]).to(device)


def categorical(weights: Tensor, noise: Noise) -> Tensor:
    """One index per row of non-negative `weights` `[seeds, n, k]`, drawn with probability proportional to
    them by inverting their cumulative sum at a uniform draw: `[seeds, n]`."""
    cumulative = weights.cumsum(-1)
    u = noise.uniform(weights.shape[:-1], weights.device).unsqueeze(-1) * cumulative[..., -1:]
    return (cumulative <= u).sum(-1).clamp(max=weights.shape[-1] - 1)
