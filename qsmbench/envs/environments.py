"""Environments: any Gymnasium Box-action task and DeepMind Control through shimmy.

Every algorithm acts in [-1, 1]; `make_env` rescales to the task's bounds and flattens dict
observations (DeepMind Control), and with `action_repeat` K > 1 (`--action-repeat`) wraps the env in
`ActionRepeat`, so that one step of the env it returns (one agent step) is K simulator steps.
`EnvBatch` steps one env per member in lockstep and resets a finished episode in the same step,
keeping the true final observation so that a time-limit truncation can be bootstrapped through
(Gymnasium 1.x vector envs would hand back the reset observation one step later instead).

Exact resume. A simulator's state in mid-episode is more than its positions and velocities (MuJoCo's
solver warm start, time-limit counters, wrapper state, DeepMind Control's step count), and each env
keeps it differently. So an `EnvBatch` records, per env, what started its current episode (its seed, or
its random generator's state just before the reset) and the actions taken since: `state()` is plain
data, and `load_state` replays them, which rebuilds every bit of it in any deterministic env, and
checks the result against the saved observation and return.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from qsmbench.algorithms.contract import EnvDims
from qsmbench.core.config import did_you_mean
from qsmbench.core.errors import EnvError, EnvStateError

EXAMPLE_ENV_IDS = ("Pendulum-v1", "Hopper-v4", "HalfCheetah-v4", "Walker2d-v4", "dm_control/cheetah-run-v0")


def register_dm_control() -> None:
    """Register shimmy's `dm_control/...` ids. Training never renders, so no OpenGL backend is loaded unless
    `eval --video` chose one first (qsmbench.tools.video sets MUJOCO_GL before any env is made)."""
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


class ActionRepeat(gym.Wrapper):
    """Each step repeats the action `repeat` times in the wrapped env (DeepMind Control's frame skip): the sum of
    the rewards, the last observation and info, stopping early at a termination or a truncation, which it passes
    on (a DeepMind Control time limit of 1000 simulator steps is 500 steps of this env at `repeat` 2)."""

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        self.repeat = repeat

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


def make_env(env_id: str, render_mode: str | None = None, action_repeat: int = 1) -> gym.Env:
    """Build one env with flat float observations and actions in [-1, 1] (`render_mode="rgb_array"` to film it),
    each of its steps `action_repeat` simulator steps (`ActionRepeat`; 1: the env as it is)."""
    check_env_id(env_id)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is out of date.*")  # v4 ids are what the papers used
        try:
            env = gym.make(env_id, **({"render_mode": render_mode} if render_mode else {}))  # not every env takes one
        except Exception as error:
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
    if action_repeat > 1:
        env = ActionRepeat(env, action_repeat)
    return env


def env_dims(env_id: str) -> EnvDims:
    env = make_env(env_id)
    dims = EnvDims(obs_dim=int(env.observation_space.shape[0]), act_dim=int(env.action_space.shape[0]))
    env.close()
    return dims


def eval_env_seed(run_seed: int, episode: int, stream: Sequence[int] = ()) -> int:
    """Seed of evaluation env `episode` of run seed `run_seed`: reproducible and apart from training seeds.

    `stream` picks another set of episodes: the training's evaluations use `()`, `qsmbench eval` its own.
    """
    return int(np.random.SeedSequence([run_seed, 0xE7A1, *stream, episode]).generate_state(1)[0])


@dataclass
class StepResult:
    """One lockstep transition of every member. `next_obs` is the true s', also at episode ends."""

    next_obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    finished_returns: np.ndarray  # return of the episode that ended this step, NaN where none did


def rng_state(rng: np.random.Generator | np.random.RandomState) -> dict[str, Any]:
    """A numpy generator's state as plain data (Gymnasium envs hold a Generator, DeepMind Control a RandomState)."""
    if isinstance(rng, np.random.Generator):
        return {"generator": rng.bit_generator.state}
    name, keys, position, has_gauss, cached_gaussian = rng.get_state(legacy=True)
    return {"random_state": [name, keys.tolist(), position, has_gauss, cached_gaussian]}


def set_rng_state(rng: np.random.Generator | np.random.RandomState, state: dict[str, Any]) -> None:
    """Put `rng` (in place) into a state `rng_state` returned."""
    if isinstance(rng, np.random.Generator):
        rng.bit_generator.state = state["generator"]
    else:
        name, keys, position, has_gauss, cached_gaussian = state["random_state"]
        rng.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))


