"""The multimodality demonstration: a continuous bandit with four equally good actions.

The paper claims QSM policies are "implicitly multi-modal and explorative". On a one-step task
whose reward has four equal optima, a diffusion policy can keep all four, while a Gaussian policy
(SAC) or a deterministic one (TD3) must settle near one. `run_toy` trains each algorithm with the
ordinary trainer, draws action samples from each trained policy and plots them over the reward.

QSM runs here with `TOY_OVERRIDES`, not its DeepMind Control defaults, for reasons measured on
this bandit (docs/benchmarks.md):
- alpha = 1, not 50. The denoiser learns eps = -alpha grad_a Q, and the last reverse step moves
  an action by about 0.5 alpha grad_a Q. On a reward of height 1 and bump width 0.3, alpha = 50
  overshoots every bump, and the per-step clip parks the samples in the corners of the box.
- T = 10, not 5. Five coarse steps make the chain a chaotic map of alpha; ten put 13-19% of the
  samples near every optimum for every seed tried.
- actor_lr = 1e-3. The target -alpha grad_a Q oscillates across the box; at 3e-4 the denoiser
  has fitted only its linear trend (a single Gaussian) after a few thousand updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from algorithms import ALGORITHMS
from qsmbench.config import RunConfig, apply_overrides, require
from qsmbench.progress import make_reporter
from qsmbench.trainer import Trainer, prepare

BANDIT_ID = "qsmbench/MultimodalBandit-v0"
OPTIMA = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
BUMP_WIDTH = 0.3
TOY_OVERRIDES: dict[str, tuple[str, ...]] = {
    "qsm": ("hidden_sizes=128,128", "actor_hidden_sizes=128,128", "alpha=1", "diffusion_steps=10", "actor_lr=1e-3"),
    "sac": ("hidden_sizes=128,128",),
    "td3": ("hidden_sizes=128,128",),
    "dql": ("hidden_sizes=128,128", "actor_hidden_sizes=128,128"),
}
MODE_SHARE = 0.10  # about twice what a uniform policy puts within 0.25 of an optimum (4.9%)


def bandit_reward(action: np.ndarray) -> np.ndarray:
    """Sum of four Gaussian bumps of height 1 at (+-0.5, +-0.5); `action` is `[..., 2]`."""
    squared = ((action[..., None, :] - OPTIMA) ** 2).sum(-1)
    return np.exp(-squared / (2 * BUMP_WIDTH**2)).sum(-1)


class MultimodalBandit(gym.Env):
    """One-step episodes: a constant observation, a 2-D action in [-1, 1]^2, the bump reward."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(bandit_reward(np.clip(action, -1.0, 1.0)))
        return np.zeros(1, dtype=np.float32), reward, True, False, {}


def register_bandit() -> None:
    if BANDIT_ID not in gym.registry:
        gym.register(BANDIT_ID, entry_point=MultimodalBandit)


@dataclass(frozen=True)
class ToyConfig:
    algos: tuple[str, ...] = ("qsm", "dql", "sac", "td3")
    seeds: int = 1
    steps: int = 4000
    warmup_steps: int = 500
    samples: int = 1000
    out: str = "results/toy"

    def __post_init__(self) -> None:
        require(len(self.algos) >= 1, "--algos needs at least one algorithm")
        require(self.seeds >= 1, f"--seeds must be at least 1, got {self.seeds}")
        require(self.steps >= 2, f"--steps must be at least 2, got {self.steps}")


def train_on_bandit(algo: str, config: ToyConfig, overrides: list[str], quiet: bool) -> Trainer:
    """Train `algo` on the bandit with the shared trainer; curves go under `config.out` like any run.

    `overrides` come after the warm-up length and `TOY_OVERRIDES`, so they win.
    """
    register_bandit()
    run = RunConfig(
        algo=algo, env=BANDIT_ID, seeds=config.seeds, steps=config.steps, eval_every=config.steps,
        eval_episodes=10, device="cpu", out=config.out,
    )  # fmt: skip
    settings = [f"warmup_steps={config.warmup_steps}", *TOY_OVERRIDES.get(algo, ()), *overrides]
    algo_config = apply_overrides(ALGORITHMS[algo].config_cls(), settings)
    trainer = Trainer(prepare(run, algo_config, overwrite=True), make_reporter(f"toy {algo}", run.seed_values, run.steps, quiet))
    trainer.train()
    return trainer


def policy_samples(trainer: Trainer, count: int) -> np.ndarray:
    """`[seeds, count, 2]` actions from the trained behaviour policy (its exploration included)."""
    seeds = len(trainer.run.seed_values)
    obs = torch.zeros(seeds, count, 1, device=trainer.device)
    return trainer.agent.act(obs, explore=True).cpu().numpy()


def mass_near_optima(samples: np.ndarray, radius: float = 0.25) -> np.ndarray:
    """Fraction of `samples` `[n, 2]` within `radius` of each optimum: `[4]`."""
    distances = np.linalg.norm(samples[:, None, :] - OPTIMA, axis=-1)
    return (distances < radius).mean(axis=0)


def plot_samples(samples: dict[str, np.ndarray], path: Path) -> None:
    """The reward landscape with each algorithm's action samples (all seeds pooled), one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-1, 1, 201)
    xx, yy = np.meshgrid(grid, grid)
    reward = bandit_reward(np.stack([xx, yy], axis=-1))
    fig, axes = plt.subplots(1, len(samples), figsize=(4 * len(samples), 4.2), squeeze=False)
    for ax, (algo, points) in zip(axes[0], samples.items()):
        ax.contourf(xx, yy, reward, levels=20, cmap="viridis")
        flat = points.reshape(-1, 2)
        ax.scatter(flat[:, 0], flat[:, 1], s=3, c="white", alpha=0.5, linewidths=0)
        modes = int((mass_near_optima(flat) > MODE_SHARE).sum())
        settings = ", ".join(item for item in TOY_OVERRIDES.get(algo, ()) if "hidden_sizes" not in item)
        ax.set_title(f"{algo} {settings}\n{modes} of 4 optima hold >{MODE_SHARE:.0%} of samples", fontsize=10)
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("action 1")
        ax.set_ylabel("action 2")
    fig.suptitle("Multimodal bandit: reward (colour) and policy action samples (white)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_toy(config: ToyConfig, quiet: bool, overrides: dict[str, list[str]] | None = None) -> Path:
    """Train every algorithm of `config` on the bandit and save `<out>/multimodal.png`."""
    overrides = overrides or {}
    samples = {
        algo: policy_samples(train_on_bandit(algo, config, overrides.get(algo, []), quiet), config.samples)
        for algo in config.algos
    }
    path = Path(config.out) / "multimodal.png"
    plot_samples(samples, path)
    return path
