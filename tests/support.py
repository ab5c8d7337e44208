"""Helpers for test files: hand-made batches, small configs, and the learning check on Pendulum-v1.

Imported by name (`from support import ...`): pytest puts this folder on sys.path.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from qsmbench.algorithms import ALGORITHMS, Agent
from qsmbench.algorithms.contract import Batch
from qsmbench.cli import main
from qsmbench.core.config import OffPolicyConfig
from qsmbench.runs.read import read_run
from qsmbench.runs.spec import make_spec
from qsmbench.training.loop import train
from qsmbench.training.prepare import prepare
from qsmbench.training.progress import PlainReporter
from qsmbench.training.replay import SeedBatchedReplay, make_replay

CPU = torch.device("cpu")
PENDULUM_SOLVED = -400.0  # a random policy scores about -1200 on Pendulum-v1, a solved one about -150


def assert_same_weights(ours: torch.nn.Module, official: torch.nn.Module) -> None:
    """`ours` (seed 0 of a qsmbench network, in the official network's layout) holds the official weights."""
    for mine, theirs in zip(ours.parameters(), official.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, atol=2e-5, rtol=1e-4)


def update_side_by_side(agent: Agent, official: Any, updates: int, obs_dim: int, act_dim: int, batch: int) -> None:
    """`updates` updates of our one-seed agent and of an official one with relax's signature (`update(obs,
    action, reward, next_obs, done)`: DACER, SDAC, DPMD) on the same batches, torch's draws seeded alike."""
    for update in range(updates):
        drawn = make_batch(1, obs_dim, act_dim, batch, generator_seed=update)
        torch.manual_seed(update)
        agent.update(drawn)
        torch.manual_seed(update)
        official.update(drawn.obs[0], drawn.action[0], drawn.reward[0], drawn.next_obs[0], drawn.terminated[0])


def make_batch(seeds: int, obs_dim: int = 3, act_dim: int = 2, batch: int = 16, generator_seed: int = 0) -> Batch:
    """Random transitions `[seeds, batch, ...]`, about 30% of them terminal."""
    g = torch.Generator().manual_seed(generator_seed)
    return Batch(
        obs=torch.randn(seeds, batch, obs_dim, generator=g),
        action=torch.rand(seeds, batch, act_dim, generator=g) * 2 - 1,
        reward=torch.randn(seeds, batch, generator=g),
        next_obs=torch.randn(seeds, batch, obs_dim, generator=g),
        terminated=(torch.rand(seeds, batch, generator=g) < 0.3).float(),
    )


def constant_critic_(critic: torch.nn.Module, value: float) -> None:
    """Make a QEnsemble output `value` everywhere: zero last-layer weights, constant bias."""
    last = critic.mlp.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(value)


def assert_deterministic_evaluation(agent: Agent, obs_dim: int) -> None:
    """The evaluation action is a function of the state; the exploration action is not."""
    obs = 10 * torch.randn(3, 5, obs_dim)
    assert torch.equal(agent.act(obs, explore=False), agent.act(obs, explore=False))
    assert not torch.equal(agent.act(obs, explore=True), agent.act(obs, explore=True))


def make_agent(
    algo: str,
    seeds: Sequence[int],
    obs_dim: int = 3,
    act_dim: int = 2,
    config: OffPolicyConfig | None = None,
    device: torch.device = CPU,
) -> Agent:
    """`algo`'s agent (small networks unless `config` is given). One whose update draws from the replay
    itself (DIPO, QVPO) is handed a real replay of 64 random transitions per seed, as a run hands it its own."""
    algorithm = ALGORITHMS[algo]
    agent = algorithm.make_agent(obs_dim, act_dim, list(seeds), device, config or small_config(algo))
    if algorithm.draws_from_replay:
        fill_replay(make_replay(algorithm, agent, len(seeds), 64, obs_dim, act_dim, device), 64)
    return agent


def fill_replay(replay: SeedBatchedReplay, transitions: int, generator_seed: int = 0) -> None:
    """Add `transitions` random transitions per seed, each its own one-step episode."""
    rng = np.random.default_rng(generator_seed)
    seeds, obs_dim, act_dim = replay.seeds, replay.obs_dim, replay.act_dim
    for _ in range(transitions):
        replay.add(
            rng.normal(size=(seeds, obs_dim)), rng.uniform(-1, 1, (seeds, act_dim)), rng.normal(size=seeds),
            rng.normal(size=(seeds, obs_dim)), rng.random(seeds) < 0.3, np.ones(seeds, dtype=bool),
        )


def small_overrides(algo: str) -> list[str]:
    """Overrides that shrink every network of `algo` to 32-32 (the update rule is unchanged)."""
    fields = {field.name for field in dataclasses.fields(ALGORITHMS[algo].config_cls)}
    return [f"{name}=32,32" for name in ("hidden_sizes", "actor_hidden_sizes") if name in fields]


QUICKER = {  # shorter chains and inner loops, for tests of plumbing rather than learning
    "qsm": ["time_hidden_sizes=16,16", "diffusion_steps=2"],
    "qsm_flowrl": ["time_hidden_sizes=16,16", "diffusion_steps=2", "eval_candidates=2"],
    "dql": ["eval_candidates=2", "diffusion_steps=2"],
    "dipo": ["time_hidden=16", "diffusion_steps=2", "action_gradient_steps=2", "keep_improved_actions=true"],
    "qvpo": ["time_hidden=16", "diffusion_steps=2", "train_samples=4", "eval_samples=2"],
    "dacer": ["time_features=4", "diffusion_steps=2", "entropy_samples=16", "em_iterations=5", "entropy_every=50"],
    "sdac": ["time_features=4", "diffusion_steps=2", "candidates=2", "reverse_samples=4"],
    "dpmd": ["time_features=4", "diffusion_steps=2", "candidates=2"],
    "qsm_relax": ["langevin_steps=2", "particles=2", "eval_particles=2", "eval_restarts=2"],
}


def quick_overrides(algo: str) -> list[str]:
    """`small_overrides` plus QUICKER's: DIPO keeps its improved actions there, so its replay column is exercised."""
    return [*small_overrides(algo), *QUICKER.get(algo, [])]


def small_config(algo: str) -> OffPolicyConfig:
    return make_spec(algo, small_overrides(algo), env="Pendulum-v1").config


def assert_learns_pendulum(algo: str, out: Path, steps: int, overrides: Sequence[str]) -> None:
    """Train 2 seeds on Pendulum-v1; the mean of their last two evaluations must beat PENDULUM_SOLVED."""
    spec = make_spec(algo, overrides, env="Pendulum-v1", seeds=2, steps=steps, eval_every=1000, eval_episodes=5,
                     device="cpu", out=str(out))
    outcome = train(prepare(spec), PlainReporter(algo, spec.protocol.seed_values, steps))
    curves = [read_run(path).curve for path in outcome.paths]
    final = np.mean([curve["eval_return"].iloc[-2:].mean() for curve in curves])
    mean_curve = np.mean([curve["eval_return"].to_numpy() for curve in curves], axis=0).round()
    assert final > PENDULUM_SOLVED, f"{algo} did not learn Pendulum-v1: mean eval returns {mean_curve.tolist()}"


@dataclasses.dataclass(frozen=True)
class CliResult:
    """What a finished `qsmbench` command left: its exit code and what it printed (as CompletedProcess names them)."""

    returncode: int
    stdout: str
    stderr: str


def with_default_sigint(command: list[str]) -> list[str]:
    """`command`, started with SIGINT at its default, as from a terminal.

    A job started with `&` by a non-interactive shell (a CI script, `make test &`) inherits SIGINT as
    ignored, and a Python started that way installs no KeyboardInterrupt handler at all.
    """
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", reset, *command]


def run_cli(args: Sequence[str], capfd: pytest.CaptureFixture[str]) -> CliResult:
    """`qsmbench ARGS` through its real entry point, `qsmbench.cli.main`, in this process.

    For tests of messages and exit codes: a subprocess pays ~3 s of interpreter and torch start-up.
    `capfd`, not `capsys`: `main` registers faulthandler on the real stderr file descriptor.
    The signal handlers `main` installs are put back afterwards.
    """
    argv, handlers = sys.argv, {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGUSR1)}
    sys.argv = ["qsmbench", *args]
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = argv
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        faulthandler.unregister(signal.SIGUSR2)
    captured = capfd.readouterr()
    code = exited.value.code
    return CliResult(code if isinstance(code, int) else 0, captured.out, captured.err)


