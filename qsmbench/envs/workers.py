"""Environments stepped in worker processes: `EnvPool`, an `EnvBatch` whose members live in N workers.

The training envs (`--env-workers`) and the evaluation envs (`--eval-workers`) of an expensive
simulator (DeepMind Control's humanoid steps 10 envs in 3.3 ms) then step on N cores while the policy
stays batched on the training device. Each worker runs an ordinary `EnvBatch` for a contiguous group
of the members, seeded as the in-process batch would seed them, and does exactly what that batch
would do with the same actions: a run gives the same transitions and returns, bit for bit, with any
number of workers, and may resume with another number.

Workers fork from a server started once (`start_worker_server`), which imports Gymnasium and the
simulators a single time; forking the trainer itself would inherit its OpenMP pool and, on a GPU, its
CUDA context. They ignore the stop signals, which the trainer handles, and end when it closes them or
when it is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import multiprocessing
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from qsmbench.core.errors import EnvStateError
from qsmbench.envs.environments import EnvBatch, StepResult

CLOSE_TIMEOUT_S = 10.0


class EnvWorkerError(RuntimeError):
    """An env worker failed or died; the run fails with its reason."""


def serve(connection: Connection, env_id: str, seeds: list[int], action_repeat: int = 1) -> None:
    """A worker's life: build its `EnvBatch`, then run the methods it is asked for until closed or orphaned."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    try:
        batch = EnvBatch(env_id, seeds, action_repeat=action_repeat)
        connection.send(("done", (None, batch.obs)))
        while True:
            method, args = connection.recv()
            if method == "close":
                batch.close()
                return
            result = getattr(batch, method)(*args)
            connection.send(("done", (result, batch.obs)))
    except EOFError:
        return  # the trainer is gone
    except EnvStateError as error:
        connection.send(("raise", error))
    except BaseException as error:
        connection.send(("error", "".join(traceback.format_exception_only(error)).strip()))


def worker_context() -> multiprocessing.context.BaseContext:
    """Forkserver where the platform has it (preloading the env code), spawn elsewhere."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def start_worker_server() -> None:
    """Start the fork server now, so that its imports overlap with the trainer's own start-up."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver

        worker_context()
        forkserver.ensure_running()


class EnvPool:
    """`EnvBatch`'s interface over `workers` processes, each holding a contiguous group of the members."""

    def __init__(self, env_id: str, seeds: list[int], workers: int, action_repeat: int = 1):
        bounds = np.linspace(0, len(seeds), min(workers, len(seeds)) + 1).round().astype(int)
        self.groups = [slice(int(start), int(end)) for start, end in itertools.pairwise(bounds)]
        self.size = len(seeds)
        context = worker_context()
        self.connections: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for group in self.groups:
            ours, theirs = context.Pipe()
            process = context.Process(target=serve, args=(theirs, env_id, seeds[group], action_repeat), daemon=True)
            process.start()
            theirs.close()
            self.connections.append(ours)
            self.processes.append(process)
        self.obs = np.zeros(0, dtype=np.float32)
        try:
            self._gather()
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return self.size

    def reset(self) -> np.ndarray:
        self._call("reset", lambda group: ())
        return self.obs

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        results = self._call("step", lambda group: (actions[group], None if active is None else active[group]))
        return StepResult(**{
            field.name: np.concatenate([getattr(result, field.name) for result in results])
            for field in dataclasses.fields(StepResult)
        })

    def step_without_reset(self, actions: np.ndarray, running: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        results = self._call("step_without_reset", lambda group: (actions[group], running[group]))
        return np.concatenate([reward for reward, _ in results]), np.concatenate([ended for _, ended in results])

    def rng_states(self) -> list[dict[str, Any]]:
        return [state for states in self._call("rng_states", lambda group: ()) for state in states]

    def set_rng_states(self, states: list[dict[str, Any]]) -> None:
        self._call("set_rng_states", lambda group: (states[group],))

    def state(self) -> dict[str, Any]:
        """The in-process batch's `state()`: every per-member list joined in member order."""
        states = self._call("state", lambda group: ())
        return {key: [item for state in states for item in state[key]] for key in states[0]}

    def load_state(self, state: dict[str, Any]) -> None:
        self._call("load_state", lambda group: ({key: values[group] for key, values in state.items()},))

    def _call(self, method: str, arguments: Callable[[slice], tuple[Any, ...]]) -> list[Any]:
        """Run `method` on every worker's batch with its group's `arguments`; their results in member order."""
        for connection, group in zip(self.connections, self.groups):
            with contextlib.suppress(OSError):  # a dead worker: reported by _gather
                connection.send((method, arguments(group)))
        return self._gather()

    def _gather(self) -> list[Any]:
        """Every worker's result, in group order, and the members' observations into `self.obs`."""
        results, observations = [], []
        for connection, process, group in zip(self.connections, self.processes, self.groups):
            worker = f"the env worker of members {group.start}..{group.stop - 1}"
            try:
                kind, payload = connection.recv()
            except (EOFError, OSError):
                process.join(1.0)
                raise EnvWorkerError(f"{worker} died (exit code {process.exitcode})") from None
            if kind == "raise":
                raise payload
            if kind == "error":
                raise EnvWorkerError(f"{worker} failed: {payload}")
            result, obs = payload
            results.append(result)
            observations.append(obs)
        self.obs = np.concatenate(observations)
        return results

    def close(self) -> None:
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.send(("close", ()))
            connection.close()
        for process in self.processes:
            process.join(CLOSE_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()


def make_env_batch(env_id: str, seeds: list[int], workers: int, action_repeat: int = 1) -> EnvBatch | EnvPool:
    """The in-process `EnvBatch` for `workers == 0`, else an `EnvPool` of that many workers; each step of either
    is `action_repeat` simulator steps."""
    if workers:
        return EnvPool(env_id, seeds, workers, action_repeat)
    return EnvBatch(env_id, seeds, action_repeat=action_repeat)
