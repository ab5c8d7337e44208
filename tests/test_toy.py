"""The multimodality demo's parts: the four-optimum bandit, and the figure pipeline end to end."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from qsmbench.envs import make_env
from qsmbench.storage import read_run
from qsmbench.toy import (
    BANDIT_ID,
    MODE_SHARE,
    OPTIMA,
    ToyConfig,
    bandit_reward,
    mass_near_optima,
    policy_samples,
    register_bandit,
    run_toy,
    train_on_bandit,
)


def test_bandit_reward_has_four_equal_optima() -> None:
    at_optima = bandit_reward(OPTIMA)
    np.testing.assert_allclose(at_optima, at_optima[0], rtol=1e-9)
    assert at_optima[0] > 1.0 - 1e-3
    assert bandit_reward(np.zeros(2)) < 0.3 * at_optima[0]
    assert bandit_reward(np.array([1.0, 1.0])) < 0.1 * at_optima[0]


def test_bandit_episodes_are_one_step_and_terminal() -> None:
    register_bandit()
    env = make_env(BANDIT_ID)
    obs, _ = env.reset(seed=0)
    _, reward, terminated, truncated, _ = env.step(np.array([0.5, -0.5], dtype=np.float32))
    assert obs.shape == (1,) and terminated and not truncated
    assert reward == float(bandit_reward(np.array([0.5, -0.5])))


def test_mass_near_optima_counts_each_optimum() -> None:
    samples = np.concatenate([np.tile(OPTIMA[0], (30, 1)), np.tile(OPTIMA[2], (10, 1)), np.zeros((60, 2))])
    np.testing.assert_allclose(mass_near_optima(samples), [0.3, 0.0, 0.1, 0.0])


def test_toy_trains_each_algorithm_and_draws_the_figure(tmp_path: Path) -> None:
    small = ["hidden_sizes=32,32", "batch_size=32"]
    config = ToyConfig(algos=("qsm", "sac"), seeds=2, steps=200, warmup_steps=100, samples=50, out=str(tmp_path))
    path = run_toy(config, quiet=True, overrides={"qsm": [*small, "actor_hidden_sizes=32,32"], "sac": small})
    assert path == tmp_path / "multimodal.png"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 2 * image.shape[0] * 0.8  # two panels side by side
    for algo in ("qsm", "sac"):
        curve, metadata = read_run(tmp_path / "qsmbench-MultimodalBandit-v0" / algo / "seed_1.parquet")
        assert metadata["status"] == "complete"
        assert curve["train_episodes"].iloc[-1] == 200  # every bandit episode is one step


@pytest.mark.slow
def test_qsm_keeps_several_optima_of_the_bandit(tmp_path: Path) -> None:
    """The paper's multimodality claim, with the demo's own settings: at least two optima each hold
    more than twice the share a uniform policy puts near one (4.9%). One seed keeps the suite within
    CI time; seeds 0 and 1 both put 15-19% near every optimum (docs/benchmarks.md)."""
    config = ToyConfig(algos=("qsm",), seeds=1, out=str(tmp_path))
    samples = policy_samples(train_on_bandit("qsm", config, [], quiet=True), 1000)
    for seed_samples in samples:
        mass = mass_near_optima(seed_samples)
        assert (mass > MODE_SHARE).sum() >= 2, f"share near each optimum: {np.round(mass, 3)}"
