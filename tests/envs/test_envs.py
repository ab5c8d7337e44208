"""Environment construction and lockstep stepping (qsmbench.envs.environments) on real Gymnasium tasks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from qsmbench.core.errors import ConfigError, EnvError
from qsmbench.envs.environments import ActionRepeat, EnvBatch, env_dims, eval_env_seed, make_env

PENDULUM_TIME_LIMIT = 200


def test_make_env_rescales_pendulum_actions_to_unit_box() -> None:
    """Pendulum's [-2, 2] torque becomes a [-1, 1] action space."""
    env = make_env("Pendulum-v1")
    try:
        assert isinstance(env.action_space, gym.spaces.Box)
        np.testing.assert_array_equal(env.action_space.low, [-1.0])
        np.testing.assert_array_equal(env.action_space.high, [1.0])
        assert env.observation_space.shape == (3,)
    finally:
        env.close()


@pytest.mark.parametrize(("action", "torque"), [(1.0, 2.0), (-1.0, -2.0), (0.5, 1.0), (0.0, 0.0)])
def test_pendulum_action_maps_linearly_onto_torque(action: float, torque: float) -> None:
    """Action a in [-1, 1] applies torque 2a: the next observation equals the raw env's under torque 2a."""
    env = make_env("Pendulum-v1")
    raw = gym.make("Pendulum-v1")
    try:
        assert raw.action_space.high[0] == pytest.approx(2.0)  # the raw env is really unscaled
        obs, _ = env.reset(seed=11)
        raw_obs, _ = raw.reset(seed=11)
        np.testing.assert_array_equal(obs, raw_obs)
        for _ in range(3):  # a few steps so a wrong scale accumulates rather than hides
            obs, reward, *_ = env.step(np.array([action], dtype=np.float32))
            raw_obs, raw_reward, *_ = raw.step(np.array([torque], dtype=np.float32))
            np.testing.assert_allclose(obs, raw_obs, rtol=1e-6, atol=1e-6)
            assert reward == pytest.approx(raw_reward, rel=1e-6, abs=1e-6)
    finally:
        env.close()
        raw.close()


def test_dm_control_cheetah_run_gives_flat_float_observations() -> None:
    """dm_control/cheetah-run-v0: dict observations flattened to 17 floats, 6 actions in [-1, 1]."""
    env = make_env("dm_control/cheetah-run-v0")
    try:
        assert env.observation_space.shape == (17,)
        assert env.action_space.shape == (6,)
        np.testing.assert_array_equal(env.action_space.low, -np.ones(6))
        np.testing.assert_array_equal(env.action_space.high, np.ones(6))
        obs, _ = env.reset(seed=0)
        assert isinstance(obs, np.ndarray) and obs.shape == (17,)
        assert np.issubdtype(obs.dtype, np.floating)
        assert np.all(np.isfinite(obs))
        obs, reward, terminated, truncated, _ = env.step(np.zeros(6, dtype=np.float32))
        assert obs.shape == (17,) and np.issubdtype(obs.dtype, np.floating)
        assert np.isfinite(reward)
        assert not terminated and not truncated
    finally:
        env.close()
    spec = env_dims("dm_control/cheetah-run-v0")
    assert (spec.obs_dim, spec.act_dim) == (17, 6)


def test_env_dims_pendulum() -> None:
    """env_dims reports the flat observation and action sizes."""
    spec = env_dims("Pendulum-v1")
    assert (spec.obs_dim, spec.act_dim) == (3, 1)


def test_unknown_env_id_suggests_close_match() -> None:
    """A misspelt id raises EnvError (a ConfigError, so the CLI exits 2) naming the likely id."""
    with pytest.raises(EnvError) as info:
        make_env("Hoper-v4")
    assert isinstance(info.value, ConfigError)
    assert "'Hoper-v4'" in str(info.value)
    assert "Hopper-v4" in str(info.value)