SCHEMA_1_DATASET = "qsmbench/pendulum/random-v0"
SCHEMA_1_REFS = (-1500.0, -150.0)


def write_schema_1_results(root: Path) -> None:
    """Run files as qsmbench wrote them up to commit 155e41c (schema 1), with raw pyarrow, not our writer.

    Schema 1 named the task `env` in the rows and the evaluation environment `env` in the metadata, kept
    `algo` in `run_config`, and stored `ref_scores` as [None, None] when a dataset had none. Two online
    algorithms (sac, td3 on Pendulum-v1, evaluated at 0/100/200) and one offline (dql on a dataset,
    at 0/20/40, with `eval_normalized_score`), two seeds each.
    """
    runs = [("Pendulum-v1", "sac", "Pendulum-v1", None, 100), ("Pendulum-v1", "td3", "Pendulum-v1", None, 100),
            (SCHEMA_1_DATASET, "dql", "Pendulum-v1", SCHEMA_1_DATASET, 20)]
    for task, algo, env_id, dataset, every in runs:
        for seed in (0, 1):
            rng = np.random.default_rng([seed, len(algo), every])
            steps = [0, every, 2 * every]
            returns = rng.uniform(-1600.0, -1000.0, 3)
            columns: dict[str, Any] = {
                "algo": [algo] * 3, "env": [task] * 3, "seed": [seed] * 3, "step": steps, "eval_return": returns,
                "eval_return_std": [0.0] * 3,
            }
            if dataset:
                columns["eval_normalized_score"] = 100 * (returns - SCHEMA_1_REFS[0]) / (SCHEMA_1_REFS[1] - SCHEMA_1_REFS[0])
            columns |= {
                "train_return": [float("nan")] * 3, "train_episodes": [0, 0, 0], "wall_time_s": [0.0, 0.5, 1.0],
                "sps": [float("nan"), 100.0, 100.0], "critic_loss": [float("nan"), 1.0, 0.5],
            }
            document = {
                "schema_version": 1, "algo": algo, "env": env_id, "task": task, "dataset": dataset,
                "ref_scores": list(SCHEMA_1_REFS) if dataset else None,
                "run_config": {"algo": algo, "env": None if dataset else task, "dataset": dataset, "seeds": 2,
                               "seed_start": 0, "steps": steps[-1], "eval_every": every, "eval_episodes": 1,
                               "device": "auto", "out": "results"},
                "algo_config": {"batch_size": 16}, "versions": {"python": "3.11.7", "torch": "2.13.0+cpu"},
                "git_commit": "155e41c15acd3ad744807df6e06f5cf6657310a9", "device": "cpu", "cpu": "AMD EPYC",
                "platform": "Linux", "hostname": "vm", "start_time": "2026-11-22T08:28:23+00:00",
                "seed": seed, "status": "complete", "error": None,
            }
            table = pa.table(columns).replace_schema_metadata({b"qsmbench": json.dumps(document).encode()})
            path = root / task.replace("/", "-") / algo / f"seed_{seed}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)


@contextmanager
def keeping_first_checkpoint(path: Path, kept: Path) -> Iterator[None]:
    """Hard-link the first checkpoint written at `path` to `kept` as it appears: the run replaces it later
    and deletes it when it completes, but the link keeps that file as it was written. A test can then
    resume from it, as from the directory of a run killed right after that checkpoint."""
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                os.link(path, kept)
                return
            except FileNotFoundError:
                time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def rewrite_metadata(path: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    """Change the qsmbench metadata of the run file at `path` in place with raw pyarrow, not our writer, as a
    hand-edited or foreign file would be: `edit` changes the JSON document it is given."""
    table = pq.read_table(path)
    document = json.loads(table.schema.metadata[b"qsmbench"])
    edit(document)
    pq.write_table(table.replace_schema_metadata({b"qsmbench": json.dumps(document).encode()}), path)
