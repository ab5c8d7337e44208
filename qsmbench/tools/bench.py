"""`qsmbench bench`: how fast each part of a training step runs here, measured, not estimated.

For each algorithm and seed count it times, on the chosen device, with the run's own code:

- **env**: the training envs stepped with random actions (`EnvBatch.step`), all seeds at once;
- **act**: one exploring action for every seed (`agent.act`);
- **update**: one update of every seed on a batch from a filled replay (`agent.update`);
- **loop**: a whole training step after the warm-up (`Collector.collect` then `agent.update`), what a
  run's `sps` column measures between evaluations;

each in steps per second of the batch (every seed steps once per step), and the operators an update
and an action run (leaf aten operators that compute, views left out: on a GPU each is a kernel launch
from Python, and they bound an eager step). Results are printed as a table and appended, one JSON
object per measurement with the run provenance (device, versions, commit, host), to a results file that
docs/benchmarks.md explains.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from qsmbench.algorithms import Agent, resolve
from qsmbench.algorithms.blocks.nets import compile_networks
from qsmbench.envs.environments import env_dims
from qsmbench.training.collector import Collector
from qsmbench.training.divergence import DivergenceWatch
from qsmbench.training.provenance import provenance
from qsmbench.training.replay import make_replay

NO_KERNEL_OPS = {  # views, flag flips and bare allocations: no kernel is launched for them
    "aten::view", "aten::_unsafe_view", "aten::as_strided", "aten::reshape", "aten::expand", "aten::unsqueeze",
    "aten::squeeze", "aten::transpose", "aten::t", "aten::permute", "aten::select", "aten::slice", "aten::detach",
    "aten::alias", "aten::lift_fresh", "aten::numpy_T", "aten::unbind", "aten::split", "aten::chunk", "aten::narrow",
    "aten::resolve_conj", "aten::resolve_neg", "aten::empty", "aten::empty_like", "aten::empty_strided",
}
FILL_STEPS = 2_000  # random transitions in the replay before updates are timed


@dataclass(frozen=True)
class BenchResult:
    algo: str
    env: str
    seeds: int
    device: str
    env_sps: float  # batched env steps per second
    act_per_s: float
    update_per_s: float
    loop_sps: float  # training steps per second: act, env step, replay add, update
    update_operators: float
    act_operators: float
    compiled: bool = False  # the networks compiled with torch.compile (`--compile`)


def per_second(function: Callable[[], object], calls: int, device: torch.device) -> float:
    """Calls per second of `function` after a tenth as many warm-up calls, device work included."""
    for _ in range(max(calls // 10, 1)):
        function()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        function()
    synchronize(device)
    return calls / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def operators_per_call(function: Callable[[], object], calls: int = 2) -> float:
    """Leaf aten operators that compute (NO_KERNEL_OPS left out) per call, averaged over `calls` (TD3 updates
    its actor every second update)."""
    function()
    with stderr_silenced(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(calls):
            function()
    leaves = [
        event
        for event in profile.events()
        if event.name.startswith("aten::") and not any(child.name.startswith("aten::") for child in event.cpu_children)
    ]
    return sum(event.name not in NO_KERNEL_OPS for event in leaves) / calls


@contextmanager
def stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null: the profiler's C++ side prints a start and a stop line per use."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def bench(algo: str, env_id: str, seeds: int, calls: int, device: torch.device, compiled: bool = False) -> BenchResult:
    """Measure one algorithm at one seed count; see the module docstring. Compiled networks are compiled
    during the warm-up calls, so the timed calls measure them compiled."""
    algorithm, config = resolve(algo, [])
    dims = env_dims(env_id)
    seed_values = list(range(seeds))
    agent: Agent = algorithm.make_agent(dims.obs_dim, dims.act_dim, seed_values, device, config)
    if compiled:
        compile_networks(agent)
    replay = make_replay(algorithm, agent, seeds, max(FILL_STEPS, config.batch_size), dims.obs_dim, dims.act_dim, device)
    collector = Collector(env_id, seed_values, agent, replay, FILL_STEPS, DivergenceWatch(seeds))
    try:
        rng = np.random.default_rng(0)
        env_sps = per_second(lambda: collector.envs.step(rng.uniform(-1, 1, (seeds, dims.act_dim)).astype(np.float32)), calls, device)
        for step in range(FILL_STEPS):  # the warm-up: random actions fill the replay
            collector.collect(step)
        obs = torch.as_tensor(collector.envs.obs, device=device).unsqueeze(1)
        update = lambda: agent.update(replay.sample(config.batch_size))
        act = lambda: agent.act(obs, explore=True)
        loop = lambda: (collector.collect(FILL_STEPS), update())
        return BenchResult(
            algo, env_id, seeds, str(device), env_sps, per_second(act, calls, device),
            per_second(update, calls, device), per_second(loop, calls, device),
            operators_per_call(update), operators_per_call(act), compiled,
        )
    finally:
        collector.close()


def append_results(path: Path, results: list[BenchResult], device: torch.device) -> None:
    """One JSON line per result, each with the provenance of this machine and checkout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    context = provenance(device)
    with path.open("a", encoding="utf-8") as file:
        for result in results:
            file.write(json.dumps({**asdict(result), "torch_threads": torch.get_num_threads(), "provenance": context}) + "\n")
