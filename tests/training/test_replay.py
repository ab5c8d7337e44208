"""Seed-batched replay (qsmbench.training.replay.SeedBatchedReplay): isolation, ring buffer, shapes, dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qsmbench.algorithms.contract import Batch
from qsmbench.training.replay import SeedBatchedReplay

CPU = torch.device("cpu")


def add_constant(replay: SeedBatchedReplay, values: np.ndarray, obs_dim: int, act_dim: int) -> None:
    """Add one transition per seed whose every field holds `values[k]` for seed k."""
    seeds = len(values)
    column = values.astype(np.float32)
    replay.add(
        obs=np.repeat(column[:, None], obs_dim, axis=1),
        action=np.repeat(column[:, None], act_dim, axis=1),
        reward=column,
        next_obs=np.repeat(column[:, None], obs_dim, axis=1),
        terminated=np.full(seeds, True),
        ended=np.full(seeds, True),
    )


def test_each_seed_samples_only_its_own_data() -> None:
    """Seed k's transitions hold value k in every field; every sampled value of seed k is k."""
    torch.manual_seed(0)
    seeds, obs_dim, act_dim = 4, 3, 2
    replay = SeedBatchedReplay(seeds, capacity=50, obs_dim=obs_dim, act_dim=act_dim, device=CPU)
    for _ in range(30):
        add_constant(replay, np.arange(seeds, dtype=np.float32), obs_dim, act_dim)
    batch = replay.sample(64)
    for k in range(seeds):
        for field in (batch.obs, batch.action, batch.reward, batch.next_obs):
            assert torch.all(field[k] == k), f"seed {k} sampled another seed's data"


def test_sampled_fields_come_from_the_same_transition() -> None:
    """obs, action, reward, next_obs and terminated of one sample row belong to one stored transition."""
    torch.manual_seed(1)
    seeds, capacity = 3, 40
    replay = SeedBatchedReplay(seeds, capacity, obs_dim=2, act_dim=1, device=CPU)
    for t in range(capacity):
        tag = np.array([1000.0 * k + t for k in range(seeds)], dtype=np.float32)
        replay.add(
            obs=np.stack([tag, tag], axis=1),
            action=(tag + 0.25)[:, None],
            reward=tag + 0.5,
            next_obs=np.stack([tag + 1, tag + 1], axis=1),
            terminated=np.full(seeds, t % 2 == 1),
            ended=np.full(seeds, True),
        )
    batch = replay.sample(128)
    tag = batch.obs[..., 0]
    assert torch.equal(batch.obs[..., 1], tag)
    assert torch.equal(batch.action[..., 0], tag + 0.25)
    assert torch.equal(batch.reward, tag + 0.5)
    assert torch.equal(batch.next_obs[..., 0], tag + 1)
    step = tag - 1000.0 * torch.arange(seeds).unsqueeze(1)
    assert torch.all((step >= 0) & (step < capacity))
    assert torch.equal(batch.terminated, (step % 2 == 1).float())


def test_seeds_draw_independent_indices() -> None:
    """Each seed draws its own indices: the sampled time steps differ between seeds."""
    torch.manual_seed(2)
    seeds, capacity = 2, 100
    replay = SeedBatchedReplay(seeds, capacity, obs_dim=1, act_dim=1, device=CPU)
    for t in range(capacity):
        add_constant(replay, np.full(seeds, float(t)), 1, 1)
    batch = replay.sample(256)
    assert not torch.equal(batch.reward[0], batch.reward[1])


def test_sample_draws_only_from_filled_slots() -> None:
    """Before the buffer is full, only the `size` transitions added so far are sampled."""
    torch.manual_seed(3)
    replay = SeedBatchedReplay(1, capacity=1000, obs_dim=1, act_dim=1, device=CPU)
    for t in range(3):
        add_constant(replay, np.array([10.0 + t]), 1, 1)
    assert replay.size == 3 and replay.position == 3
    values = set(replay.sample(500).reward[0].tolist())
    assert values == {10.0, 11.0, 12.0}


