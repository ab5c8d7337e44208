"""`qsmbench eval`: saved policies on fresh seeded episodes, and optionally on film.

The episodes are the evaluation envs' of the run's seeds on another stream (`EVAL_STREAM_SALT` and
`--eval-seed`), so they are reproducible and are none of the episodes the training's evaluations saw;
the policies' own randomness (QSM's chain, Diffusion-QL's candidates) is per seed on that stream too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qsmbench.algorithms import Agent
from qsmbench.core.errors import ConfigError
from qsmbench.runs.layout import POLICY_DIR, policy_files, policy_run_dir, policy_seed
from qsmbench.runs.saved_policies import SavedPolicy, load_agent, read_policy
from qsmbench.training.evaluation import Evaluator
from qsmbench.training.prepare import resolve_device

EVAL_STREAM_SALT = 0x5A7ED  # `qsmbench eval`'s episodes and noise, apart from the training's evaluations


@dataclass(frozen=True)
class PolicyReturns:
    """The returns `[seeds, episodes]` of one run's saved policies."""

    policies: list[SavedPolicy]
    returns: np.ndarray

    @property
    def label(self) -> str:
        header = self.policies[0].header
        return f"{header.algo} [{header.variant}]" if header.variant else header.algo


@dataclass(frozen=True)
class LoadedRuns:
    """The saved policies of each run under a path, each run's seeds stacked into one agent again."""

    runs: list[list[SavedPolicy]]
    agents: list[Agent]
    device: torch.device


def load_runs(runs: list[list[SavedPolicy]], device: str) -> LoadedRuns:
    """The runs' saved policies (`find_policies`) as one agent per run, on `device`."""
    torch_device = resolve_device(device)
    return LoadedRuns(runs, [load_agent(policies, torch_device) for policies in runs], torch_device)


def evaluate_runs(loaded: LoadedRuns, episodes: int, eval_seed: int) -> list[PolicyReturns]:
    """Each run's returns on `episodes` fresh episodes per seed (`eval_seed`'s stream)."""
    return [
        evaluate_policies(policies, agent, episodes, eval_seed, loaded.device)
        for policies, agent in zip(loaded.runs, loaded.agents)
    ]


def find_policies(path: Path, seeds: Sequence[int] | None = None) -> list[list[SavedPolicy]]:
    """The saved policies under `path` (a run directory or a results tree), one list per run directory, in
    seed order; only `seeds` when given. ConfigError when there are none, or a seed asked for is missing."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    files = policy_files(path)
    if not files:
        raise ConfigError(
            f"no saved policies under {path}: a run saves them in <run dir>/{POLICY_DIR}/ when it completes"
        )
    runs: dict[Path, list[SavedPolicy]] = {}
    for file in files:
        if seeds is None or policy_seed(file) in seeds:
            runs.setdefault(policy_run_dir(file), []).append(read_policy(file))
    found = {policy.seed for policies in runs.values() for policy in policies}
    if missing := sorted(set(seeds or ()) - found):
        raise ConfigError(f"no saved policy of seed {', '.join(map(str, missing))} under {path}")
    return [sorted(policies, key=lambda policy: policy.seed) for _, policies in sorted(runs.items())]


def parse_seeds(text: str) -> list[int]:
    """`"0,2,5-7"` -> [0, 2, 5, 6, 7]; ConfigError for anything else."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match or (match[2] is not None and int(match[2]) < int(match[1])):
            raise ConfigError(f"--seeds expects seeds and ranges such as 0,2,5-7, got {text!r}")
        seeds.extend(range(int(match[1]), int(match[2] or match[1]) + 1))
    return seeds


def evaluator_for(
    policies: Sequence[SavedPolicy], episodes: int, eval_seed: int, device: torch.device, render_mode: str | None = None
) -> Evaluator:
    """The evaluation envs of these policies' seeds on `qsmbench eval`'s stream `eval_seed`."""
    seeds = [policy.seed for policy in policies]
    env_id = policies[0].header.env_id
    return Evaluator(env_id, seeds, episodes, device, stream=(EVAL_STREAM_SALT, eval_seed), render_mode=render_mode)


def evaluate_policies(
    policies: Sequence[SavedPolicy], agent: Agent, episodes: int, eval_seed: int, device: torch.device
) -> PolicyReturns:
    """The returns of `agent` (`load_agent` of `policies`) on `episodes` fresh episodes per seed, all seeds as one batch."""
    return PolicyReturns(list(policies), play(agent, policies, evaluator_for(policies, episodes, eval_seed, device)))


def play(agent: Agent, policies: Sequence[SavedPolicy], evaluator: Evaluator) -> np.ndarray:
    """One evaluation of every seed of `policies` in `evaluator`'s envs, which are closed after it: `[seeds, episodes]`."""
    try:
        returns, _ = evaluator.evaluate(agent, np.ones(len(policies), dtype=bool), policies[0].step)
    finally:
        evaluator.close()
    return returns
