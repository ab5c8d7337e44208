"""Environments: any Gymnasium Box-action task and DeepMind Control through shimmy.

Every algorithm acts in [-1, 1]; `make_env` rescales to the task's bounds and flattens dict
observations (DeepMind Control). `EnvBatch` steps one env per member in lockstep and resets a
finished episode in the same step, keeping the true final observation so that a time-limit
truncation can be bootstrapped through (Gymnasium 1.x vector envs would hand back the reset
observation one step later instead).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from qsmbench.config import ConfigError, did_you_mean

EXAMPLE_ENV_IDS = ("Pendulum-v1", "Hopper-v4", "HalfCheetah-v4", "Walker2d-v4", "dm_control/cheetah-run-v0")


class EnvError(ConfigError):
    """An env id that does not name a usable continuous-control task."""


@dataclass(frozen=True)
class EnvDims:
    obs_dim: int
    act_dim: int


def register_dm_control() -> None:
    """Register shimmy's `dm_control/...` ids; we never render, so no OpenGL backend is loaded."""
    os.environ.setdefault("MUJOCO_GL", "disable")
    import shimmy
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # dm_control's asset warnings are not ours to fix
    gym.register_envs(shimmy)


def check_env_id(env_id: str) -> None:
    """Raise EnvError, with close matches, when `env_id` is not a registered Gymnasium id."""
    if env_id not in gym.registry:
        register_dm_control()
    if env_id not in gym.registry:
        raise EnvError(f"unknown environment {env_id!r}{did_you_mean(env_id, gym.registry)}")


def make_env(env_id: str) -> gym.Env:
    """Build one env with flat float observations and actions in [-1, 1]."""
    check_env_id(env_id)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is out of date.*")  # v4 ids are what the papers used
        try:
            env = gym.make(env_id)
        except Exception as error:  # noqa: BLE001 - any construction failure is reported as one line
            raise EnvError(f"cannot create environment {env_id!r}: {error}") from None
    if not isinstance(env.action_space, gym.spaces.Box):
        env.close()
        raise EnvError(f"{env_id} has a {type(env.action_space).__name__} action space; only Box actions are supported")
    if not np.all(np.isfinite(env.action_space.low)) or not np.all(np.isfinite(env.action_space.high)):
        env.close()
        raise EnvError(f"{env_id} has unbounded actions; bounded Box actions are needed to rescale to [-1, 1]")
    if isinstance(env.observation_space, gym.spaces.Dict):
        env = gym.wrappers.FlattenObservation(env)
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        env.close()
        raise EnvError(f"{env_id} has {env.observation_space} observations; flat vector observations are needed")
    if not (np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)):
        unit = np.ones(env.action_space.shape, dtype=env.action_space.dtype)
        env = gym.wrappers.RescaleAction(env, -unit, unit)
    return env


def env_dims(env_id: str) -> EnvDims:
    env = make_env(env_id)
    dims = EnvDims(obs_dim=int(env.observation_space.shape[0]), act_dim=int(env.action_space.shape[0]))
    env.close()
    return dims


def eval_env_seed(run_seed: int, episode: int) -> int:
    """Seed of evaluation env `episode` of run seed `run_seed`: reproducible and apart from training seeds."""
    return int(np.random.SeedSequence([run_seed, 0xE7A1, episode]).generate_state(1)[0])


@dataclass
class StepResult:
    """One lockstep transition of every member. `next_obs` is the true s', also at episode ends."""

    next_obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    finished_returns: np.ndarray  # return of the episode that ended this step, NaN where none did


class EnvBatch:
    """One env per member (a training seed, or a seed x evaluation episode), stepped in lockstep."""

    def __init__(self, env_id: str, seeds: list[int]):
        self.envs = [make_env(env_id) for _ in seeds]
        self.seeds = seeds
        self.episode_returns = np.zeros(len(seeds))
        self.obs = np.stack([env.reset(seed=seed)[0] for env, seed in zip(self.envs, seeds)]).astype(np.float32)

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self) -> np.ndarray:
        """Start a new episode in every env; each env's RNG continues from where it was."""
        self.obs = np.stack([env.reset()[0] for env in self.envs]).astype(np.float32)
        self.episode_returns[:] = 0.0
        return self.obs

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """Step every env (or those `active`); an env whose episode ended is reset now, and `self.obs`
        holds its new start. An inactive env is left alone: it keeps its observation and earns 0."""
        size = len(self.envs)
        next_obs = self.obs.copy()
        reward = np.zeros(size, dtype=np.float32)
        terminated = np.zeros(size, dtype=bool)
        truncated = np.zeros(size, dtype=bool)
        finished = np.full(size, np.nan)
        for i in range(size) if active is None else np.flatnonzero(active):
            next_obs[i], reward[i], terminated[i], truncated[i], _ = self.envs[i].step(actions[i])
        self.episode_returns += reward
        self.obs = next_obs.copy()
        for i in np.flatnonzero(terminated | truncated):
            finished[i] = self.episode_returns[i]
            self.episode_returns[i] = 0.0
            self.obs[i] = self.envs[i].reset()[0]
        return StepResult(next_obs, reward, terminated, truncated, finished)

    def close(self) -> None:
        for env in self.envs:
            env.close()
