"""Evaluation episodes for every seed x episode at once, on envs apart from the training envs.

Env `(k, j)` is seeded once from run seed k and episode index j, and every later evaluation
continues its RNG, so evaluations are reproducible and start from fresh initial states each time.
"""

from __future__ import annotations

import numpy as np
import torch

from qsmbench.algorithms import Agent
from qsmbench.envs import EnvBatch, eval_env_seed


class Evaluator:
    def __init__(self, env_id: str, seeds: list[int], episodes: int, device: torch.device):
        self.seeds, self.episodes, self.device = len(seeds), episodes, device
        self.batch = EnvBatch(env_id, [eval_env_seed(seed, j) for seed in seeds for j in range(episodes)])

    def evaluate(self, agent: Agent, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the agent's evaluation action in the envs of the `live` seeds.

        Returns `[seeds, episodes]` undiscounted returns (meaningful for live seeds only) and a `[seeds]`
        mask of the seeds whose evaluation action was non-finite: their envs are stopped before they are
        stepped with it, since a simulator may fail on a NaN action (DeepMind Control's PhysicsError).
        """
        envs = self.batch.envs
        obs = self.batch.reset()
        returns = np.zeros(len(envs))
        running = np.repeat(live, self.episodes)
        non_finite = np.zeros(self.seeds, dtype=bool)
        while running.any():
            obs_t = torch.as_tensor(obs, device=self.device).view(self.seeds, self.episodes, -1)
            actions = agent.act(obs_t, explore=False).cpu().numpy()
            bad = ~np.isfinite(actions).reshape(self.seeds, -1).all(axis=1) & running.reshape(self.seeds, -1).any(axis=1)
            non_finite |= bad
            running &= ~np.repeat(bad, self.episodes)
            actions = actions.reshape(len(envs), -1)
            for i in np.flatnonzero(running):
                obs[i], reward, terminated, truncated, _ = envs[i].step(actions[i])
                returns[i] += reward
                running[i] = not (terminated or truncated)
        return returns.reshape(self.seeds, self.episodes), non_finite

    def close(self) -> None:
        self.batch.close()
