"""Seed-batched networks: the batch is exactly N independent networks, initialised per seed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qsmbench.algorithms.blocks.nets import BatchedMLP, QEnsemble, frozen, seed_generators, soft_update_


def per_seed_forward(mlp: BatchedMLP, seed_index: int, x: torch.Tensor) -> torch.Tensor:
    """The same MLP run for one seed with ordinary `F.linear` layers."""
    for i, layer in enumerate(mlp.layers):
        weight = layer.weight[seed_index].T
        bias = layer.bias[seed_index].squeeze(0)
        x = F.linear(x, weight, bias)
        if i < len(mlp.layers) - 1:
            x = torch.relu(x)
    return x


def test_batched_mlp_equals_each_seed_run_alone() -> None:
    mlp = BatchedMLP(5, (16, 16), 3, seed_generators([0, 1, 2], "test"))
    x = torch.randn(3, 7, 5)
    batched = mlp(x)
    assert batched.shape == (3, 7, 3)
    for k in range(3):
        torch.testing.assert_close(batched[k], per_seed_forward(mlp, k, x[k]))


def test_seed_initialisation_does_not_depend_on_batch_companions() -> None:
    together = BatchedMLP(4, (8,), 2, seed_generators([0, 1, 2], "test"))
    alone = BatchedMLP(4, (8,), 2, seed_generators([2], "test"))
    for layer_together, layer_alone in zip(together.layers, alone.layers):
        assert torch.equal(layer_together.weight[2], layer_alone.weight[0])
        assert torch.equal(layer_together.bias[2], layer_alone.bias[0])
        assert not torch.equal(layer_together.weight[0], layer_together.weight[1])


def test_initialisation_matches_nn_linear_scale() -> None:
    mlp = BatchedMLP(64, (), 1000, seed_generators([0], "test"))
    weight = mlp.layers[0].weight
    bound = 1.0 / 64**0.5
    assert weight.abs().max() <= bound
    assert weight.abs().max() > 0.95 * bound


def test_q_ensemble_has_independent_critics_per_seed() -> None:
    critic = QEnsemble(obs_dim=3, act_dim=2, hidden_sizes=(8,), generators=seed_generators([0, 1], "q"), num_critics=2)
    obs, action = torch.randn(2, 5, 3), torch.randn(2, 5, 2)
    q = critic(obs, action)
    assert q.shape == (2, 2, 5)
    assert not torch.allclose(q[:, 0], q[:, 1])
    first_layer = critic.mlp.layers[0]
    assert first_layer.weight.shape == (2, 2, 5, 8)


def test_soft_update_moves_target_by_tau() -> None:
    source = BatchedMLP(2, (4,), 1, seed_generators([0], "a"))
    target = BatchedMLP(2, (4,), 1, seed_generators([0], "b"))
    before = [p.clone() for p in target.parameters()]
    soft_update_(target, source, tau=0.25)
    for old, new, src in zip(before, target.parameters(), source.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * src)


def test_frozen_critic_passes_gradients_to_actions_only() -> None:
    """Inside `frozen`, backprop reaches the action but not the critic's weights; afterwards both do."""
    critic = QEnsemble(obs_dim=3, act_dim=2, hidden_sizes=(8,), generators=seed_generators([0], "q"))
    obs, action = torch.randn(1, 4, 3), torch.randn(1, 4, 2, requires_grad=True)
    with frozen(critic):
        critic(obs, action).sum().backward()
    assert action.grad is not None and action.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())
    assert all(p.requires_grad for p in critic.parameters())
