"""The multimodality demonstration: a continuous bandit with four equally good actions.

The paper claims QSM policies are "implicitly multi-modal and explorative". On a one-step task
whose reward has four equal optima, a diffusion policy can keep all four, while a Gaussian policy
(SAC) or a deterministic one (TD3) must settle near one. The demo is a grid file,
qsmbench/data/toy.toml: it lists the algorithms and the settings each is trained with on the
bandit, and says why QSM's differ from its DeepMind Control defaults. `run_toy` trains each run
spec with the ordinary trainer, draws action samples from each trained policy and plots them over
the reward.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from qsmbench.algorithms import resolve
from qsmbench.grid.files import Grid, read_grid
from qsmbench.runs.spec import RunSpec
from qsmbench.training.loop import Outcome, train
from qsmbench.training.prepare import prepare
from qsmbench.training.progress import make_reporter

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BANDIT_ID = "qsmbench/MultimodalBandit-v0"
TOY_GRID = importlib.resources.files("qsmbench").joinpath("data/toy.toml")
OPTIMA = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
BUMP_WIDTH = 0.3
UNSHOWN_SETTINGS = ("hidden_sizes", "actor_hidden_sizes", "warmup_steps", "batch_size")  # left out of panel titles
TITLE_WIDTH = 40  # characters of a panel title line that fit a 4-inch panel at fontsize 10
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


def toy_grid(scale: str = "demo") -> Grid:
    """The demo's grid file at `scale` ("demo", or "smoke" for tests)."""
    register_bandit()
    return read_grid(TOY_GRID, scale)


def toy_specs(
    grid: Grid,
    algos: Sequence[str] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    out: str | None = None,
) -> list[RunSpec]:
    """The grid's run specs on the CPU, for `algos` (default: the grid's), with the given run settings replaced.

    An algorithm the grid does not list runs with its defaults. The warm-up is cut to half the steps
    when fewer steps are asked for, so every run learns.
    """
    listed = {spec.algo: spec for spec in grid.specs}
    first = grid.specs[0]
    protocol = dataclasses.replace(first.protocol, **{k: v for k, v in (("seeds", seeds), ("steps", steps)) if v is not None})
    execution = dataclasses.replace(first.execution, device="cpu", **({"out": out} if out is not None else {}))
    specs = []
    for name in algos or grid.algorithms:
        algorithm, config = (listed[name].algorithm, listed[name].config) if name in listed else resolve(name, [])
        warmup = min(config.warmup_steps, protocol.steps // 2)
        specs.append(RunSpec(protocol, execution, algorithm, dataclasses.replace(config, warmup_steps=warmup)))
    return specs


def train_on_bandit(spec: RunSpec, quiet: bool) -> Outcome:
    """Train one spec with the shared trainer; curves go under `spec.execution.out` like any run's."""
    reporter = make_reporter(f"toy {spec.algo}", spec.protocol.seed_values, spec.protocol.steps, quiet)
    return train(prepare(spec, overwrite=True), reporter)


def policy_samples(outcome: Outcome, count: int) -> np.ndarray:
    """`[seeds, count, 2]` actions from the trained behaviour policy (its exploration included)."""
    obs = torch.zeros(len(outcome.seeds), count, 1, device=outcome.device)
    return outcome.agent.act(obs, explore=True).cpu().numpy()


def changed_settings(spec: RunSpec) -> str:
    """The hyperparameters that differ from the algorithm's defaults, for a panel title."""
    defaults = dataclasses.asdict(spec.algorithm.config_cls())
    changed = {k: v for k, v in dataclasses.asdict(spec.config).items() if v != defaults[k] and k not in UNSHOWN_SETTINGS}
    return ", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" for key, value in changed.items())


def mass_near_optima(samples: np.ndarray, radius: float = 0.25) -> np.ndarray:
    """Fraction of `samples` `[n, 2]` within `radius` of each optimum: `[4]`."""
    distances = np.linalg.norm(samples[:, None, :] - OPTIMA, axis=-1)
    return (distances < radius).mean(axis=0)


def draw_samples(samples: dict[RunSpec, np.ndarray]) -> Figure:
    """The reward landscape with each algorithm's action samples (all seeds pooled), one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-1, 1, 201)
    xx, yy = np.meshgrid(grid, grid)
    reward = bandit_reward(np.stack([xx, yy], axis=-1))
    columns = math.ceil(math.sqrt(len(samples)))  # nine algorithms as a 3 x 3 square, not a 36-inch strip
    rows = math.ceil(len(samples) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(samples):]:
        ax.remove()
    for ax, (spec, points) in zip(axes.flat, samples.items()):
        ax.contourf(xx, yy, reward, levels=20, cmap="viridis")
        flat = points.reshape(-1, 2)
        ax.scatter(flat[:, 0], flat[:, 1], s=3, c="white", alpha=0.5, linewidths=0)
        modes = int((mass_near_optima(flat) > MODE_SHARE).sum())
        settings = textwrap.fill(f"{spec.algo} {changed_settings(spec)}", TITLE_WIDTH)  # one line overran the next panel
        ax.set_title(f"{settings}\n{modes} of 4 optima hold >{MODE_SHARE:.0%} of samples", fontsize=10)
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("action 1")
        ax.set_ylabel("action 2")
    fig.suptitle("Multimodal bandit: reward (colour) and policy action samples (white)")
    fig.tight_layout()
    return fig


def plot_samples(samples: dict[RunSpec, np.ndarray], path: Path) -> None:
    """`draw_samples` saved to `path`."""
    import matplotlib.pyplot as plt

    fig = draw_samples(samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_toy(specs: Sequence[RunSpec], samples: int = 1000, quiet: bool = False) -> Path:
    """Train every spec on the bandit and save `<out of the first spec>/multimodal.png`."""
    drawn = {spec: policy_samples(train_on_bandit(spec, quiet), samples) for spec in specs}
    path = Path(specs[0].execution.out) / "multimodal.png"
    plot_samples(drawn, path)
    return path
