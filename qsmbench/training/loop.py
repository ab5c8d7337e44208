"""The seed-batched off-policy training loop, online (from env steps) or offline (from a dataset).

Every run step, for all seeds at once:

    online only:  Collector.collect   act (uniform random during warm-up) -> EnvBatch.step -> replay.add
    once learning has started (online: after the warm-up; offline: from step 0), online every `update_every`-th
    step after the warm-up (default: every step; Protocol.is_update_step):
                  agent.update(transitions.sample(batch_size))    replay or dataset, one interface
    on the evaluation grid:  Evaluator.evaluate -> Recorder: one EvalRow per seed -> run files, tracker
    with --track, every track_every steps:  the diagnostics' means since the last time -> the tracker

Offline (`--dataset`) a step is one gradient step. The update and its diagnostics stay on the
training device; diagnostics are averaged there and read back only at evaluation time (and, with
`--track`, every `--track-every` steps, from a second sum), so the per-step path has no host sync besides
the action the CPU simulator needs.

A run holds its run directory's claim from start to end (qsmbench.runs.locking), its heartbeat carrying the
step, and a seed that goes non-finite is recorded as diverged and stopped while the others go on
(qsmbench.training.divergence).

Every `checkpoint_every` steps, and when a stop signal arrives (qsmbench.training.stopping), the loop writes the
state of every part between two steps (`checkpoint_state`: each part's `state_dict`, qsmbench.runs.checkpoint);
a run started again with the same settings finds it and goes on from there (`restore`), giving the rows it
would have given uninterrupted, bit for bit on the same machine.

The final writes (`_finish`) are part of the run, under the same error handling: a checkpoint of the last step
first, then the policies, then the `complete` statuses, then the checkpoint deleted. A run whose final writes
failed says `failed` (or `interrupted`), and the same command finishes it from that checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qsmbench.algorithms import Agent
from qsmbench.algorithms.state import training_state
from qsmbench.core.errors import CheckpointError
from qsmbench.runs.checkpoint import (
    check_belongs,
    load_agent_state,
    read_checkpoint,
    set_torch_rng_state,
    torch_rng_state,
    write_checkpoint,
)
from qsmbench.runs.format import Divergence, EvalRow
from qsmbench.runs.locking import RunClaim
from qsmbench.runs.saved_policies import save_policies
from qsmbench.training.build import RunParts, build
from qsmbench.training.divergence import CHECK_EVERY
from qsmbench.training.prepare import PreparedRun
from qsmbench.training.progress import Reporter
from qsmbench.training.stopping import Stopped, StopSignals
from qsmbench.training.tracking import make_tracker

TENSOR_KEYS = ("agent", "torch_rng", "diagnostic_sums", "replay")  # a checkpoint's tensors; the rest is its JSON document


@dataclass(frozen=True)
class Outcome:
    """What a finished run leaves for its caller (the CLI, the grid, the toy demo, a script)."""

    paths: list[Path]  # one run file per seed
    seeds: list[int]
    rows: list[list[EvalRow]]  # per seed, every evaluation written
    divergences: list[Divergence | None]  # per seed: where it went non-finite, None for a seed that finished
    agent: Agent  # the trained agent, all seeds (a diverged seed's slice is not a result)
    device: torch.device
    takeover_note: str | None  # set when this run took over a claim that another host had left
    resumed_from: int | None  # the checkpoint's step this run went on from; None for a run from scratch

    @property
    def run_dir(self) -> Path:
        return self.paths[0].parent


class Trainer:
    """One run's loop over its parts, under its run directory's claim, which `train` holds to the end.
    Made by `start` only."""

    def __init__(self, prepared: PreparedRun, parts: RunParts, claim: RunClaim):
        self.prepared, self.spec, self.parts, self.claim = prepared, prepared.spec, parts, claim
        self.agent, self.watch, self.recorder = parts.agent, parts.watch, parts.recorder
        self.step = 0  # run steps done
        self.resumed_from: int | None = None
        self.signals = StopSignals()

    def train(self) -> Outcome:
        """Run to the step budget; the files always hold every completed evaluation and a true status."""
        try:
            with self.signals:
                self._train_and_record()
        finally:
            self.claim.release()
        return self.outcome()

    def outcome(self) -> Outcome:
        files = self.recorder.files
        return Outcome(
            list(files.paths), list(files.seeds), files.rows, list(self.watch.found), self.agent, self.prepared.device,
            self.claim.takeover_note(), self.resumed_from,
        )

    def _train_and_record(self) -> None:
        """Train and make the final writes; whatever stops either (a full disk, a second Ctrl-C) leaves every file
        saying so: `interrupted`, or `failed` with the error."""
        try:
            self._loop()
            self._finish()
        except KeyboardInterrupt:
            self.recorder.write("interrupted", self.watch.found)
            raise
        except Exception as error:
            self.recorder.write("failed", self.watch.found, error="".join(traceback.format_exception(error)))
            raise
        finally:
            self._close()

    def _finish(self) -> None:
        """The final writes: a checkpoint of the last step (unless this run went on from one), the policies, the
        `complete` statuses; the checkpoint is deleted once every file says complete. Should any write fail, the
        same command goes on from that checkpoint and makes the final writes again, with the same rows."""
        if self.step == self.spec.protocol.steps and self.resumed_from != self.step:
            self._checkpoint()
        files = self.recorder.files
        save_policies(self.agent, files.header, self.prepared.paths, self.watch.live, self.step, self.prepared.dims)
        self.recorder.write("complete", self.watch.found)
        self.prepared.checkpoint.unlink(missing_ok=True)  # the files hold the result now

    def _loop(self) -> None:
        protocol, execution, parts = self.spec.protocol, self.spec.execution, self.parts
        if self.step == 0:
            self._evaluate(0)
        for step in range(self.step, protocol.steps):
            if parts.collector is not None:
                parts.collector.collect(step)
            if protocol.is_update_step(step, parts.learning_starts):
                self._update()
            self.recorder.reporter.advance(step + 1)
            self.claim.beat(step + 1)
            if protocol.is_eval_step(step + 1):
                self._evaluate(step + 1)
            elif (step + 1) % CHECK_EVERY == 0:
                self.watch.check_device(step + 1, parts.diagnostics.sums, self.agent)
            if parts.tracked_diagnostics is not None and (step + 1) % execution.track_every == 0:
                self.recorder.track_diagnostics(step + 1, parts.tracked_diagnostics.pop(), self.watch.live)
            self.step = step + 1
            if self.watch.all_dead or self.step == protocol.steps:
                break
            if self.signals.received is not None:
                self._checkpoint()
                raise Stopped(self.signals.received, self.step)
            if self.step % execution.checkpoint_every == 0:
                self._checkpoint()

    def _update(self) -> None:
        """One gradient step; its diagnostics are summed on the device, for the evaluation and the tracker."""
        diagnostics = self.agent.update(self.parts.transitions.sample(self.spec.config.batch_size))
        self.parts.diagnostics.add(diagnostics)
        if self.parts.tracked_diagnostics is not None:
            self.parts.tracked_diagnostics.add(diagnostics)

    def _evaluate(self, step: int) -> None:
        """Evaluate the live seeds and record one row per live seed; divergence is checked first, so no row
        ever holds a non-finite value."""
        interval = self.recorder.end_interval(step)
        self.watch.check_device(step, self.parts.diagnostics.sums, self.agent)
        returns, non_finite_actions = self.parts.evaluator.evaluate(self.agent, self.watch.live, step)
        self.watch.mark(non_finite_actions, step, "evaluation action")
        self.watch.check(step, "evaluation return", returns)
        diagnostics = self.parts.diagnostics.pop()
        train_returns = self.parts.collector.pop_train_returns() if self.parts.collector else None
        self.recorder.record_evaluation(
            step, interval, returns, self.watch.live, diagnostics, train_returns, self.watch.found
        )

    def _checkpoint(self) -> None:
        with self.recorder.paused():
            write_checkpoint(self.prepared.checkpoint, *self.checkpoint_state())

    def _close(self) -> None:
        if self.parts.collector is not None:
            self.parts.collector.close()
        self.parts.evaluator.close()
        self.recorder.close()

    def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(header, document, tensors) of a checkpoint at `self.step`: every part's state_dict, under the names
        qsmbench.runs.checkpoint's format gives them."""
        parts = self.parts
        state = {
            **self.recorder.state_dict(),
            **self.watch.state_dict(),
            **parts.diagnostics.state_dict(),
            "collector": parts.collector.state_dict() if parts.collector else None,
            "evaluation_rngs": parts.evaluator.state_dict(),
            "agent": training_state(self.agent),
            "torch_rng": torch_rng_state(self.prepared.device),
            "replay": parts.replay.state_dict() if parts.replay else None,
        }
        header = {"settings": self.prepared.settings, "step": self.step, "written_at": time.time()}
        document = {key: value for key, value in state.items() if key not in TENSOR_KEYS}
        return header, document, {key: state[key] for key in TENSOR_KEYS}

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Put the freshly built run into the state of `checkpoint` (read by `read_checkpoint`)."""
        check_belongs(self.prepared.checkpoint, checkpoint["header"], self.prepared.settings)
        state, parts, step = {**checkpoint["document"], **checkpoint["tensors"]}, self.parts, int(checkpoint["header"]["step"])
        try:
            load_agent_state(self.agent, state["agent"])
            if parts.replay is not None and parts.collector is not None:
                parts.replay.load_state_dict(state["replay"])
                parts.collector.load_state_dict(state["collector"])
            parts.evaluator.load_state_dict(state["evaluation_rngs"])
            parts.diagnostics.load_state_dict(state)
            self.watch.load_state_dict(state)
            self.recorder.load_state_dict(state, step)
            set_torch_rng_state(state["torch_rng"], self.prepared.device)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise CheckpointError(
                f"{self.prepared.checkpoint} is incomplete or damaged ({error!r}); pass --overwrite to start over"
            ) from None
        self.step = self.resumed_from = step


def start(prepared: PreparedRun, reporter: Reporter) -> Trainer:
    """Claim the run directory, build the run, put it into its checkpoint's state when it resumes, and start
    its tracker: the one place a Trainer is made. Every failure on the way releases what was taken."""
    try:
        claim = prepared.claim()
    except BaseException:
        reporter.close()
        raise
    trainer: Trainer | None = None
    try:
        trainer = Trainer(prepared, build(prepared, reporter), claim)
        if prepared.resuming:
            trainer.restore(read_checkpoint(prepared.checkpoint))
        execution, recorder = prepared.spec.execution, trainer.recorder
        recorder.tracker = make_tracker(
            execution.track, prepared.run_dir, Path(execution.out), prepared.spec.protocol.seed_values, trainer.step
        )
        recorder.tracker.log_config(dataclasses.asdict(recorder.files.header))
    except BaseException:
        if trainer is not None:
            trainer.recorder.tracker.close()
        claim.release()
        reporter.close()
        raise
    return trainer


def train(prepared: PreparedRun, reporter: Reporter, on_takeover: Callable[[str], None] | None = None) -> Outcome:
    """Train a prepared run to the end and say how it went. `on_takeover` hears, before the first step, that
    this run took over a claim another host had left."""
    trainer = start(prepared, reporter)
    if on_takeover is not None and (note := trainer.claim.takeover_note()):
        on_takeover(note)
    return trainer.train()
