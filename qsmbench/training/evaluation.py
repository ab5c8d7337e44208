"""Evaluation episodes for every seed x episode, on envs apart from the training envs.

Env `(k, j)` is seeded once from run seed k and episode index j, and every later evaluation continues
its RNG, so evaluations are reproducible and start from fresh initial states each time. The actions
of all of them are computed in one batch on the training device; their randomness comes from one
generator per seed, seeded from the run seed and the step (`SeedNoise.for_evaluation`), so a seed's
returns do not depend on the seeds beside it and evaluating never moves the training's random stream.
With `workers > 0` the envs step in that many worker processes (qsmbench.envs.workers), with the same
returns. Each step repeats the action `action_repeat` times (the run's `--action-repeat`, as its training envs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qsmbench.algorithms import Agent
from qsmbench.algorithms.blocks.randomness import SeedNoise
from qsmbench.envs.environments import EnvBatch, eval_env_seed
from qsmbench.envs.workers import make_env_batch


class Evaluator:
    """`episodes` evaluation envs per seed; `stream` picks which episodes and noise (the training's: `()`)."""

    def __init__(
        self,
        env_id: str,
        seeds: list[int],
        episodes: int,
        device: torch.device,
        workers: int = 0,
        stream: Sequence[int] = (),
        render_mode: str | None = None,
        action_repeat: int = 1,
    ):
        self.seeds, self.episodes, self.device, self.stream = seeds, episodes, device, tuple(stream)
        env_seeds = [eval_env_seed(seed, j, stream) for seed in seeds for j in range(episodes)]
        self.batch = (
            EnvBatch(env_id, env_seeds, render_mode, action_repeat)
            if render_mode
            else make_env_batch(env_id, env_seeds, workers, action_repeat)
        )

    def evaluate(self, agent: Agent, live: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Run the agent's evaluation action in the envs of the `live` seeds.

        Returns `[seeds, episodes]` undiscounted returns (meaningful for live seeds only) and a `[seeds]`
        mask of the seeds whose evaluation action was non-finite: their envs are stopped before they are
        stepped with it, since a simulator may fail on a NaN action (DeepMind Control's PhysicsError).
        """
        seeds = len(self.seeds)
        noise = SeedNoise.for_evaluation(self.seeds, step, self.stream)
        self.batch.reset()
        returns = np.zeros(len(self.batch))
        running = np.repeat(live, self.episodes)
        non_finite = np.zeros(seeds, dtype=bool)
        while running.any():
            obs = torch.as_tensor(self.batch.obs, device=self.device).view(seeds, self.episodes, -1)
            actions = agent.act(obs, explore=False, noise=noise).cpu().numpy()
            bad = ~np.isfinite(actions).reshape(seeds, -1).all(axis=1) & running.reshape(seeds, -1).any(axis=1)
            non_finite |= bad
            running &= ~np.repeat(bad, self.episodes)
            reward, ended = self.batch.step_without_reset(actions.reshape(len(self.batch), -1), running)
            returns += reward
            running &= ~ended
        return returns.reshape(seeds, self.episodes), non_finite

    def state_dict(self) -> list[dict[str, Any]]:
        """Every evaluation env's generator state, seed-major: all an evaluation between two others needs."""
        return self.batch.rng_states()

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        self.batch.set_rng_states(states)

    def close(self) -> None:
        self.batch.close()