def test_ring_buffer_wraps_and_overwrites_oldest() -> None:
    """Capacity 5, 7 adds: size stays 5, the two oldest transitions are gone, the newest five remain."""
    torch.manual_seed(4)
    replay = SeedBatchedReplay(2, capacity=5, obs_dim=2, act_dim=1, device=CPU)
    for t in range(7):
        add_constant(replay, np.array([t, 100.0 + t]), 2, 1)
    assert replay.size == 5
    assert replay.position == 2
    assert sorted(replay.reward[0].tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert replay.reward[0, :2].tolist() == [5.0, 6.0]  # slots 0 and 1 were overwritten in place
    batch = replay.sample(1000)
    assert set(batch.obs[0, :, 0].tolist()) == {2.0, 3.0, 4.0, 5.0, 6.0}
    assert set(batch.obs[1, :, 0].tolist()) == {102.0, 103.0, 104.0, 105.0, 106.0}


@pytest.mark.parametrize(("seeds", "batch_size", "obs_dim", "act_dim"), [(3, 7, 5, 2), (1, 1, 1, 1)])
def test_batch_shapes(seeds: int, batch_size: int, obs_dim: int, act_dim: int) -> None:
    """Batch fields are [seeds, batch, dim] (obs, action, next_obs) and [seeds, batch] (reward, terminated)."""
    replay = SeedBatchedReplay(seeds, capacity=10, obs_dim=obs_dim, act_dim=act_dim, device=CPU)
    add_constant(replay, np.arange(seeds, dtype=np.float32), obs_dim, act_dim)
    batch = replay.sample(batch_size)
    assert isinstance(batch, Batch)
    assert batch.obs.shape == (seeds, batch_size, obs_dim)
    assert batch.action.shape == (seeds, batch_size, act_dim)
    assert batch.next_obs.shape == (seeds, batch_size, obs_dim)
    assert batch.reward.shape == (seeds, batch_size)
    assert batch.terminated.shape == (seeds, batch_size)
    for field in (batch.obs, batch.action, batch.reward, batch.next_obs, batch.terminated):
        assert field.dtype == torch.float32
        assert field.device == CPU


def test_terminated_sampled_as_float() -> None:
    """Boolean `terminated` comes back as float 0.0/1.0, per seed, so it can scale the bootstrap term."""
    replay = SeedBatchedReplay(2, capacity=4, obs_dim=1, act_dim=1, device=CPU)
    replay.add(
        obs=np.zeros((2, 1), np.float32),
        action=np.zeros((2, 1), np.float32),
        reward=np.zeros(2, np.float32),
        next_obs=np.zeros((2, 1), np.float32),
        terminated=np.array([True, False]),
        ended=np.array([True, False]),
    )
    batch = replay.sample(8)
    assert batch.terminated.dtype == torch.float32
    assert torch.all(batch.terminated[0] == 1.0)
    assert torch.all(batch.terminated[1] == 0.0)


def test_float64_inputs_are_stored_as_float32() -> None:
    """Raw float64 observations (e.g. dm_control) are accepted and stored as float32 values."""
    replay = SeedBatchedReplay(1, capacity=2, obs_dim=2, act_dim=1, device=CPU)
    replay.add(
        obs=np.array([[0.5, -1.5]], dtype=np.float64),
        action=np.array([[0.25]], dtype=np.float64),
        reward=np.array([2.0], dtype=np.float64),
        next_obs=np.array([[1.0, 2.0]], dtype=np.float64),
        terminated=np.array([False]),
        ended=np.array([False]),
    )
    batch = replay.sample(1)
    assert batch.obs.dtype == torch.float32
    assert batch.obs[0, 0].tolist() == [0.5, -1.5]
    assert batch.next_obs[0, 0].tolist() == [1.0, 2.0]
    assert batch.reward[0, 0].item() == 2.0


def random_episodes(seeds: int, steps: int, obs_dim: int, rng: np.random.Generator) -> list[tuple[np.ndarray, ...]]:
    """`steps` lockstep transitions of envs whose episodes end at random (often: many very short episodes),
    as (obs, action, reward, next_obs, terminated, ended), each next_obs the true s' also at episode ends."""
    obs = rng.normal(size=(seeds, obs_dim)).astype(np.float32)
    transitions = []
    for _ in range(steps):
        next_obs = rng.normal(size=(seeds, obs_dim)).astype(np.float32)
        ended = rng.random(seeds) < 0.3
        terminated = ended & (rng.random(seeds) < 0.5)
        action, reward = rng.normal(size=(seeds, 2)).astype(np.float32), rng.normal(size=seeds).astype(np.float32)
        transitions.append((obs, action, reward, next_obs, terminated, ended))
        obs = np.where(ended[:, None], rng.normal(size=(seeds, obs_dim)).astype(np.float32), next_obs)
    return transitions


@pytest.mark.parametrize(("capacity", "steps"), [(64, 40), (64, 300), (1000, 700)])
def test_samples_equal_those_of_storing_every_next_observation(capacity: int, steps: int) -> None:
    """Each observation stored once, with episode ends every ~3 steps (far more than the spare rows, so the
    stream grows) and wrap-around: every sample equals the (s, a, r, s', terminated) that was added."""
    seeds, obs_dim = 3, 4
    transitions = random_episodes(seeds, steps, obs_dim, np.random.default_rng(capacity + steps))
    replay = SeedBatchedReplay(seeds, capacity, obs_dim, act_dim=2, device=CPU)
    for transition in transitions:
        replay.add(*transition)
    assert replay.spare > 8, "the test must make the stream grow"
    torch.manual_seed(5)
    batch = replay.sample(512)
    torch.manual_seed(5)
    index = torch.randint(0, min(steps, capacity), (seeds, 512)).numpy()
    first = max(0, steps - capacity)
    for k in range(seeds):
        for j, i in enumerate(index[k]):
            stored = transitions[i if steps <= capacity else first + (i - first) % capacity]
            expected = [stored[0][k], stored[1][k], stored[2][k], stored[3][k], float(stored[4][k])]
            got = [batch.obs[k, j], batch.action[k, j], batch.reward[k, j], batch.next_obs[k, j], batch.terminated[k, j]]
            for want, have in zip(expected, got):
                np.testing.assert_array_equal(have.numpy(), want)


def test_observations_are_stored_once() -> None:
    """The replay's device bytes per seed-step for Humanoid-sized observations are close to half of two copies."""
    obs_dim, act_dim, capacity = 376, 17, 100_000
    replay = SeedBatchedReplay(1, capacity, obs_dim, act_dim, device=CPU)
    tensors = (replay.stream, replay.obs_row, replay.action, replay.reward, replay.terminated)
    stored = sum(t.numel() * t.element_size() for t in tensors) / capacity
    two_copies = 4 * (2 * obs_dim + act_dim + 2)
    assert stored < 0.56 * two_copies


def test_improved_actions_start_as_the_actions_taken_and_keep_what_is_written() -> None:
    """DIPO's memory: a second action per slot, each seed's its own, overwritten when its slot is."""
    replay = SeedBatchedReplay(2, 4, obs_dim=1, act_dim=1, device=CPU)
    replay.keep_improved_actions()
    for step in range(3):
        replay.add(np.full((2, 1), step), np.full((2, 1), step / 10), np.zeros(2), np.zeros((2, 1)), np.zeros(2, bool), np.ones(2, bool))
    torch.testing.assert_close(replay.improved_action[:, :3], replay.action[:, :3])
    replay.write_improved(torch.tensor([[1], [2]]), torch.tensor([[[0.9]], [[-0.9]]]))
    draw = replay.sample_improved(64)
    assert torch.equal(draw.action, torch.where(draw.index.unsqueeze(-1) == torch.tensor([[[1]], [[2]]]),
                                                torch.tensor([[[0.9]], [[-0.9]]]), draw.obs / 10))
    restored = SeedBatchedReplay(2, 4, obs_dim=1, act_dim=1, device=CPU)
    restored.keep_improved_actions()
    restored.load_state_dict(replay.state_dict())
    assert torch.equal(restored.improved_action[:, :3], replay.improved_action[:, :3])
    for step in range(3, 5):  # the fifth transition overwrites slot 0, and its improved action with it
        replay.add(np.full((2, 1), step), np.full((2, 1), step / 10), np.zeros(2), np.zeros((2, 1)), np.zeros(2, bool), np.ones(2, bool))
    torch.testing.assert_close(replay.improved_action[:, 0], torch.full((2, 1), 0.4))


def test_a_checkpointed_replay_must_agree_on_keeping_improved_actions() -> None:
    keeping = SeedBatchedReplay(1, 4, obs_dim=1, act_dim=1, device=CPU)
    keeping.keep_improved_actions()
    keeping.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)), np.zeros(1, bool), np.ones(1, bool))
    with pytest.raises(ValueError, match="improved actions"):
        SeedBatchedReplay(1, 4, obs_dim=1, act_dim=1, device=CPU).load_state_dict(keeping.state_dict())
