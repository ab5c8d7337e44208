"""Evaluation in the training process and in worker processes (`--eval-workers`): the same returns, every
seed's own noise, the training's random stream left alone, a dead worker reported in one line."""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import Iterator

import numpy as np
import pytest
import torch

from qsmbench.algorithms.qsm import QSM, QSMConfig
from qsmbench.envs import EnvDims
from qsmbench.evaluation import EvaluationError, EvaluationPool, Evaluator, start_worker_server
from qsmbench.noise import GLOBAL_NOISE, SeedNoise, categorical

CPU = torch.device("cpu")
ENV, DIMS, SEEDS, EPISODES = "Pendulum-v1", EnvDims(3, 1), [4, 5], 3
CONFIG = QSMConfig(actor_hidden_sizes=(32, 32), hidden_sizes=(32, 32), time_hidden_sizes=(16, 16), time_features=8)


def make_agent(seeds: list[int] = SEEDS) -> QSM:
    return QSM(DIMS.obs_dim, DIMS.act_dim, seeds, CPU, CONFIG)


@pytest.fixture(scope="module")
def pools() -> Iterator[dict[int, EvaluationPool]]:
    """One pool of a worker per seed and one of a single worker for both seeds, started once for the module."""
    start_worker_server()
    made = {workers: EvaluationPool("qsm", CONFIG, ENV, DIMS, SEEDS, EPISODES, workers) for workers in (1, 2)}
    yield made
    for pool in made.values():
        pool.close()


def evaluate_twice(evaluator: Evaluator | EvaluationPool, agent: QSM) -> list[np.ndarray]:
    live = np.ones(len(SEEDS), dtype=bool)
    return [evaluator.evaluate(agent, live, step)[0] for step in (0, 300)]


def initial_states() -> list[dict]:
    """The evaluation envs' generator states of a run that has not evaluated yet."""
    evaluator = Evaluator(ENV, SEEDS, EPISODES, CPU)
    states = evaluator.rng_states()
    evaluator.close()
    return states


def test_workers_give_the_in_process_returns(pools: dict[int, EvaluationPool]) -> None:
    """A worker for all seeds gives exactly the in-process returns; a worker per seed gives them to float
    rounding (a batch of one seed multiplies with another BLAS kernel), evaluation after evaluation."""
    agent = make_agent()
    in_process = Evaluator(ENV, SEEDS, EPISODES, CPU)
    expected = evaluate_twice(in_process, agent)
    in_process.close()
    assert not np.array_equal(expected[0], expected[1])  # the envs' generators go on between evaluations
    for workers, pool in pools.items():
        pool.set_rng_states(initial_states())
        for got, want in zip(evaluate_twice(pool, agent), expected):
            if workers == 1:
                assert np.array_equal(got, want)
            np.testing.assert_allclose(got, want, rtol=1e-4)


def test_workers_evaluate_the_trained_weights(pools: dict[int, EvaluationPool]) -> None:
    """Each evaluation sends the current weights: a changed policy gives other returns in the workers too."""
    agent = make_agent()
    live = np.ones(len(SEEDS), dtype=bool)
    pools[2].set_rng_states(initial_states())
    before, _ = pools[2].evaluate(agent, live, 0)
    with torch.no_grad():
        agent.denoiser.mlp.layers[-1].bias[1] += 5.0  # seed 5 only
    pools[2].set_rng_states(initial_states())
    after, _ = pools[2].evaluate(agent, live, 0)
    assert np.array_equal(after[0], before[0]) and not np.allclose(after[1], before[1])


def test_evaluation_leaves_the_training_random_stream_alone() -> None:
    """Evaluating draws from each seed's own generators, so --eval-every cannot change what a seed learns."""
    agent, evaluator = make_agent(), Evaluator(ENV, SEEDS, EPISODES, CPU)
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


def test_categorical_draws_in_proportion_to_the_weights() -> None:
    torch.manual_seed(0)
    weights = torch.tensor([0.0, 1.0, 3.0, 0.0]).expand(1, 20_000, 4)
    counts = torch.bincount(categorical(weights, GLOBAL_NOISE).flatten(), minlength=4)
    assert counts[0] == 0 and counts[3] == 0
    assert abs(counts[2].item() / 20_000 - 0.75) < 0.02


def test_a_dead_worker_is_one_line() -> None:
    start_worker_server()
    pool = EvaluationPool("qsm", dataclasses.replace(CONFIG), ENV, DIMS, SEEDS, EPISODES, 2)
    try:
        os.kill(pool.processes[1].pid, signal.SIGKILL)
        pool.processes[1].join(10)
        with pytest.raises(EvaluationError, match=r"evaluation worker of seed 5 died \(exit code -9\)"):
            pool.evaluate(make_agent(), np.ones(len(SEEDS), dtype=bool), 0)
    finally:
        pool.close()
