"""The contract every registered algorithm keeps, tested over the whole registry.

A new algorithm is covered here as soon as it has its registry entry: seed independence, action
shapes and bounds, per-seed diagnostics. Its own update rule is tested in its own file.
"""

from __future__ import annotations

import copy

import pytest
import torch
from support import make_agent, make_batch

from qsmbench.algorithms import ALGORITHMS
from qsmbench.algorithms.contract import Batch

OBS_DIM, ACT_DIM = 3, 2
REGISTRY = list(ALGORITHMS)


def perturb_seed(batch: Batch, seed_index: int) -> Batch:
    """The same batch with every field of one seed replaced by other data."""
    other = make_batch(batch.obs.shape[0], OBS_DIM, ACT_DIM, generator_seed=99)
    fields = {}
    for name in ("obs", "action", "reward", "next_obs", "terminated"):
        value = getattr(batch, name).clone()
        value[seed_index] = getattr(other, name)[seed_index]
        fields[name] = value
    return Batch(**fields)


def all_tensors(agent: object) -> dict[str, torch.Tensor]:
    """Every parameter of the agent's networks, plus loose tensors such as SAC's temperature."""
    tensors = {}
    for attribute, value in vars(agent).items():
        if isinstance(value, torch.nn.Module):
            for name, parameter in value.named_parameters():
                tensors[f"{attribute}.{name}"] = parameter
        elif isinstance(value, torch.Tensor):
            tensors[attribute] = value
    return tensors


@pytest.mark.parametrize("algo", REGISTRY)
def test_perturbing_one_seed_leaves_other_seeds_bit_identical(algo: str) -> None:
    """Losses are summed over seeds and nothing else couples them, so seed 0 cannot see seed 1's data."""
    agent = make_agent(algo, [0, 1])
    twin = copy.deepcopy(agent)
    batch = make_batch(2, OBS_DIM, ACT_DIM)
    for updates in range(2):  # two updates, so delayed parts (TD3's actor) run too
        torch.manual_seed(updates)
        agent.update(batch)
        torch.manual_seed(updates)
        twin.update(perturb_seed(batch, seed_index=1))
    changed_seed_1 = False
    for name, value in all_tensors(agent).items():
        other = all_tensors(twin)[name]
        assert torch.equal(value[0], other[0]), f"seed 0's {name} depends on seed 1's data"
        changed_seed_1 |= not torch.equal(value[1], other[1])
    assert changed_seed_1, "perturbing seed 1's batch should change seed 1's update"


@pytest.mark.parametrize("algo", REGISTRY)
@pytest.mark.parametrize("explore", [True, False], ids=["explore", "evaluate"])
def test_actions_have_the_seed_axis_and_lie_in_the_unit_box(algo: str, explore: bool) -> None:
    agent = make_agent(algo, [0, 1, 2])
    actions = agent.act(10 * torch.randn(3, 5, OBS_DIM), explore=explore)
    assert actions.shape == (3, 5, ACT_DIM)
    assert actions.abs().max() <= 1.0 and torch.isfinite(actions).all()


@pytest.mark.parametrize("algo", REGISTRY)
def test_diagnostics_are_finite_detached_and_per_seed(algo: str) -> None:
    agent = make_agent(algo, [0, 1, 2])
    for _ in range(2):
        diagnostics = agent.update(make_batch(3, OBS_DIM, ACT_DIM))
    assert diagnostics and "critic_loss" in diagnostics
    for name, value in diagnostics.items():
        assert value.shape == (3,), name
        assert not value.requires_grad and torch.isfinite(value).all(), name


@pytest.mark.parametrize("algo", REGISTRY)
def test_registry_entry_is_consistent(algo: str) -> None:
    """Named as registered, with a summary, and a config class whose defaults validate."""
    algorithm = ALGORITHMS[algo]
    assert algorithm.name == algo and algorithm.summary
    assert algorithm.config_cls().batch_size >= 1