class EnvBatch:
    """One env per member (a training seed, or a seed x evaluation episode), stepped in lockstep; each step is
    `action_repeat` simulator steps (`make_env`)."""

    def __init__(self, env_id: str, seeds: list[int], render_mode: str | None = None, action_repeat: int = 1):
        self.envs = [make_env(env_id, render_mode, action_repeat) for _ in seeds]
        self.seeds = seeds
        self.episode_returns = np.zeros(len(seeds))
        self.episode_start: list[dict[str, Any]] = [{"seed": seed} for seed in seeds]
        self.episode_actions: list[list[np.ndarray]] = [[] for _ in seeds]
        self.obs = np.stack([env.reset(seed=seed)[0] for env, seed in zip(self.envs, seeds)]).astype(np.float32)

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self) -> np.ndarray:
        """Start a new episode in every env; each env's RNG continues from where it was."""
        self.obs = np.stack([self._reset(i) for i in range(len(self.envs))]).astype(np.float32)
        self.episode_returns[:] = 0.0
        return self.obs

    def _reset(self, i: int) -> np.ndarray:
        self.episode_start[i] = rng_state(self.envs[i].unwrapped.np_random)
        self.episode_actions[i] = []
        return self.envs[i].reset()[0]

    def rng_states(self) -> list[dict[str, Any]]:
        """Every env's random generator state, which is all an env between episodes needs to go on."""
        return [rng_state(env.unwrapped.np_random) for env in self.envs]

    def set_rng_states(self, states: list[dict[str, Any]]) -> None:
        for env, state in zip(self.envs, states):
            set_rng_state(env.unwrapped.np_random, state)

    def state(self) -> dict[str, Any]:
        """Plain data from which `load_state` rebuilds every env in mid-episode (see the module docstring)."""
        return {
            "episode_start": self.episode_start,
            "actions": [np.asarray(actions, dtype=np.float32).tolist() for actions in self.episode_actions],
            "obs": self.obs.tolist(),
            "episode_returns": self.episode_returns.tolist(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restart each env's episode as it started and replay its actions; EnvStateError where the
        result is not the saved observation and return (a non-deterministic env)."""
        saved_obs = np.asarray(state["obs"], dtype=np.float32)
        saved_returns = np.asarray(state["episode_returns"], dtype=np.float64)
        for i, (env, start, actions) in enumerate(zip(self.envs, state["episode_start"], state["actions"])):
            if "seed" in start:
                obs = env.reset(seed=start["seed"])[0]
            else:
                set_rng_state(env.unwrapped.np_random, start)
                obs = env.reset()[0]
            total, ended, recorded = 0.0, False, np.asarray(actions, dtype=np.float32)
            for action in recorded:
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(np.float32(reward))
                ended = ended or terminated or truncated
            same_obs = np.array_equal(np.asarray(obs, dtype=np.float32), saved_obs[i], equal_nan=True)
            same_return = np.array_equal(total, saved_returns[i], equal_nan=True)  # a diverged seed's may be NaN
            if ended or not same_obs or not same_return:
                raise EnvStateError(
                    f"training env {i} did not replay to its saved state: {env.spec.id if env.spec else 'it'} is not "
                    "deterministic, so this run cannot resume exactly; pass --overwrite to start it over"
                )
            self.episode_start[i] = start
            self.episode_actions[i] = list(recorded)
        self.obs, self.episode_returns = saved_obs, saved_returns

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
            self.episode_actions[i].append(np.array(actions[i], dtype=np.float32))
        self.episode_returns += reward
        self.obs = next_obs.copy()
        for i in np.flatnonzero(terminated | truncated):
            finished[i] = self.episode_returns[i]
            self.episode_returns[i] = 0.0
            self.obs[i] = self._reset(i)
        return StepResult(next_obs, reward, terminated, truncated, finished)

    def step_without_reset(self, actions: np.ndarray, running: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step the `running` envs and leave ended episodes ended (evaluation runs each episode once): the
        rewards, 0 for envs not stepped, and which of the stepped envs' episodes ended. `self.obs` follows."""
        reward = np.zeros(len(self.envs))
        ended = np.zeros(len(self.envs), dtype=bool)
        for i in np.flatnonzero(running):
            self.obs[i], reward[i], terminated, truncated, _ = self.envs[i].step(actions[i])
            ended[i] = terminated or truncated
        return reward, ended

    def close(self) -> None:
        for env in self.envs:
            env.close()
