"""Pieces of update rules that several algorithms share: the per-seed optimiser step, the
twin-critic regression onto a Bellman target, and clipped Gaussian action noise.

Each keeps seeds independent: losses arrive per seed `[seeds]` and are summed, so every seed gets
the gradient it would get alone; clipping, when asked for, is per seed too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise
from qsmbench.algorithms.contract import Batch


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


def perturb(action: Tensor, std: float, noise: Noise = GLOBAL_NOISE) -> Tensor:
    """`clip(action + N(0, std^2), -1, 1)`: Gaussian exploration or target-smoothing noise."""
    return (action + std * noise.normal(action.shape, action.device)).clamp(-1.0, 1.0)


def linear_schedule(start: float, end: float, decay_start: int, decay_steps: int, count: int) -> float:
    """optax.linear_schedule(start, end, transition_steps=decay_steps, transition_begin=decay_start) at step `count`:
    `start` for the first `decay_start` steps, then linear to `end` over `decay_steps`, then `end`. SDAC's and the
    SDAC repository's relax QSM's learning rates follow it, counted in their optimiser's steps."""
    remaining = 1 - min(max(count - decay_start, 0), decay_steps) / decay_steps
    return (start - end) * remaining + end  # optax's own arithmetic, so the rates match it to the last bit
