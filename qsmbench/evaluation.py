"""Evaluation episodes for every seed x episode, on envs apart from the training envs.

Env `(k, j)` is seeded once from run seed k and episode index j, and every later evaluation continues
its RNG, so evaluations are reproducible and start from fresh initial states each time. The policy's
own randomness comes from one generator per seed, seeded from the run seed and the step
(`SeedNoise.for_evaluation`), so a seed's returns do not depend on where it is evaluated.

Two ways to run them:

- `Evaluator`: in the training process, every seed's envs stepped together and the actions of all of
  them computed in one batch on the training device; the fastest with a GPU.
- `EvaluationPool` (`--eval-workers N`): N worker processes on the CPU, each owning a contiguous group of
  seeds with their envs and a copy of the agent for them, refreshed with the trained weights at every
  evaluation; the evaluation of N groups then runs on N cores. Workers fork from a server started once,
  which imports torch and the envs a single time, and ignore the stop signals, which the trainer handles.
  They pay where evaluation is long against that start (about 2.5 s) and where the cores are many:
  docs/benchmarks.md has the measurements.

Both give the same returns to float rounding: a seed's noise is its own either way, but a group of one
seed multiplies with another BLAS kernel than a batch of several (a group of all seeds is exact).
"""

from __future__ import annotations

import multiprocessing
import signal
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from qsmbench.algorithms import ALGORITHMS, Agent
from qsmbench.config import OffPolicyConfig
from qsmbench.envs import EnvBatch, EnvDims, eval_env_seed
from qsmbench.noise import SeedNoise

CPU = torch.device("cpu")
WORKER_CLOSE_TIMEOUT_S = 10.0


class EvaluationError(RuntimeError):
    """An evaluation worker failed or died; the run fails with its reason."""


