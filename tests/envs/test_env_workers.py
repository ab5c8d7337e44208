"""Envs in worker processes (`--env-workers`, `--eval-workers`) do what the in-process batch does, bit
for bit; evaluation draws from every seed's own noise and leaves the training's random stream alone."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, SeedNoise, categorical
from qsmbench.algorithms.qsm import QSM, QSMConfig
from qsmbench.envs.environments import EnvBatch, eval_env_seed
from qsmbench.envs.workers import EnvPool, EnvWorkerError, start_worker_server
from qsmbench.training.evaluation import Evaluator

CPU = torch.device("cpu")
ENV, SEEDS, EPISODES = "Hopper-v4", [4, 5, 6], 2  # Hopper's episodes end at different steps: resets mid-run
CONFIG = QSMConfig(actor_hidden_sizes=(32, 32), hidden_sizes=(32, 32), time_hidden_sizes=(16, 16), time_features=8)


@pytest.fixture(scope="module")
def pool() -> Iterator[EnvPool]:
    """Three training envs over two workers (members 0..1 and 2), started once for the module."""
    start_worker_server()
    envs = EnvPool(ENV, SEEDS, 2)
    yield envs
    envs.close()


def random_actions(steps: int, members: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (steps, members, 3)).astype(np.float32)


def test_an_env_pool_steps_as_the_in_process_batch(pool: EnvPool) -> None:
    """Same observations, rewards, ends and finished returns over episodes that end and reset, with a
    member left out half the time; and the same state, which a fresh batch replays to the same point."""
    batch = EnvBatch(ENV, SEEDS)
    assert pool.groups == [slice(0, 2), slice(2, 3)] and np.array_equal(pool.obs, batch.obs)
    active, episodes_ended = np.array([True, False, True]), 0
    for step, actions in enumerate(random_actions(60, len(SEEDS))):
        mask = None if step % 2 else active
        got, want = pool.step(actions, mask), batch.step(actions, mask)
        for name in ("next_obs", "reward", "terminated", "truncated", "finished_returns"):
            assert np.array_equal(getattr(got, name), getattr(want, name), equal_nan=True), (step, name)
        assert np.array_equal(pool.obs, batch.obs)
        episodes_ended += int((~np.isnan(want.finished_returns)).sum())
    assert episodes_ended >= 2  # random actions topple Hopper: envs were reset in the same step
    state = pool.state()
    assert state == batch.state()
    fresh = EnvBatch(ENV, SEEDS)
    fresh.load_state(state)
    pool.load_state(batch.state())
    actions = random_actions(1, len(SEEDS))[0]
    assert np.array_equal(pool.step(actions).next_obs, fresh.step(actions).next_obs)
    batch.close()
    fresh.close()


def evaluate_twice(evaluator: Evaluator, agent: QSM) -> list[np.ndarray]:
    live = np.array([True, False, True])
    return [evaluator.evaluate(agent, live, step)[0] for step in (0, 300)]


def test_evaluation_in_workers_gives_the_in_process_returns() -> None:
    """Bit for bit, evaluation after evaluation (the envs' generators go on between them)."""
    agent = QSM(11, 3, SEEDS, CPU, CONFIG)
    in_process = Evaluator(ENV, SEEDS, EPISODES, CPU)
    expected = evaluate_twice(in_process, agent)
    start_worker_server()
    in_workers = Evaluator(ENV, SEEDS, EPISODES, CPU, workers=4)
    got = evaluate_twice(in_workers, agent)
    assert in_workers.state_dict() == in_process.state_dict()  # what a checkpoint keeps
    in_workers.close()
    in_process.close()
    assert not np.array_equal(expected[0], expected[1])
    for got_returns, want in zip(got, expected):
        assert np.array_equal(got_returns, want)
    assert (got[0][1] == 0).all()  # the dead seed's envs were not stepped


def test_env_and_eval_workers_repeat_actions_as_the_in_process_batch() -> None:
    """--action-repeat reaches the worker processes: an EnvPool and an Evaluator in workers with action_repeat 2 step
    as their in-process batch with it does (Hopper's episodes end in between), not as one without it."""
    start_worker_server()
    pool, batch, plain = EnvPool(ENV, SEEDS, 2, action_repeat=2), EnvBatch(ENV, SEEDS, action_repeat=2), EnvBatch(ENV, SEEDS)
    rewards, plain_rewards, ended = [], [], 0
    for actions in random_actions(30, len(SEEDS)):
        got, want = pool.step(actions), batch.step(actions)
        assert np.array_equal(got.next_obs, want.next_obs) and np.array_equal(got.reward, want.reward)
        rewards.append(want.reward)
        plain_rewards.append(plain.step(actions).reward)
        ended += int((want.terminated | want.truncated).sum())
    for envs in (pool, batch, plain):
        envs.close()
    assert ended >= 1 and not np.allclose(rewards, plain_rewards)
    agent = QSM(11, 3, SEEDS, CPU, CONFIG)
    in_process = Evaluator(ENV, SEEDS, 1, CPU, action_repeat=2)
    in_workers = Evaluator(ENV, SEEDS, 1, CPU, workers=2, action_repeat=2)
    without = Evaluator(ENV, SEEDS, 1, CPU, workers=2)
    expected, got, other = (evaluate_twice(evaluator, agent) for evaluator in (in_process, in_workers, without))
    for evaluator in (in_process, in_workers, without):
        evaluator.close()
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert not np.array_equal(expected[0], other[0])


def test_evaluation_leaves_the_training_random_stream_alone() -> None:
    """Evaluating draws from each seed's own generators, so --eval-every cannot change what a seed learns."""
    agent, evaluator = QSM(11, 3, SEEDS, CPU, CONFIG), Evaluator(ENV, SEEDS, 1, CPU)
    torch.manual_seed(0)
    evaluator.evaluate(agent, np.ones(len(SEEDS), dtype=bool), 0)
    after_evaluation = torch.randn(3)
    torch.manual_seed(0)
    assert torch.equal(torch.randn(3), after_evaluation)
    evaluator.close()


def test_a_seeds_evaluation_noise_is_its_own() -> None:
    """Seed 5's noise at a step is the same whether seed 4 is in its batch or not, and differs by step."""
    together = SeedNoise.for_evaluation([4, 5], 300).normal((2, 7, 1), CPU)
    alone = SeedNoise.for_evaluation([5], 300).normal((1, 7, 1), CPU)
    assert torch.equal(together[1:], alone)
    assert not torch.equal(SeedNoise.for_evaluation([5], 600).normal((1, 7, 1), CPU), alone)
    with pytest.raises(ValueError, match="for 1 seeds"):
        SeedNoise.for_evaluation([5], 0).normal((2, 7, 1), CPU)
    for step in (0, 1):  # seeded apart from the evaluation envs (it once shared their salt)
        assert SeedNoise.for_evaluation([5], step).generators[0].initial_seed() != eval_env_seed(5, step)


def test_categorical_draws_in_proportion_to_the_weights() -> None:
    torch.manual_seed(0)
    weights = torch.tensor([0.0, 1.0, 3.0, 0.0]).expand(1, 20_000, 4)
    counts = torch.bincount(categorical(weights, GLOBAL_NOISE).flatten(), minlength=4)
    assert counts[0] == 0 and counts[3] == 0
    assert abs(counts[2].item() / 20_000 - 0.75) < 0.02


def test_a_dead_env_worker_is_one_line() -> None:
    start_worker_server()
    envs = EnvPool(ENV, SEEDS, 2)
    try:
        os.kill(envs.processes[1].pid, signal.SIGKILL)
        envs.processes[1].join(10)
        with pytest.raises(EnvWorkerError, match=r"the env worker of members 2\.\.2 died \(exit code -9\)"):
            envs.step(random_actions(1, len(SEEDS))[0])
    finally:
        envs.close()
