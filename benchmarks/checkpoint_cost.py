"""Size and write time of a run's checkpoint after a given number of steps, and the replay's bytes per seed-step.

    .venv/bin/python benchmarks/checkpoint_cost.py --algo sac --env Hopper-v4 --seeds 10 --filled 100000 1000000

Builds the real trainer of a `--steps 1000000` run (default hyperparameters, so the networks and optimisers
have their real sizes), fills its replay with `filled` transitions of random data in episodes of 1,000 steps
(a checkpoint's size and write time do not depend on the values), and times `write_checkpoint` of the
trainer's whole state, fsync included, into --out (default: a temporary directory on this machine's
temporary disk, removed afterwards; give --out to time another disk). Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from qsmbench.core.messages import format_bytes
from qsmbench.runs.checkpoint import write_checkpoint
from qsmbench.runs.spec import make_spec
from qsmbench.training.loop import start
from qsmbench.training.prepare import prepare
from qsmbench.training.progress import PlainReporter
from qsmbench.training.replay import SeedBatchedReplay


def fill(replay: SeedBatchedReplay, transitions: int, episode: int = 1000) -> None:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(replay.seeds, replay.obs_dim)).astype(np.float32)
    for step in range(replay.size, transitions):
        next_obs = rng.normal(size=obs.shape).astype(np.float32)
        ended = np.full(replay.seeds, (step + 1) % episode == 0)
        action = rng.uniform(-1, 1, (replay.seeds, replay.act_dim)).astype(np.float32)
        replay.add(obs, action, rng.normal(size=replay.seeds).astype(np.float32), next_obs, np.zeros_like(ended), ended)
        obs = next_obs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="sac")
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--filled", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qsmbench-checkpoint-cost-") as scratch:
        measure(args, args.out or Path(scratch))


def measure(args: argparse.Namespace, out: Path) -> None:
    spec = make_spec(args.algo, env=args.env, seeds=args.seeds, steps=1_000_000, device="cpu", out=str(out))
    prepared = prepare(spec, overwrite=True)
    trainer = start(prepared, PlainReporter(args.algo, spec.protocol.seed_values, spec.protocol.steps))
    replay = trainer.parts.replay
    assert replay is not None
    for filled in sorted(args.filled):
        fill(replay, filled)
        trainer.step = filled
        began = time.perf_counter()
        write_checkpoint(prepared.checkpoint, *trainer.checkpoint_state())
        seconds = time.perf_counter() - began
        size = os.path.getsize(prepared.checkpoint)
        print(f"{args.algo} {args.env} x {args.seeds} seeds, {filled:,} steps: checkpoint {format_bytes(size)}, "
              f"written in {seconds:.2f} s ({size / seconds / 1e6:.0f} MB/s)")
    per_step = sum(t.numel() * t.element_size() for t in (replay.stream, replay.obs_row, replay.action, replay.reward,
                                                         replay.terminated)) / (replay.seeds * replay.capacity)
    dims = dataclasses.asdict(prepared.dims)
    two_copies = 4 * (2 * dims["obs_dim"] + dims["act_dim"] + 2)
    print(f"replay: {per_step + 1:.1f} bytes per seed-step (device, plus 1 on the host); two observation copies: {two_copies}")
    prepared.checkpoint.unlink()
    trainer.claim.release()


if __name__ == "__main__":
    main()