def test_discrete_action_space_is_rejected() -> None:
    """CartPole-v1 (Discrete actions) raises EnvError about the action space."""
    with pytest.raises(EnvError) as info:
        make_env("CartPole-v1")
    message = str(info.value)
    assert "CartPole-v1" in message
    assert "Discrete" in message and "action space" in message


def rollout_reference(env_id: str, seed: int, actions: list[np.ndarray]) -> tuple[np.ndarray, list[float], np.ndarray]:
    """Final obs and rewards of one make_env episode under `actions`, plus the next reset's observation."""
    env = make_env(env_id)
    try:
        env.reset(seed=seed)
        rewards = []
        obs = None
        for action in actions:
            obs, reward, *_ = env.step(action)
            rewards.append(float(reward))
        next_start, _ = env.reset()
    finally:
        env.close()
    assert obs is not None
    return np.asarray(obs), rewards, np.asarray(next_start)


def test_env_batch_time_limit_truncation_keeps_true_final_observation() -> None:
    """At Pendulum's 200-step limit: truncated, not terminated, next_obs is the real s', obs is a fresh start."""
    seeds = [3, 8]
    batch = EnvBatch("Pendulum-v1", seeds)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1.0, 1.0, (PENDULUM_TIME_LIMIT, len(seeds), 1)).astype(np.float32)
    rewards = np.zeros((PENDULUM_TIME_LIMIT, len(seeds)))
    try:
        assert len(batch) == 2
        assert batch.obs.shape == (2, 3) and batch.obs.dtype == np.float32
        for t in range(PENDULUM_TIME_LIMIT - 1):
            result = batch.step(actions[t])
            rewards[t] = result.reward
            assert not result.truncated.any() and not result.terminated.any()
            assert np.all(np.isnan(result.finished_returns))
            np.testing.assert_array_equal(batch.obs, result.next_obs)  # mid-episode, obs is s'
        result = batch.step(actions[-1])
        rewards[-1] = result.reward
        assert result.truncated.tolist() == [True, True]
        assert result.terminated.tolist() == [False, False]
        np.testing.assert_allclose(result.finished_returns, rewards.sum(axis=0), rtol=1e-6)
        for i, seed in enumerate(seeds):
            final_obs, ref_rewards, next_start = rollout_reference("Pendulum-v1", seed, list(actions[:, i]))
            np.testing.assert_allclose(rewards[:, i], ref_rewards, rtol=1e-6)
            np.testing.assert_allclose(result.next_obs[i], final_obs, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(batch.obs[i], next_start, rtol=1e-6, atol=1e-6)
            assert not np.allclose(batch.obs[i], result.next_obs[i])
        # The next episode starts from zero return: one more step finishes nothing.
        following = batch.step(actions[0])
        assert np.all(np.isnan(following.finished_returns))
        np.testing.assert_allclose(batch.episode_returns, following.reward, rtol=1e-6)
    finally:
        batch.close()


def test_env_batch_same_seed_same_trajectory() -> None:
    """Two members with the same seed and actions step identically (seeding is per member)."""
    batch = EnvBatch("Pendulum-v1", [5, 5, 6])
    try:
        assert np.array_equal(batch.obs[0], batch.obs[1])
        assert not np.array_equal(batch.obs[0], batch.obs[2])
        action = np.full((3, 1), 0.3, dtype=np.float32)
        for _ in range(5):
            result = batch.step(action)
        assert np.array_equal(result.next_obs[0], result.next_obs[1])
    finally:
        batch.close()


def test_env_batch_termination_on_hopper() -> None:
    """Random actions make Hopper-v4 fall: terminated True, truncated False, episode return reported."""
    batch = EnvBatch("Hopper-v4", [0])
    rng = np.random.default_rng(0)
    total = 0.0
    try:
        for _ in range(1000):
            result = batch.step(rng.uniform(-1.0, 1.0, (1, 3)).astype(np.float32))
            total += float(result.reward[0])
            if result.terminated[0] or result.truncated[0]:
                break
            assert np.isnan(result.finished_returns[0])
        else:
            pytest.fail("Hopper-v4 never ended an episode under 1000 random actions")
        assert bool(result.terminated[0]) is True
        assert bool(result.truncated[0]) is False
        assert result.finished_returns[0] == pytest.approx(total, rel=1e-5)
        assert batch.episode_returns[0] == 0.0
        assert not np.array_equal(batch.obs[0], result.next_obs[0])  # reset to a fresh standing start
    finally:
        batch.close()


def test_env_batch_reset_continues_rng_and_zeroes_returns() -> None:
    """EnvBatch.reset starts new episodes (new initial states) and clears running returns."""
    batch = EnvBatch("Pendulum-v1", [1])
    try:
        first = batch.obs.copy()
        batch.step(np.zeros((1, 1), dtype=np.float32))
        assert batch.episode_returns[0] != 0.0
        again = batch.reset()
        assert batch.episode_returns[0] == 0.0
        assert again.dtype == np.float32
        assert not np.array_equal(again, first)
    finally:
        batch.close()


def test_eval_env_seed_is_deterministic_and_distinct() -> None:
    """eval_env_seed: same inputs same seed; different episodes, run seeds and the run seed itself differ."""
    assert eval_env_seed(0, 0) == eval_env_seed(0, 0)
    assert eval_env_seed(7, 3) == eval_env_seed(7, 3)
    episodes = [eval_env_seed(0, j) for j in range(10)]
    assert len(set(episodes)) == 10
    assert eval_env_seed(0, 0) != eval_env_seed(1, 0)
    assert eval_env_seed(0, 1) != eval_env_seed(1, 0)
    for run_seed in range(5):
        seeds = {eval_env_seed(run_seed, j) for j in range(10)}
        assert run_seed not in seeds
        assert not seeds & set(range(100))  # apart from the small integers used as training seeds
    assert all(isinstance(s, int) and s >= 0 for s in episodes)


def play_repeated(repeat: int, env_id: str, actions: np.ndarray) -> tuple[list[float], list[np.ndarray], bool, bool]:
    """`actions` in `make_env(env_id, action_repeat=repeat)` from seed 0 until its episode ends: the rewards and
    observations of each agent step, and whether it terminated or was truncated."""
    env = make_env(env_id, action_repeat=repeat)
    env.reset(seed=0)
    rewards, observations = [], []
    try:
        for action in actions:
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(float(reward))
            observations.append(obs)
            if terminated or truncated:
                return rewards, observations, terminated, truncated
    finally:
        env.close()
    pytest.fail(f"{env_id} did not end its episode in {len(actions)} agent steps")


@pytest.mark.parametrize("env_id", ["Hopper-v4", "Pendulum-v1"])
def test_action_repeat_sums_k_rewards_and_stops_at_the_episode_end(env_id: str) -> None:
    """With action_repeat 3 each agent step is the same action for 3 simulator steps: its reward is their sum, its
    observation the last; the step that meets a termination (Hopper falls) or a truncation (Pendulum's 200-step
    limit, reached one step into the 67th agent step) stops there and passes the end on."""
    dims = env_dims(env_id)
    actions = np.random.default_rng(1).uniform(-1, 1, (1000, dims.act_dim)).astype(np.float32)
    single, single_obs, single_terminated, single_truncated = play_repeated(1, env_id, np.repeat(actions, 3, axis=0))
    rewards, observations, terminated, truncated = play_repeated(3, env_id, actions)
    assert isinstance(make_env(env_id, action_repeat=3), ActionRepeat) and not isinstance(make_env(env_id), ActionRepeat)
    assert (terminated, truncated) == (single_terminated, single_truncated) == (env_id == "Hopper-v4", env_id != "Hopper-v4")
    assert len(rewards) == -(-len(single) // 3)  # the last agent step is cut short where the episode ended
    if env_id == "Pendulum-v1":
        assert len(single) == PENDULUM_TIME_LIMIT and len(rewards) == 67
    sums = [sum(single[start:start + 3]) for start in range(0, len(single), 3)]
    np.testing.assert_allclose(rewards, sums, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(observations, single_obs[2::3] + ([single_obs[-1]] if len(single) % 3 else []))