class Evaluator:
    def __init__(self, env_id: str, seeds: list[int], episodes: int, device: torch.device):
        self.seeds, self.episodes, self.device = seeds, episodes, device
        self.batch = EnvBatch(env_id, [eval_env_seed(seed, j) for seed in seeds for j in range(episodes)])

    def evaluate(self, agent: Agent, live: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Run the agent's evaluation action in the envs of the `live` seeds.

        Returns `[seeds, episodes]` undiscounted returns (meaningful for live seeds only) and a `[seeds]`
        mask of the seeds whose evaluation action was non-finite: their envs are stopped before they are
        stepped with it, since a simulator may fail on a NaN action (DeepMind Control's PhysicsError).
        """
        seeds, envs = len(self.seeds), self.batch.envs
        noise = SeedNoise.for_evaluation(self.seeds, step)
        obs = self.batch.reset()
        returns = np.zeros(len(envs))
        running = np.repeat(live, self.episodes)
        non_finite = np.zeros(seeds, dtype=bool)
        while running.any():
            obs_t = torch.as_tensor(obs, device=self.device).view(seeds, self.episodes, -1)
            actions = agent.act(obs_t, explore=False, noise=noise).cpu().numpy()
            bad = ~np.isfinite(actions).reshape(seeds, -1).all(axis=1) & running.reshape(seeds, -1).any(axis=1)
            non_finite |= bad
            running &= ~np.repeat(bad, self.episodes)
            actions = actions.reshape(len(envs), -1)
            for i in np.flatnonzero(running):
                obs[i], reward, terminated, truncated, _ = envs[i].step(actions[i])
                returns[i] += reward
                running[i] = not (terminated or truncated)
        return returns.reshape(seeds, self.episodes), non_finite

    def rng_states(self) -> list[dict[str, Any]]:
        """Every evaluation env's generator state, seed-major: all an evaluation between two others needs."""
        return self.batch.rng_states()

    def set_rng_states(self, states: list[dict[str, Any]]) -> None:
        self.batch.set_rng_states(states)

    def close(self) -> None:
        self.batch.close()


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker builds its envs and its copy of the agent from."""

    algo: str
    config: OffPolicyConfig
    env_id: str
    dims: EnvDims
    seeds: list[int]
    episodes: int


def acting_state(agent: Agent, seeds: slice) -> dict[str, dict[str, np.ndarray]]:
    """Every network of `agent` (each parameter has the seed axis first) cut to `seeds`, as host arrays."""
    return {
        name: {key: value[seeds].detach().cpu().numpy() for key, value in module.state_dict().items()}
        for name, module in vars(agent).items()
        if isinstance(module, nn.Module)
    }


def load_acting_state(agent: Agent, state: dict[str, dict[str, np.ndarray]]) -> None:
    for name, module_state in state.items():
        getattr(agent, name).load_state_dict({key: torch.from_numpy(value) for key, value in module_state.items()})


def serve(connection: Connection, setup: WorkerSetup) -> None:
    """A worker's life: build its envs and agent copy, then answer requests until told to close or orphaned."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        dims = setup.dims
        agent = ALGORITHMS[setup.algo].make_agent(dims.obs_dim, dims.act_dim, setup.seeds, CPU, setup.config)
        evaluator = Evaluator(setup.env_id, setup.seeds, setup.episodes, CPU)
        connection.send(("ready", None))
        while True:
            request, payload = connection.recv()
            if request == "evaluate":
                state, live, step = payload
                load_acting_state(agent, state)
                connection.send(("done", evaluator.evaluate(agent, live, step)))
            elif request == "rng_states":
                connection.send(("done", evaluator.rng_states()))
            elif request == "set_rng_states":
                evaluator.set_rng_states(payload)
                connection.send(("done", None))
            else:
                evaluator.close()
                return
    except EOFError:
        return  # the trainer is gone
    except BaseException as error:  # noqa: BLE001 - reported to the trainer, which fails the run with it
        connection.send(("error", "".join(traceback.format_exception_only(error)).strip()))


def worker_context() -> multiprocessing.context.BaseContext:
    """Forkserver where the platform has it: one server imports torch and the envs once and forks each
    worker from its clean, single-threaded state (forking the trainer itself would inherit its OpenMP pool
    and, on a GPU, its CUDA context)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def start_worker_server() -> None:
    """Start the fork server now, so its imports overlap with the trainer's own start-up."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        worker_context()
        from multiprocessing import forkserver

        forkserver.ensure_running()


class EvaluationPool:
    """`workers` processes, each evaluating a contiguous group of the seeds; the same interface and returns
    as `Evaluator`."""

    def __init__(
        self, algo: str, config: OffPolicyConfig, env_id: str, dims: EnvDims, seeds: list[int], episodes: int, workers: int
    ):
        self.episodes, self.seeds = episodes, seeds
        bounds = np.linspace(0, len(seeds), min(workers, len(seeds)) + 1).round().astype(int)
        self.groups = [slice(int(start), int(end)) for start, end in zip(bounds[:-1], bounds[1:])]
        context = worker_context()
        self.connections: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for group in self.groups:
            ours, theirs = context.Pipe()
            setup = WorkerSetup(algo, config, env_id, dims, seeds[group], episodes)
            process = context.Process(target=serve, args=(theirs, setup), daemon=True, name=f"qsmbench-eval-{group.start}")
            process.start()
            theirs.close()
            self.connections.append(ours)
            self.processes.append(process)
        try:
            self._gather()
        except BaseException:
            self.close()
            raise

    def evaluate(self, agent: Agent, live: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        results = self._ask("evaluate", [(acting_state(agent, group), live[group], step) for group in self.groups])
        return np.concatenate([r for r, _ in results]), np.concatenate([bad for _, bad in results])

    def rng_states(self) -> list[dict[str, Any]]:
        return [state for states in self._ask("rng_states", [None] * len(self.groups)) for state in states]

    def set_rng_states(self, states: list[dict[str, Any]]) -> None:
        episodes = self.episodes
        self._ask("set_rng_states", [states[group.start * episodes : group.stop * episodes] for group in self.groups])

    def _ask(self, request: str, payloads: list[Any]) -> list[Any]:
        """Send each worker its payload, then gather their answers (a dead worker's pipe is reported there)."""
        for connection, payload in zip(self.connections, payloads):
            try:
                connection.send((request, payload))
            except (BrokenPipeError, OSError):
                pass
        return self._gather()

    def _gather(self) -> list[Any]:
        """Every worker's answer, in group order; EvaluationError naming the first that failed or died."""
        answers = []
        for connection, process, group in zip(self.connections, self.processes, self.groups):
            seeds = self.seeds[group]
            label = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}..{seeds[-1]}"
            worker = f"the evaluation worker of {label}"
            try:
                kind, payload = connection.recv()
            except (EOFError, OSError):
                process.join(1.0)
                raise EvaluationError(f"{worker} died (exit code {process.exitcode})") from None
            if kind == "error":
                raise EvaluationError(f"{worker} failed: {payload}")
            answers.append(payload)
        return answers

    def close(self) -> None:
        for connection in self.connections:
            try:
                connection.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
            connection.close()
        for process in self.processes:
            process.join(WORKER_CLOSE_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()


def make_evaluator(
    algo: str,
    config: OffPolicyConfig,
    env_id: str,
    dims: EnvDims,
    seeds: list[int],
    episodes: int,
    device: torch.device,
    workers: int,
) -> Evaluator | EvaluationPool:
    """The in-process `Evaluator` for `workers == 0`, else an `EvaluationPool` of that many workers."""
    if workers == 0:
        return Evaluator(env_id, seeds, episodes, device)
    return EvaluationPool(algo, config, env_id, dims, seeds, episodes, workers)
