"""`qsmbench eval`: saved policies on fresh seeded episodes, and optionally on film.

The episodes are the evaluation envs' of the run's seeds on another stream (`EVAL_STREAM_SALT` and
`--eval-seed`), so they are reproducible and are none of the episodes the training's evaluations saw;
the policies' own randomness (QSM's chain, Diffusion-QL's candidates) is per seed on that stream too.

A bad policy file (damaged, copied under another seed's name, of another environment's dimensions, or
with settings its algorithm does not have) is skipped with a warning naming it, and so is a run whose
policies do not belong together; the rest is evaluated. Nothing usable at all is an error. `--seeds`
ranges stay ranges (`0-2000000` is one pair), and the environments an evaluation builds are checked
against the host's memory before any is made, as `qsmbench run` checks its own.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qsmbench.algorithms import Agent
from qsmbench.algorithms.contract import EnvDims
from qsmbench.core.errors import ConfigError, PolicyError
from qsmbench.core.messages import format_bytes, plural
from qsmbench.envs.environments import env_dims
from qsmbench.runs.layout import POLICY_DIR, policy_files, policy_run_dir, policy_seed
from qsmbench.runs.saved_policies import SavedPolicy, load_agent, read_policy
from qsmbench.training.evaluation import Evaluator
from qsmbench.training.memory import env_bytes, host_available_bytes
from qsmbench.training.prepare import resolve_device

EVAL_STREAM_SALT = 0x5A7ED  # `qsmbench eval`'s episodes and noise, apart from the training's evaluations
QUOTED_INPUT = 80  # characters of a bad --seeds value a message repeats


@dataclass(frozen=True)
class SeedRanges:
    """Seeds as sorted, disjoint, inclusive ranges: `--seeds 0-2000000` is one pair, never two million seeds."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, seed: object) -> bool:
        if not isinstance(seed, int):
            return False
        index = bisect.bisect_right(self.ranges, (seed, math.inf)) - 1
        return index >= 0 and seed <= self.ranges[index][1]

    def without(self, seeds: Iterable[int]) -> SeedRanges:
        """These ranges less `seeds` (a few: the seeds found on disk)."""
        left: list[tuple[int, int]] = []
        removed = sorted(set(seeds))
        for low, high in self.ranges:
            for seed in removed[bisect.bisect_left(removed, low) : bisect.bisect_right(removed, high)]:
                left += [(low, seed - 1)] if seed > low else []
                low = seed + 1
            left += [(low, high)] if low <= high else []
        return SeedRanges(tuple(left))

    def describe(self, shown: int = 5) -> str:
        """`seeds 2-5, 9`, at most `shown` ranges long (a message must stay one short line)."""
        parts = [str(low) if low == high else f"{low}-{high}" for low, high in self.ranges[:shown]]
        more = f" and {plural(len(self.ranges) - shown, 'more range')}" if len(self.ranges) > shown else ""
        single = len(self.ranges) == 1 and self.ranges[0][0] == self.ranges[0][1]
        return f"{'seed' if single else 'seeds'} {', '.join(parts)}{more}"


def parse_seeds(text: str) -> SeedRanges:
    """`"0,2,5-7"` -> the ranges 0, 2 and 5-7; ConfigError, quoting at most `QUOTED_INPUT` characters, otherwise."""
    pairs = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d{1,100})\s*(?:-\s*(\d{1,100})\s*)?", part)
        if not match or (match[2] is not None and int(match[2]) < int(match[1])):
            quoted = f"{text[:QUOTED_INPUT]!r}{'...' if len(text) > QUOTED_INPUT else ''}"
            raise ConfigError(f"--seeds expects seeds and ranges such as 0,2,5-7, got {quoted}")
        pairs.append((int(match[1]), int(match[2] or match[1])))
    merged: list[tuple[int, int]] = []
    for low, high in sorted(pairs):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return SeedRanges(tuple(merged))


@dataclass(frozen=True)
class FoundPolicies:
    """The readable saved policies under a path, one list per run directory in seed order, and why each
    file that could not be used was skipped (one line naming it)."""

    path: Path
    runs: list[list[SavedPolicy]]
    skipped: list[str]


def find_policies(path: Path, seeds: SeedRanges | None = None) -> FoundPolicies:
    """The saved policies under `path` (a run directory or a results tree, directory links followed); only
    `seeds` when given. ConfigError when there are none, or a seed asked for has no usable one."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    files = policy_files(path)
    if not files:
        raise ConfigError(
            f"no saved policies under {path}: a run saves them in <run dir>/{POLICY_DIR}/ when it completes"
        )
    runs: dict[Path, list[SavedPolicy]] = {}
    skipped: list[str] = []
    for file in files:
        if seeds is not None and policy_seed(file) not in seeds:
            continue
        try:
            policy = read_policy(file)
        except PolicyError as error:
            skipped.append(str(error))
            continue
        runs.setdefault(policy_run_dir(file), []).append(policy)
    found = {policy.seed for policies in runs.values() for policy in policies}
    if seeds is not None and (missing := seeds.without(found)).ranges:
        because = f"; {skipped[0]}" if skipped else ""
        raise ConfigError(f"no saved policy of {missing.describe()} under {path}{because}")
    return FoundPolicies(path, [sorted(policies, key=lambda policy: policy.seed) for _, policies in sorted(runs.items())], skipped)


def check_eval_fits(found: FoundPolicies, episodes: int) -> None:
    """Refuse, before any environment is made, an evaluation whose `seeds x episodes` environments (one run's
    at a time) cannot fit in the host's memory, as `qsmbench run` refuses (qsmbench.training.memory)."""
    available = host_available_bytes()
    for policies in found.runs:
        need = len(policies) * episodes * env_bytes(policies[0].header.env_id)
        if need > available:
            raise ConfigError(
                f"evaluating {episodes:,} episodes of {plural(len(policies), 'seed')} of {policy_run_dir(policies[0].path)} "
                f"needs about {format_bytes(need)} of host memory for its environments, but {format_bytes(available)} "
                "is available; use fewer --episodes, --video-episodes or --seeds"
            )


