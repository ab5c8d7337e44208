"""The seed-batched off-policy training loop, online (from env steps) or offline (from a dataset).

Every run step, for all seeds at once:

    online only:  Collector.collect   act (uniform random during warm-up) -> EnvBatch.step -> replay.add
    once learning has started (online: after the warm-up; offline: from step 0):
                  agent.update(transitions.sample(batch_size))    replay or dataset, one interface
    on the evaluation grid:  Evaluator.evaluate -> one EvalRow per seed -> RunFiles.write (and the tracker)
    with --track, every track_every steps:  the diagnostics' means since the last time -> the tracker

Offline (`--dataset`) a step is one gradient step. The update and its diagnostics stay on the
training device; diagnostics are averaged there and read back only at evaluation time (and, with
`--track`, every `--track-every` steps, from a second sum), so the per-step path has no host sync besides
the action the CPU simulator needs.

A run holds its run directory's claim from start to end (qsmbench.locking), its heartbeat carrying the
step, and a seed that goes
non-finite is recorded as diverged and stopped while the others go on (qsmbench.divergence).

Every `checkpoint_every` steps, and when a stop signal arrives (qsmbench.stopping), the trainer writes
its whole state between two steps (`checkpoint_state`, qsmbench.checkpoint); a run started again with
the same settings finds it and goes on from there (`restore`), giving the rows it would have given
uninterrupted, bit for bit on the same machine.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from qsmbench.algorithms import Agent
from qsmbench.checkpoint import (
    CheckpointInfo,
    agent_state,
    check_belongs,
    checkpoint_info,
    checkpoint_path,
    load_agent_state,
    read_checkpoint,
    run_settings,
    set_torch_rng_state,
    torch_rng_state,
    write_checkpoint,
)
from qsmbench.errors import CheckpointError, ConfigError
from qsmbench.datasets import OfflineDataset, load_offline_dataset
from qsmbench.divergence import CHECK_EVERY, DivergenceWatch
from qsmbench.envs import EnvDims, env_dims, rng_state, set_rng_state
from qsmbench.env_workers import make_env_batch, start_worker_server
from qsmbench.evaluation import Evaluator
from qsmbench.locking import RunClaim, claim_run_dir
from qsmbench.nets import compile_networks
from qsmbench.policies import remove_policies, save_policies
from qsmbench.progress import Reporter
from qsmbench.provenance import provenance
from qsmbench.replay import SeedBatchedReplay, Transitions
from qsmbench.resources import check_checkpoint_room, check_fits
from qsmbench.spec import RunSpec
from qsmbench.stopping import StopSignals, Stopped
from qsmbench.storage import (
    Divergence,
    EvalRow,
    RunFiles,
    RunHeader,
    Status,
    check_can_write,
    check_out_dir,
    remove_stale_temporaries,
    run_dir,
    run_path,
)
from qsmbench.tracking import NoTracker, Tracker, check_installed, make_tracker, row_scalars, seed_scalars


RESUME_KEYS = ("hostname", "device", "git_commit", "start_time")  # what each resume records in the files


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


@dataclass(frozen=True)
class PreparedRun:
    """A run checked against the machine and the disk: everything validated before a file is touched."""

    spec: RunSpec
    device: torch.device
    env_id: str  # the environment evaluated in (the dataset's, offline)
    dims: EnvDims
    paths: list[Path]  # one run file per seed
    dataset: OfflineDataset | None = None
    overwrite: bool = False  # replace complete runs, and start over instead of resuming
    resume: CheckpointInfo | None = None  # the checkpoint this run goes on from, as `prepare` found it

    @property
    def run_dir(self) -> Path:
        return self.paths[0].parent

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(self.run_dir, self.spec.run.seed_start, self.spec.run.seeds)

    @property
    def resuming(self) -> bool:
        """Whether this run goes on from its checkpoint (there is one, and starting over was not asked for)."""
        return not self.overwrite and self.checkpoint.exists()

    @property
    def settings(self) -> dict[str, object]:
        return run_settings(self.spec, self.env_id, self.device)

    def claim(self) -> RunClaim:
        """Claim the run directory, then check the files again under the claim and clear stale temporaries
        (and, with `overwrite`, the checkpoint).

        The check in `prepare` fails fast; this one is the one that counts, since another run may have
        finished these seeds in between.
        """
        claim = claim_run_dir(self.run_dir, self.spec.run.steps)
        try:
            check_can_write(self.paths, self.overwrite, self.resuming)
        except BaseException:
            claim.release()
            raise
        remove_stale_temporaries(self.run_dir)
        remove_policies(self.paths)  # policies are written when a run completes: none may outlive the files they match
        if self.overwrite:
            self.checkpoint.unlink(missing_ok=True)
        return claim


def check_compile_device(compile: bool, device: torch.device) -> None:
    """`--compile` is for CUDA: on the CPU it was measured slower than eager, and inductor's C++ build is long."""
    if compile and device.type != "cuda":
        raise ConfigError(
            f"--compile is for CUDA: on the CPU compiled updates ran at 0.6-0.75x of eager (docs/benchmarks.md); "
            f"this run is on {device.type}"
        )


