"""Online experience: every run step, each seed acts once in its own training env (`action_repeat` simulator
steps), into replay."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qsmbench.algorithms import Agent
from qsmbench.envs.environments import rng_state, set_rng_state
from qsmbench.envs.workers import make_env_batch
from qsmbench.training.divergence import DivergenceWatch
from qsmbench.training.replay import SeedBatchedReplay


class Collector:
    """The training envs of every seed, stepped in lockstep with the agent's exploring action."""

    def __init__(
        self,
        env_id: str,
        seeds: list[int],
        agent: Agent,
        replay: SeedBatchedReplay,
        warmup_steps: int,
        watch: DivergenceWatch,
        workers: int = 0,
        action_repeat: int = 1,
    ):
        self.agent, self.replay, self.warmup_steps, self.watch = agent, replay, warmup_steps, watch
        self.warmup_rng = np.random.default_rng(np.random.SeedSequence([*seeds, 1]))
        self.envs = make_env_batch(env_id, seeds, workers, action_repeat)
        self.finished_returns: list[list[float]] = [[] for _ in seeds]

    def collect(self, step: int) -> None:
        """Act (uniformly at random during the warm-up), step every live seed's env, store every transition.

        A seed whose action, reward or observation is non-finite dies here; its env is not stepped
        again, and its replay slice, which nothing reads any more, gets placeholder transitions.
        """
        obs = self.envs.obs
        if step < self.warmup_steps:
            action = self.warmup_rng.uniform(-1.0, 1.0, (len(self.envs), self.replay.act_dim)).astype(np.float32)
        else:
            obs_t = torch.as_tensor(obs, device=self.replay.device).unsqueeze(1)
            action = self.agent.act(obs_t, explore=True).squeeze(1).cpu().numpy()
        self.watch.check(step + 1, "action", action)
        result = self.envs.step(action, self.watch.live)
        self.watch.check(step + 1, "reward", result.reward)
        self.watch.check(step + 1, "observation", result.next_obs)
        ended = result.terminated | result.truncated
        self.replay.add(obs, action, result.reward, result.next_obs, result.terminated, ended)
        for seed_index in np.flatnonzero(~np.isnan(result.finished_returns)):
            self.finished_returns[seed_index].append(float(result.finished_returns[seed_index]))

    def pop_train_returns(self) -> list[list[float]]:
        """Returns of the training episodes finished since the last call, per seed."""
        returns, self.finished_returns = self.finished_returns, [[] for _ in self.finished_returns]
        return returns

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the warm-up generator, the envs' episodes so far, the returns not yet logged."""
        return {
            "warmup_rng": rng_state(self.warmup_rng),
            "envs": self.envs.state(),
            "finished_returns": self.finished_returns,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self.warmup_rng, state["warmup_rng"])
        self.envs.load_state(state["envs"])
        self.finished_returns = [[float(value) for value in returns] for returns in state["finished_returns"]]

    def close(self) -> None:
        self.envs.close()
