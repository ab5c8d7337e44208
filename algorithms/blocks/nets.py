"""Seed-batched networks: every parameter carries a leading seed axis (critics also an ensemble axis).

A batched layer applies `members` independent weight matrices with one batched matmul, so N seeds
cost one kernel launch instead of N. Initial weights are drawn per seed from that seed's own
generator, which makes seed k's initialisation the same whichever seeds share its batch.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn


def seed_generators(seeds: Sequence[int], purpose: str) -> list[torch.Generator]:
    """One CPU generator per run seed, distinct for each `purpose` (e.g. the algorithm's name)."""
    salt = zlib.crc32(purpose.encode())
    return [
        torch.Generator().manual_seed(int(np.random.SeedSequence([seed, salt]).generate_state(1)[0]))
        for seed in seeds
    ]


def per_seed_uniform(shape: Sequence[int], bound: float, generators: Sequence[torch.Generator]) -> Tensor:
    """A `[seeds, *shape]` tensor whose slice k is drawn U(-bound, bound) from generator k alone."""
    return torch.stack([(torch.rand(*shape, generator=g) * 2.0 - 1.0) * bound for g in generators])


def per_seed_orthogonal(shape: Sequence[int], gain: float, generators: Sequence[torch.Generator]) -> Tensor:
    """A `[seeds, *ensemble, in, out]` tensor whose every `[in, out]` matrix is a random (semi-)orthogonal one times
    `gain`, seed k's from generator k alone (flax's `initializers.orthogonal` on a Dense kernel)."""
    *ensemble, n_in, n_out = shape
    members = math.prod(ensemble)

    def draw(g: torch.Generator) -> Tensor:
        return torch.stack([nn.init.orthogonal_(torch.empty(n_in, n_out), gain, generator=g) for _ in range(members)])

    return torch.stack([draw(g).view(*shape) for g in generators])


Init = Literal["torch", "xavier", "scaled_normal", "truncated_normal", "orthogonal"]
Activation = Callable[[Tensor], Tensor]


class BatchedLinear(nn.Module):
    """`y = x @ W + b` with `W: [seeds, *ensemble, in, out]`.

    `init="torch"` draws weights and biases as `nn.Linear` does (U(+-1/sqrt(in)), the CleanRL
    baselines); `init="xavier"` draws Xavier-uniform weights and zero biases (the jaxrl5 default,
    used by the official QSM code); `init="scaled_normal"` draws N(0, 1/(4 in)) weights and zero
    biases, what DIPO's and QVPO's `init_weights` (agent/helpers.py) leaves in the layer: it means to
    truncate at two stds, but its loop rebinds a local name and never writes the redrawn values back;
    `init="truncated_normal"` draws weights N(0, 1/in) truncated at two stds (no variance correction, so
    their std is about 0.88/sqrt(in)) and zero biases, Haiku's hk.Linear default (DACER's JAX code);
    `init="orthogonal"` draws orthogonal weights times sqrt(2) and zero biases, FlowRL's default
    (typoverflow/flow-rl@bae22f4 flowrl/module/initialization.py:9-21).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        generators: Sequence[torch.Generator],
        ensemble: tuple[int, ...] = (),
        init: Init = "torch",
    ):
        super().__init__()
        weight_shape, bias_shape = (*ensemble, in_features, out_features), (*ensemble, 1, out_features)
        if init == "xavier":
            bound = math.sqrt(6.0 / (in_features + out_features))
            self.weight = nn.Parameter(per_seed_uniform(weight_shape, bound, generators))
            self.bias = nn.Parameter(torch.zeros(len(generators), *bias_shape))
        elif init == "scaled_normal":
            std = 1.0 / (2.0 * math.sqrt(in_features))
            self.weight = nn.Parameter(torch.stack([torch.randn(*weight_shape, generator=g) * std for g in generators]))
            self.bias = nn.Parameter(torch.zeros(len(generators), *bias_shape))
        elif init == "orthogonal":
            self.weight = nn.Parameter(per_seed_orthogonal(weight_shape, math.sqrt(2.0), generators))
            self.bias = nn.Parameter(torch.zeros(len(generators), *bias_shape))
        elif init == "truncated_normal":
            std = 1.0 / math.sqrt(in_features)
            self.weight = nn.Parameter(torch.stack([
                nn.init.trunc_normal_(torch.empty(*weight_shape), 0.0, std, -2.0 * std, 2.0 * std, generator=g)
                for g in generators
            ]))
            self.bias = nn.Parameter(torch.zeros(len(generators), *bias_shape))
        else:
            bound = 1.0 / math.sqrt(in_features)
            self.weight = nn.Parameter(per_seed_uniform(weight_shape, bound, generators))
            self.bias = nn.Parameter(per_seed_uniform(bias_shape, bound, generators))

    def forward(self, x: Tensor) -> Tensor:
        """x: `[seeds, *ensemble, batch, in]` (ensemble dims may be 1 to broadcast) -> `[..., batch, out]`.

        Without an ensemble axis the bias is added inside the product (`baddbmm`), one pass over the output
        fewer: 10% of an update of the diffusion policies on the CPU, whose chains are these layers."""
        if x.dim() == 3 and self.weight.dim() == 3:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.matmul(x, self.weight) + self.bias


class BatchedMLP(nn.Module):
    """An MLP (ReLU by default, linear output) with independent weights per seed and ensemble member."""

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        generators: Sequence[torch.Generator],
        ensemble: tuple[int, ...] = (),
        activation: Activation = torch.relu,
        init: Init = "torch",
    ):
        super().__init__()
        sizes = [in_features, *hidden_sizes, out_features]
        self.activation = activation
        self.layers = nn.ModuleList(
            BatchedLinear(n_in, n_out, generators, ensemble, init) for n_in, n_out in itertools.pairwise(sizes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.from_first_layer(self.layers[0](x))

    def from_first_layer(self, h: Tensor) -> Tensor:
        """The network's output given its first layer's output (before the activation).

        `islice`, not `self.layers[1:]`: slicing a ModuleList builds a new module on every call.
        """
        for layer in itertools.islice(self.layers, 1, None):
            h = layer(self.activation(h))
        return h


class QEnsemble(nn.Module):
    """`num_critics` state-action critics per seed: `Q(s, a) -> [seeds, num_critics, batch]`."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int],
        generators: Sequence[torch.Generator],
        num_critics: int = 2,
        init: Init = "torch",
        activation: Activation = torch.relu,
    ):
        super().__init__()
        self.mlp = BatchedMLP(
            obs_dim + act_dim, hidden_sizes, 1, generators, ensemble=(num_critics,), activation=activation, init=init
        )

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        """obs `[seeds, batch, obs_dim]`, action `[seeds, batch, act_dim]`."""
        x = torch.cat([obs, action], dim=-1).unsqueeze(1)
        return self.mlp(x).squeeze(-1)


@torch.no_grad()
def soft_update_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging `target <- (1 - tau) target + tau source`, fused over all parameters."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def compile_networks(agent: object, backend: str | Callable[..., Any] = "inductor") -> None:
    """Compile, in place, every network of `agent` (its nn.Module attributes) with torch.compile.

    The networks are where the kernels are: compiled, each forward and (through AOTAutograd) backward fuses
    its bias adds and activations. The update rule around them stays eager Python, so its branches on host
    counters (TD3's policy delay, Diffusion-QL's EMA schedule, QSM's learning-rate decay) and the optimisers
    never cause a recompilation, and the parameters and checkpoints keep their names.
    """
    for module in vars(agent).values():
        if isinstance(module, nn.Module):
            module.compile(backend=backend)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Treat `module`'s parameters as constants: gradients still reach its inputs, not its weights.

    An actor's loss backpropagates through the critic to the action; computing the critic's own
    weight gradients there would be wasted work (one weight-gradient matmul per critic layer).
    """
    module.requires_grad_(False)
    try:
        yield module
    finally:
        module.requires_grad_(True)