def prepare(spec: RunSpec, overwrite: bool = False) -> PreparedRun:
    """Validate --out, device, environment or dataset, memory and output files; ConfigError on bad input."""
    run = spec.run
    directory = run_dir(run.out, run.task, spec.algo, run.variant)
    check_installed(run.track)
    check_out_dir(directory, run.seeds, run.evaluations)
    device = resolve_device(run.device)
    if run.tf32 and device.type != "cuda":
        raise ConfigError(f"--tf32 changes CUDA matmuls only; this run is on {device.type}")
    check_compile_device(run.compile, device)
    if run.env_workers or run.eval_workers:
        start_worker_server()  # its imports overlap with the checks below and the trainer's own start
    dataset = load_offline_dataset(run.dataset, device, run.seeds) if run.dataset else None
    env_id = dataset.env_id if dataset else str(run.env)
    dims = env_dims(env_id)
    check_fits(spec, dims, env_id, device)
    check_checkpoint_room(spec, dims, env_id, directory)
    if dataset and (dataset.obs_dim, dataset.act_dim) != (dims.obs_dim, dims.act_dim):
        raise ConfigError(
            f"dataset {run.dataset} has obs/action dims {dataset.obs_dim}/{dataset.act_dim}, "
            f"but its environment {env_id} has {dims.obs_dim}/{dims.act_dim}"
        )
    paths = [run_path(run.out, run.task, spec.algo, seed, run.variant) for seed in run.seed_values]
    prepared = PreparedRun(spec, device, env_id, dims, paths, dataset, overwrite)
    resume = checkpoint_info(prepared.checkpoint, prepared.settings) if prepared.resuming else None
    check_can_write(paths, overwrite, resuming=resume is not None)
    return dataclasses.replace(prepared, resume=resume)


