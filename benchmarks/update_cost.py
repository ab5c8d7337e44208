"""Time one update and one acting call of an algorithm, outside the env loop, and count their operators.

    .venv/bin/python benchmarks/update_cost.py --algo qsm --seeds 1 --obs-dim 11 --act-dim 3

The replay holds random transitions; the cost of an update does not depend on their values. The operator
count (leaf aten operators that compute, views left out) is what bounds an eager update on a GPU, where
each is one kernel launch from Python. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from qsmbench.algorithms import ALGORITHMS, resolve
from qsmbench.replay import SeedBatchedReplay
from qsmbench.trainer import resolve_device


def seconds_per_call(function, calls: int, device: torch.device) -> float:
    for _ in range(max(calls // 10, 1)):
        function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls


VIEW_OPS = {
    "aten::view", "aten::_unsafe_view", "aten::as_strided", "aten::reshape", "aten::expand", "aten::unsqueeze",
    "aten::squeeze", "aten::transpose", "aten::t", "aten::permute", "aten::select", "aten::slice", "aten::detach",
    "aten::alias", "aten::lift_fresh", "aten::numpy_T", "aten::unbind", "aten::split", "aten::chunk", "aten::narrow",
}  # fmt: skip


def operators_per_call(function, calls: int = 2) -> float:
    """The computing aten operators a call runs, averaged over `calls` (TD3 updates its actor every 2nd
    update): leaves of the profiler's operator tree, views left out."""
    function()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(calls):
            function()
    leaves = [
        event
        for event in profile.events()
        if event.name.startswith("aten::") and not any(child.name.startswith("aten::") for child in event.cpu_children)
    ]
    return sum(event.name not in VIEW_OPS for event in leaves) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", required=True, choices=sorted(ALGORITHMS))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--obs-dim", type=int, default=11)
    parser.add_argument("--act-dim", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    device = resolve_device(args.device)
    algorithm, config = resolve(args.algo, args.overrides)
    seeds = list(range(args.seeds))
    agent = algorithm.make_agent(args.obs_dim, args.act_dim, seeds, device, config)
    replay = SeedBatchedReplay(len(seeds), 10_000, args.obs_dim, args.act_dim, device)
    rng = np.random.default_rng(0)
    for _ in range(10_000):
        replay.add(
            rng.standard_normal((len(seeds), args.obs_dim)), rng.uniform(-1, 1, (len(seeds), args.act_dim)),
            rng.standard_normal(len(seeds)), rng.standard_normal((len(seeds), args.obs_dim)), np.zeros(len(seeds), bool),
            np.ones(len(seeds), bool),
        )  # fmt: skip
    obs = torch.randn(len(seeds), 1, args.obs_dim, device=device)
    update = seconds_per_call(lambda: agent.update(replay.sample(config.batch_size)), args.calls, device)
    explore = seconds_per_call(lambda: agent.act(obs, explore=True), args.calls * 5, device)
    evaluate = seconds_per_call(lambda: agent.act(obs, explore=False), args.calls * 5, device)
    operators = (
        operators_per_call(lambda: agent.update(replay.sample(config.batch_size))),
        operators_per_call(lambda: agent.act(obs, explore=True)),
    )
    print(
        f"{args.algo} seeds={args.seeds} device={device.type} threads={torch.get_num_threads()}: "
        f"update {update * 1e3:.2f} ms, act {explore * 1e3:.3f} ms (explore), {evaluate * 1e3:.3f} ms (evaluate); "
        f"operators: update {operators[0]:.0f}, act {operators[1]:.0f} (explore)"
    )


if __name__ == "__main__":
    main()
