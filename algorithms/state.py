"""What an agent holds, worked out in one place: divergence checks, saved policies and checkpoints all ask here.

An agent is its config plus attributes of four kinds: networks (`nn.Module`, target and EMA copies
included), free tensors (SAC's log temperature), optimisers and integer counters. Everything else it
has is made from its config in its constructor (schedules, sampler options), so these are all it needs
to act (`network_state`) or to go on training (`training_state`). Every tensor has a leading seed axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn


class AgentStateError(ValueError):
    """A saved state whose parts or shapes do not fit the agent it is loaded into; the caller says whose."""


def network_state(agent: object) -> dict[str, Any]:
    """The agent's networks (state dicts) and free tensors, all seeds: what acting needs, without optimisers."""
    state: dict[str, Any] = {}
    for name, value in vars(agent).items():
        if isinstance(value, nn.Module):
            state[name] = value.state_dict()
        elif isinstance(value, Tensor):
            state[name] = value.detach()
    return state


def training_state(agent: object) -> dict[str, Any]:
    """Everything an agent learns or counts: `network_state`, its optimisers and its integer counters."""
    state = network_state(agent)
    for name, value in vars(agent).items():
        if isinstance(value, torch.optim.Optimizer):
            state[name] = value.state_dict()
        elif isinstance(value, int) and not isinstance(value, bool):
            state[name] = value
    return state


def load_state(agent: object, state: Mapping[str, Any]) -> None:
    """Put `state` (from `network_state` or `training_state` of the same algorithm and settings) into `agent`,
    in place, so the optimisers keep their parameters; AgentStateError when its parts do not match."""
    try:
        for name, saved in state.items():
            value = getattr(agent, name)
            if isinstance(value, (nn.Module, torch.optim.Optimizer)):
                value.load_state_dict(saved)
            elif isinstance(value, Tensor):
                with torch.no_grad():
                    value.copy_(saved)
            else:
                setattr(agent, name, int(saved))
    except (AttributeError, RuntimeError, ValueError, KeyError, TypeError) as error:
        raise AgentStateError(str(error).splitlines()[0] if str(error) else type(error).__name__) from None


def check_parts(agent: object, state: Mapping[str, Any]) -> None:
    """AgentStateError unless `state` has exactly the parts of `training_state(agent)`."""
    expected = training_state(agent)
    if set(expected) != set(state):
        raise AgentStateError(f"the saved agent has parts {sorted(state)}, this one {sorted(expected)}")


def seed_tensors(agent: object, seeds: int) -> list[Tensor]:
    """Every floating tensor the agent keeps per seed (parameters and buffers of its networks, targets and EMA
    copies included, and free tensors), for a finiteness check: all with a leading axis of `seeds`."""
    tensors = [tensor for value in network_state(agent).values() for tensor in _leaves(value)]
    return [t for t in tensors if t.dim() >= 1 and t.shape[0] == seeds and t.is_floating_point()]


def _leaves(value: Any) -> list[Tensor]:
    return [t for part in value.values() for t in _leaves(part)] if isinstance(value, Mapping) else [value]


def seed_slice(state: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Seed `index` of every tensor in `state` (their leading axis is the seed axis), kept as an axis of 1."""
    return {
        name: seed_slice(value, index) if isinstance(value, Mapping) else value[index : index + 1].detach().cpu().clone()
        for name, value in state.items()
    }


def stack_seeds(parts: Sequence[Any]) -> Any:
    """Per-seed slices (tensors, or nested dicts of them, from `seed_slice`) concatenated along the seed axis."""
    if isinstance(parts[0], Mapping):
        return {name: stack_seeds([part[name] for part in parts]) for name in parts[0]}
    return torch.cat(list(parts))
