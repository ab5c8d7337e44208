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

    def evaluate(self, agent: Agent) -> np.ndarray:
        """Return `[seeds, episodes]` undiscounted returns of the agent's evaluation action."""
        envs = self.batch.envs
        obs = self.batch.reset()
        returns = np.zeros(len(envs))
        running = np.ones(len(envs), dtype=bool)
        while running.any():
            obs_t = torch.as_tensor(obs, device=self.device).view(self.seeds, self.episodes, -1)
            actions = agent.act(obs_t, explore=False).reshape(len(envs), -1).cpu().numpy()
            for i in np.flatnonzero(running):
                obs[i], reward, terminated, truncated, _ = envs[i].step(actions[i])
                returns[i] += reward
                running[i] = not (terminated or truncated)
        return returns.reshape(self.seeds, self.episodes)

    def close(self) -> None:
        self.batch.close()