class Collector:
    """Online experience: every run step, each seed acts once in its own training env, into replay."""

    def __init__(
        self,
        env_id: str,
        seeds: list[int],
        agent: Agent,
        replay: SeedBatchedReplay,
        warmup_steps: int,
        watch: DivergenceWatch,
        workers: int = 0,
    ):
        self.agent, self.replay, self.warmup_steps, self.watch = agent, replay, warmup_steps, watch
        self.warmup_rng = np.random.default_rng(np.random.SeedSequence([*seeds, 1]))
        self.envs = make_env_batch(env_id, seeds, workers)
        self.finished_returns: list[list[float]] = [[] for _ in seeds]

    def collect(self, step: int) -> None:
        """Act (uniformly at random during the warm-up), step every live seed's env, store every transition.

        A seed whose action, reward or observation is non-finite dies here; its env is not stepped
        again, and its replay slice, which nothing reads any more, gets placeholder transitions.
        """
        obs = self.envs.obs
        if step < self.warmup_steps:
            action = self.warmup_rng.uniform(-1.0, 1.0, (len(self.envs), self.replay.act_dim)).astype(np.float32)
        else:
            obs_t = torch.as_tensor(obs, device=self.replay.device).unsqueeze(1)
            action = self.agent.act(obs_t, explore=True).squeeze(1).cpu().numpy()
        self.watch.check(step + 1, "action", action)
        result = self.envs.step(action, self.watch.live)
        self.watch.check(step + 1, "reward", result.reward)
        self.watch.check(step + 1, "observation", result.next_obs)
        ended = result.terminated | result.truncated
        self.replay.add(obs, action, result.reward, result.next_obs, result.terminated, ended)
        for seed_index in np.flatnonzero(~np.isnan(result.finished_returns)):
            self.finished_returns[seed_index].append(float(result.finished_returns[seed_index]))

    def pop_train_returns(self) -> list[list[float]]:
        """Returns of the training episodes finished since the last call, per seed."""
        returns, self.finished_returns = self.finished_returns, [[] for _ in self.finished_returns]
        return returns

    def state(self) -> dict[str, Any]:
        """Plain data: the warm-up generator, the envs' episodes so far, the returns not yet logged."""
        return {
            "warmup_rng": rng_state(self.warmup_rng),
            "envs": self.envs.state(),
            "finished_returns": self.finished_returns,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        set_rng_state(self.warmup_rng, state["warmup_rng"])
        self.envs.load_state(state["envs"])
        self.finished_returns = [[float(value) for value in returns] for returns in state["finished_returns"]]

    def close(self) -> None:
        self.envs.close()


class DiagnosticsMean:
    """Running per-seed means of the update diagnostics, accumulated on the training device."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, diagnostics: dict[str, Tensor]) -> None:
        for name, value in diagnostics.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + 1

    def pop(self) -> dict[str, np.ndarray]:
        means = {name: (total / self.counts[name]).cpu().numpy() for name, total in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means

    def load_state(self, sums: dict[str, Tensor], counts: dict[str, int], device: torch.device) -> None:
        self.sums = {name: total.to(device) for name, total in sums.items()}
        self.counts = dict(counts)


class Trainer:
    """One seed-batched run: built under its run directory's claim, which `train` holds to the end.

    Built from scratch, or, where the run's checkpoint exists (and `overwrite` was not asked for), built
    and then put into the checkpoint's state: `resumed_from` says which step it goes on from.
    """

    def __init__(self, prepared: PreparedRun, reporter: Reporter):
        self.reporter = reporter
        try:
            self.claim = prepared.claim()
        except BaseException:
            reporter.close()
            raise
        self.tracker: Tracker = NoTracker()  # replaced by --track's once the run is built and restored
        try:
            self._build(prepared)
            if prepared.resuming:
                self.restore(read_checkpoint(prepared.checkpoint))
            run = prepared.spec.run
            self.tracker = make_tracker(run.track, prepared.run_dir, Path(run.out), run.seed_values, self.step)
            self.tracker.log_config(dataclasses.asdict(self.files.header))
        except BaseException:
            self.tracker.close()
            self.claim.release()
            reporter.close()
            raise

    def _build(self, prepared: PreparedRun) -> None:
        spec, device, dims = prepared.spec, prepared.device, prepared.dims
        self.spec, self.device, self.prepared = spec, device, prepared
        run, config, seeds = spec.run, spec.config, spec.run.seed_values
        if device.type == "cuda":  # process-wide: set for every run, so one run's choice never leaks into the next
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = run.tf32
        torch.manual_seed(int(np.random.SeedSequence(seeds).generate_state(1)[0]))
        self.agent: Agent = spec.algorithm.make_agent(dims.obs_dim, dims.act_dim, seeds, device, config)
        if run.compile:
            compile_networks(self.agent)
        self.dataset = prepared.dataset
        self.watch = DivergenceWatch(len(seeds))
        self.collector: Collector | None = None
        self.replay: SeedBatchedReplay | None = None
        self.transitions: Transitions
        if self.dataset is not None:
            self.transitions, self.learning_starts = self.dataset, 0
        else:
            capacity = min(config.replay_capacity, run.steps)
            self.replay = SeedBatchedReplay(len(seeds), capacity, dims.obs_dim, dims.act_dim, device)
            self.collector = Collector(
                prepared.env_id, seeds, self.agent, self.replay, config.warmup_steps, self.watch, run.env_workers
            )
            self.transitions, self.learning_starts = self.replay, config.warmup_steps
        self.evaluator = Evaluator(prepared.env_id, seeds, run.eval_episodes, device, run.eval_workers)
        header = RunHeader(
            algo=spec.algo,
            task=run.task,
            env_id=prepared.env_id,
            dataset=run.dataset,
            ref_scores=self.dataset.ref_scores if self.dataset else None,
            run_config=dataclasses.asdict(run),
            algo_config=dataclasses.asdict(config),
            variant=run.variant,
            provenance=provenance(device),
        )
        self.files = RunFiles(prepared.paths, seeds, header)
        self.diagnostics = DiagnosticsMean()
        self.tracked_diagnostics = DiagnosticsMean() if run.track else None  # since the last track_every step
        self.step = 0  # run steps done
        self.resumed_from: int | None = None
        self.last_eval_step = 0
        self.started = self.interval_start = time.perf_counter()

    def train(self) -> None:
        """Run to the step budget; the files always hold every completed evaluation and a true status."""
        try:
            with StopSignals() as self.signals:
                self._train_and_record()
        finally:
            self.claim.release()

    def _train_and_record(self) -> None:
        try:
            self._loop()
        except KeyboardInterrupt:
            self._write("interrupted")
            raise
        except Exception as error:
            self._write("failed", error="".join(traceback.format_exception(error)))
            raise
        finally:
            if self.collector is not None:
                self.collector.close()
            self.evaluator.close()
            self.reporter.close()
            self.tracker.close()
        save_policies(self.agent, self.files.header, self.prepared.paths, self.watch.live, self.step, self.prepared.dims)
        self._write("complete")
        self.prepared.checkpoint.unlink(missing_ok=True)  # the files hold the result now

    def _loop(self) -> None:
        run, batch_size = self.spec.run, self.spec.config.batch_size
        if self.step == 0:
            self._evaluate(0)
        for step in range(self.step, run.steps):
            if self.collector is not None:
                self.collector.collect(step)
            if step >= self.learning_starts:
                self._update(batch_size)
            self.reporter.advance(step + 1)
            self.claim.beat(step + 1)
            if run.is_eval_step(step + 1):
                self._evaluate(step + 1)
            elif (step + 1) % CHECK_EVERY == 0:
                self.watch.check_device(step + 1, self.diagnostics.sums, self.agent)
            if self.tracked_diagnostics is not None and (step + 1) % run.track_every == 0:
                self._track_diagnostics(step + 1, self.tracked_diagnostics)
            self.step = step + 1
            if self.watch.all_dead or self.step == run.steps:
                break
            if self.signals.received is not None:
                self._checkpoint()
                raise Stopped(self.signals.received, self.step)
            if self.step % run.checkpoint_every == 0:
                self._checkpoint()

    def _update(self, batch_size: int) -> None:
        """One gradient step; its diagnostics are summed on the device, for the evaluation and the tracker."""
        diagnostics = self.agent.update(self.transitions.sample(batch_size))
        self.diagnostics.add(diagnostics)
        if self.tracked_diagnostics is not None:
            self.tracked_diagnostics.add(diagnostics)

    def _track_diagnostics(self, step: int, tracked: DiagnosticsMean) -> None:
        """The live seeds' diagnostic means since the last call, to the tracker: read to the host here, as at evaluation."""
        means = tracked.pop()
        scalars: dict[str, float] = {}
        for k, seed in enumerate(self.spec.run.seed_values):
            if self.watch.live[k]:
                scalars |= seed_scalars(seed, {name: values[k] for name, values in means.items()}, "diagnostics/")
        if scalars:
            self.tracker.log_scalars(step, scalars)

    def _checkpoint(self) -> None:
        """Write the checkpoint; its time counts neither as training (sps) nor as evaluation."""
        started = time.perf_counter()
        write_checkpoint(self.prepared.checkpoint, *self.checkpoint_state())
        self.interval_start += time.perf_counter() - started

    def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(header, document, tensors) of a checkpoint at `self.step`: see qsmbench.checkpoint."""
        header = {"settings": self.prepared.settings, "step": self.step, "written_at": time.time()}
        document = {
            "provenance": self.files.header.provenance,
            "rows": [[dataclasses.asdict(row) for row in rows] for rows in self.files.rows],
            "live": self.watch.live.tolist(),
            "divergences": [dataclasses.asdict(found) if found else None for found in self.watch.found],
            "diagnostic_counts": self.diagnostics.counts,
            "last_eval_step": self.last_eval_step,
            "elapsed_s": time.perf_counter() - self.started,
            "collector": self.collector.state() if self.collector else None,
            "evaluation_rngs": self.evaluator.rng_states(),
        }
        tensors = {
            "agent": agent_state(self.agent),
            "torch_rng": torch_rng_state(self.device),
            "diagnostic_sums": self.diagnostics.sums,
            "replay": self.replay.state() if self.replay else None,
        }
        return header, document, tensors

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Put the freshly built run into the state of `checkpoint` (read by `read_checkpoint`)."""
        check_belongs(self.prepared.checkpoint, checkpoint["header"], self.prepared.settings)
        document, tensors = checkpoint["document"], checkpoint["tensors"]
        try:
            load_agent_state(self.agent, tensors["agent"])
            if self.replay is not None and self.collector is not None:
                self.replay.load_state(tensors["replay"])
                self.collector.load_state(document["collector"])
            self.evaluator.set_rng_states(document["evaluation_rngs"])
            self.diagnostics.load_state(tensors["diagnostic_sums"], document["diagnostic_counts"], self.device)
            self.watch.live[:] = document["live"]
            self.watch.found = [Divergence(**found) if found else None for found in document["divergences"]]
            self.files.rows = [[EvalRow(**row) for row in rows] for rows in document["rows"]]
            set_torch_rng_state(tensors["torch_rng"], self.device)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise CheckpointError(
                f"{self.prepared.checkpoint} is incomplete or damaged ({error!r}); pass --overwrite to start over"
            ) from None
        self.step = self.resumed_from = int(checkpoint["header"]["step"])
        self.last_eval_step = int(document["last_eval_step"])
        self.interval_start = time.perf_counter()  # sps leaves out the restore, as it does evaluation
        self.started = self.interval_start - float(document["elapsed_s"])
        self.files.header = self._resumed_header(document["provenance"])
        self.reporter.advance(self.step)

    def _resumed_header(self, started: dict[str, Any]) -> RunHeader:
        """This run's header with the provenance of the run's start and a list of its resumes (step, host,
        device, commit, time): the files tell the run's whole story."""
        now = self.files.header.provenance
        resume = {"step": self.step, **{key: now.get(key) for key in RESUME_KEYS}}
        provenance = {**started, "resumes": [*started.get("resumes", []), resume]}
        return dataclasses.replace(self.files.header, provenance=provenance)

    def _write(self, status: Status, error: str | None = None) -> None:
        """Rewrite the files with `status`; the seeds that diverged say so instead."""
        self.files.write(status, error, self.watch.found)

    def _evaluate(self, step: int) -> None:
        """Evaluate the live seeds, append one row per live seed, rewrite the files (timing excludes evaluation).

        Divergence is checked first, so no row ever holds a non-finite value.
        """
        train_seconds = time.perf_counter() - self.interval_start
        interval_steps, self.last_eval_step = step - self.last_eval_step, step
        eval_start = time.perf_counter()
        self.watch.check_device(step, self.diagnostics.sums, self.agent)
        returns, non_finite_actions = self.evaluator.evaluate(self.agent, self.watch.live, step)
        self.watch.mark(non_finite_actions, step, "evaluation action")
        self.watch.check(step, "evaluation return", returns)
        diagnostics = self.diagnostics.pop()
        normalized = self.dataset.normalized_score(returns.mean(axis=1)) if self.dataset else None
        seeds = self.spec.run.seed_values
        train_returns = self.collector.pop_train_returns() if self.collector else [[] for _ in seeds]
        rows = [
            EvalRow(
                task=self.spec.run.task,
                algo=self.spec.algo,
                seed=seed,
                step=step,
                eval_return=float(returns[k].mean()),
                eval_return_std=float(returns[k].std()),
                train_return=float(np.mean(train_returns[k])) if train_returns[k] else float("nan"),
                train_episodes=len(train_returns[k]),
                wall_time_s=eval_start - self.started,
                sps=interval_steps / train_seconds if interval_steps else float("nan"),
                eval_normalized_score=float(normalized[k]) if normalized is not None else None,
                diagnostics={name: float(values[k]) for name, values in diagnostics.items()},
            )
            for k, seed in enumerate(seeds)
            if self.watch.live[k]
        ]
        self.files.append(rows)
        self._write("running")
        self.tracker.log_scalars(step, {tag: value for row in rows for tag, value in row_scalars(row).items()})
        self.reporter.evaluated(step, np.where(self.watch.live, returns.mean(axis=1), np.nan))
        self.interval_start = time.perf_counter()


def train(spec: RunSpec, reporter: Reporter, overwrite: bool = False) -> Trainer:
    """Prepare and train `spec` in one call; returns the finished trainer (its agent and files)."""
    trainer = Trainer(prepare(spec, overwrite), reporter)
    trainer.train()
    return trainer
