"""Shared fixtures: small Minari datasets built on the spot, without network; one torch thread per xdist worker."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import pytest

if TYPE_CHECKING:
    from minari.data_collector import EpisodeBuffer

PENDULUM_REF_SCORES = (-1500.0, -150.0)
"""(ref_min_score, ref_max_score) recorded in the `minari_dataset` fixture."""


def pytest_configure(config: pytest.Config) -> None:
    """Under `pytest -n N` (make test), each worker and the `qsmbench` processes its tests start use one thread.

    Torch's OpenMP threads slow to a crawl when two processes share the cores they spin on; one thread per
    worker keeps N workers on N cores.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def results_v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results tree in schema 1, the format of qsmbench up to commit 155e41c (see support.py)."""
    from support import write_schema_1_results

    root = tmp_path_factory.mktemp("results_v1")
    write_schema_1_results(root)
    return root


@pytest.fixture
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty Minari datasets root, with the download remote made unreachable.

    Minari picks its remote from $MINARI_REMOTE. Without huggingface_hub (not pinned) the download
    fails on import; with it, HF_HUB_OFFLINE makes it fail at once (an unreachable endpoint alone
    costs ~23 s of retries), and HF_ENDPOINT keeps even that from reaching the real hub.
    """
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    monkeypatch.setenv("MINARI_REMOTE", "hf://qsmbench-unreachable-test")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


@pytest.fixture
def make_pendulum_dataset(minari_root: Path) -> Callable[..., str]:
    """Build a random-policy Pendulum-v1 dataset under `minari_root`; returns its id.

    Pendulum's actions span [-2, 2], so loading exercises the rescaling to [-1, 1]. Pendulum never
    terminates: odd episodes are cut short and flagged terminated (synthetic terminals), so the data
    holds both true terminations and time-limit truncations at 200 steps, and episodes of several lengths.
    """
    from minari import create_dataset_from_buffers

    def make(
        dataset_id: str = "qsmbench/pendulum/random-v0",
        ref_scores: tuple[float, float] | None = PENDULUM_REF_SCORES,
    ) -> str:
        env = gym.make("Pendulum-v1")
        env.action_space.seed(0)
        buffers = [_pendulum_episode(env, seed=k, terminal_at=40 + 10 * k if k % 2 else None) for k in range(10)]
        refs = {} if ref_scores is None else {"ref_min_score": ref_scores[0], "ref_max_score": ref_scores[1]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Minari asks for author, permalink, ... on every dataset
            create_dataset_from_buffers(
                dataset_id,
                buffers,
                env="Pendulum-v1",
                observation_space=env.observation_space,
                action_space=env.action_space,
                algorithm_name="random",
                **refs,
            )
        env.close()
        return dataset_id

    return make


@pytest.fixture
def minari_dataset(make_pendulum_dataset: Callable[..., str]) -> str:
    """Id of a 10-episode random Pendulum-v1 dataset with reference scores; $MINARI_DATASETS_PATH points at it."""
    return make_pendulum_dataset()


def _pendulum_episode(env: gym.Env, seed: int, terminal_at: int | None) -> EpisodeBuffer:
    """One random-policy episode as a Minari EpisodeBuffer; `terminal_at` ends it there as terminated."""
    from minari.data_collector import EpisodeBuffer

    observation, _ = env.reset(seed=seed)
    observations, actions, rewards, terminations, truncations = [observation], [], [], [], []
    while True:
        action = env.action_space.sample()
        observation, reward, terminated, truncated, _ = env.step(action)
        terminated = terminated or len(rewards) + 1 == terminal_at
        observations.append(observation)
        actions.append(action)
        rewards.append(reward)
        terminations.append(terminated)
        truncations.append(truncated and not terminated)
        if terminated or truncated:
            break
    return EpisodeBuffer(
        observations=np.array(observations),
        actions=np.array(actions),
        rewards=np.array(rewards),
        terminations=np.array(terminations),
        truncations=np.array(truncations),
    )