@dataclass(frozen=True)
class LoadedRuns:
    """The saved policies of each usable run under a path, each run's seeds stacked into one agent again, and
    why each policy or run that could not be used was skipped."""

    runs: list[list[SavedPolicy]]
    agents: list[Agent]
    device: torch.device
    skipped: list[str]


def load_runs(found: FoundPolicies, device: str) -> LoadedRuns:
    """The runs' saved policies as one agent per run, on `device`; a run that cannot be loaded (policies of
    other runs mixed in, another environment's dimensions, settings its algorithm does not have) is skipped.
    PolicyError, naming the first bad file, when no run is left."""
    torch_device = resolve_device(device)
    runs, agents, skipped = [], [], list(found.skipped)
    for policies in found.runs:
        try:
            check_dims(policies[0])
            agents.append(load_agent(policies, torch_device))
            runs.append(policies)
        except PolicyError as error:
            skipped.append(f"{error} (the run in {policy_run_dir(policies[0].path)})")
    if not runs:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise PolicyError(f"no usable saved policy under {found.path}: {skipped[0]}{more}")
    return LoadedRuns(runs, agents, torch_device, skipped)


@functools.cache
def real_dims(env_id: str) -> EnvDims:
    """The dimensions of `env_id` here (made once per process: a tree's runs share a few environments)."""
    return env_dims(env_id)


def check_dims(policy: SavedPolicy) -> None:
    """The policy's stored dimensions must be its environment's: a raw shape error in mid-episode otherwise."""
    env_id = policy.header.env_id
    try:
        dims = real_dims(env_id)
    except ConfigError as error:
        raise PolicyError(f"{policy.path}: its environment cannot be made here ({error})") from None
    if dims != policy.dims:
        raise PolicyError(
            f"{policy.path} is a policy for {policy.dims.obs_dim}-dim observations and {policy.dims.act_dim}-dim "
            f"actions, but {env_id} has {dims.obs_dim} and {dims.act_dim}"
        )


def evaluate_runs(loaded: LoadedRuns, episodes: int, eval_seed: int) -> list[PolicyReturns]:
    """Each run's returns on `episodes` fresh episodes per seed (`eval_seed`'s stream)."""
    return [
        evaluate_policies(policies, agent, episodes, eval_seed, loaded.device)
        for policies, agent in zip(loaded.runs, loaded.agents)
    ]


@dataclass(frozen=True)
class PolicyReturns:
    """The returns `[seeds, episodes]` of one run's saved policies."""

    policies: list[SavedPolicy]
    returns: np.ndarray

    @property
    def label(self) -> str:
        header = self.policies[0].header
        return f"{header.algo} [{header.variant}]" if header.variant else header.algo


def evaluator_for(
    policies: Sequence[SavedPolicy], episodes: int, eval_seed: int, device: torch.device, render_mode: str | None = None
) -> Evaluator:
    """The evaluation envs of these policies' seeds on `qsmbench eval`'s stream `eval_seed`."""
    seeds = [policy.seed for policy in policies]
    env_id = policies[0].header.env_id
    action_repeat = int(policies[0].header.run_config.get("action_repeat", 1))  # as the run trained; 1 before it existed
    return Evaluator(
        env_id, seeds, episodes, device, stream=(EVAL_STREAM_SALT, eval_seed), render_mode=render_mode,
        action_repeat=action_repeat,
    )


def evaluate_policies(
    policies: Sequence[SavedPolicy], agent: Agent, episodes: int, eval_seed: int, device: torch.device
) -> PolicyReturns:
    """The returns of `agent` (`load_agent` of `policies`) on `episodes` fresh episodes per seed, all seeds as one batch."""
    evaluator = evaluator_for(policies, episodes, eval_seed, device)
    return PolicyReturns(list(policies), play(agent, policies, evaluator, np.ones(len(policies), dtype=bool)))


def play(agent: Agent, policies: Sequence[SavedPolicy], evaluator: Evaluator, live: np.ndarray) -> np.ndarray:
    """One evaluation of the `live` seeds of `policies` in `evaluator`'s envs, which are closed after it:
    `[seeds, episodes]`, meaningful for the live seeds only."""
    try:
        returns, _ = evaluator.evaluate(agent, live, policies[0].step)
    finally:
        evaluator.close()
    return returns
