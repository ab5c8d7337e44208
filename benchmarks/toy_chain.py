"""QSM's reverse chain on the toy bandit with a perfect denoiser, eps = -alpha grad_a r(a).

    .venv/bin/python benchmarks/toy_chain.py --steps 5 10 20 --alphas 0.3 1 3 10 50

With no learning involved, this shows which (T, alpha) let the sampler itself hold the four optima
of `qsmbench toy`: the share of samples within 0.25 of each optimum (uniform: 4.9%) and the share
in the clipped corners. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import Tensor

from qsmbench.algorithms.blocks.diffusion import ChainStep, SamplerOptions, reverse_chain
from qsmbench.algorithms.blocks.schedules import DiffusionSchedule
from qsmbench.tools.toy import bandit_reward, mass_near_optima


def reward_gradient(action: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central differences of the bandit reward, so the reward has one definition (`bandit_reward`)."""
    steps = np.eye(action.shape[-1]) * h
    return np.stack([(bandit_reward(action + d) - bandit_reward(action - d)) / (2 * h) for d in steps], axis=-1)


class ExactNoiseModel:
    """The denoiser QSM would learn with a perfect critic, eps = -alpha grad_a r(a), as a `NoiseModel`: it
    ignores the state and the step, so its time code is the step itself and its chain needs nothing precomputed."""

    def __init__(self, alpha: float):
        self.alpha = alpha

    def __call__(self, obs: Tensor, noisy_action: Tensor, t: Tensor) -> Tensor:
        return -self.alpha * torch.from_numpy(reward_gradient(noisy_action.double().numpy())).float()

    def time_code(self, t: Tensor) -> Tensor:
        return t.unsqueeze(-1).float()

    def chain(self, obs: Tensor, codes: Tensor) -> ChainStep:
        return lambda action, i: self(obs, action, codes[:, i])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.3, 1.0, 3.0, 10.0, 50.0])
    parser.add_argument("--samples", type=int, default=4000)
    args = parser.parse_args()
    torch.manual_seed(0)
    obs = torch.zeros(1, args.samples, 1)
    for steps in args.steps:
        schedule = DiffusionSchedule.make("vp", steps, torch.device("cpu"))
        for alpha in args.alphas:
            actions = reverse_chain(ExactNoiseModel(alpha), schedule, obs, 2, SamplerOptions())[0].numpy()
            mass = mass_near_optima(actions)
            corners = (np.abs(actions) > 0.95).all(-1).mean()
            print(f"T={steps:3d} alpha={alpha:6.2f}  near each optimum {np.round(mass, 3)}  in corners {corners:.2f}")


if __name__ == "__main__":
    main()
