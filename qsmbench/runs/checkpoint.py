"""Checkpoints: one file per run, `<run dir>/checkpoint_seeds_<first>-<last>.pt`, from which it goes on
exactly where it stopped.

What a checkpoint holds is gathered by the trainer (`Trainer.checkpoint_state`); this module defines
the file: how it is written (atomically: a temporary file, fsync, rename, fsync of the directory, so a
kill at any moment leaves the previous checkpoint whole), how it is read (`torch.load(weights_only=True)`:
tensors and containers of numbers and strings, nothing unpickled; its header checked, so a damaged or
hand-edited file is one CheckpointError naming it), and when it belongs to a run (the same format version,
algorithm, task, run and algorithm settings, and device type).

A file holds `{"format", "header", "document", "tensors"}`: `header` and `document` are JSON text (the
header small, for the plan and for refusals; the document every plain value: random generator states,
the environments' episodes, the rows so far), `tensors` the networks, optimisers, replay and the torch
random generators' states.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from qsmbench.algorithms.state import AgentStateError, check_parts, load_state
from qsmbench.core.config import NUMERICS
from qsmbench.core.errors import CheckpointError
from qsmbench.core.messages import format_duration, quoted
from qsmbench.runs.format import LEGACY_RUN_SETTINGS, is_count, is_number, with_added_hyperparameters
from qsmbench.runs.spec import RunSpec
from qsmbench.runs.write import replace_atomically

FORMAT_VERSION = 1


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint's header says: how far its run got, and when."""

    path: Path
    step: int
    steps: int
    written_at: float  # seconds since the epoch

    def describe(self) -> str:
        age = max(0.0, time.time() - self.written_at)
        return f"step {self.step:,} of {self.steps:,}, written {format_duration(age)} ago ({self.path})"


def resume_settings(spec: RunSpec, env_id: str, device: torch.device) -> dict[str, Any]:
    """What must be equal for a checkpoint to continue a run, as JSON reads it back: the whole protocol, the
    execution settings that change the numbers (NUMERICS), the hyperparameters, the device type and the variant
    label (a checkpoint of another label is never this run's, even in a directory an older qsmbench shared
    between labels). The other execution settings may change on resume. An unlabelled run leaves the label out,
    so checkpoints written before it was compared still resume: `<algo>/` only ever held unlabelled runs."""
    numerics = {key: getattr(spec.execution, key) for key in NUMERICS}
    run = {**dataclasses.asdict(spec.protocol), **numerics}
    label = {"variant": spec.execution.variant} if spec.execution.variant else {}
    settings = {
        "algo": spec.algo, "env_id": env_id, **label, **run, **dataclasses.asdict(spec.config), "device type": device.type,
    }
    return json.loads(json.dumps(settings))


def check_belongs(path: Path, header: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """CheckpointError naming what differs when the checkpoint at `path` was written by another run."""
    stored = header.get("settings", {})  # a checkpoint older than a setting had its old value (LEGACY_RUN_SETTINGS)
    saved = {**LEGACY_RUN_SETTINGS, **with_added_hyperparameters(str(stored.get("algo")), stored)}
    differences = [
        f"{key} {saved.get(key, 'unset')!s} (this run: {settings.get(key, 'unset')!s})"
        for key in sorted(set(saved) | set(settings))
        if saved.get(key) != settings.get(key)
    ]
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise CheckpointError(
            f"{path} was written with other settings: {shown}; rerun with its settings, or pass --overwrite to start over"
        )


def write_checkpoint(path: Path, header: Mapping[str, Any], document: Mapping[str, Any], tensors: Any) -> None:
    """Atomically replace `path`: the previous checkpoint stays whole until the new one is on disk."""
    checkpoint = {
        "format": FORMAT_VERSION,
        "header": json.dumps(header),
        "document": json.dumps(document),
        "tensors": tensors,
    }
    replace_atomically(path, lambda handle: torch.save(checkpoint, handle))


def read_checkpoint(path: Path, header_only: bool = False) -> dict[str, Any]:
    """The checkpoint at `path` with `header` and `document` parsed; CheckpointError (one line) when it is
    damaged, of another format, or holds anything but tensors and plain containers.

    `header_only` maps the file instead of reading it: a grid's plan asks every checkpoint for its step. The
    header is checked (`header_problem`), so its readers may index it: a hand-edited or foreign header is this
    one line, not a KeyError.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=header_only)
        version = checkpoint["format"] if isinstance(checkpoint, dict) else None
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{path} is checkpoint format {version!r}; this qsmbench reads format {FORMAT_VERSION}: "
                "resume with the qsmbench that wrote it, or pass --overwrite to start over"
            )
        checkpoint["header"] = json.loads(checkpoint["header"])
        if not header_only:
            checkpoint["document"] = json.loads(checkpoint["document"])
    except CheckpointError:
        raise
    except Exception as error:
        raise unreadable(path, (str(error).splitlines() or [type(error).__name__])[0][:200]) from None
    problem = header_problem(checkpoint["header"])
    state = () if header_only else (checkpoint["document"], checkpoint["tensors"])
    if problem is None and not all(isinstance(part, dict) for part in state):
        problem = "its document or its tensors are not a mapping of names"
    if problem is not None:
        raise unreadable(path, problem)
    return checkpoint


def unreadable(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a readable checkpoint ({reason}); pass --overwrite to start over")


def header_problem(header: Any) -> str | None:
    """What is wrong with a checkpoint's header (as `Trainer.checkpoint_state` writes it: the run's settings, with
    its steps, the step reached, the time written), or None."""
    if not isinstance(header, dict):
        return f"its header is {quoted(header)}, not a JSON object"
    fields = {
        "step": (is_count, "a whole number"),
        "written_at": (lambda value: is_number(value) and math.isfinite(value), "a time"),
        "settings": (has_steps, "a JSON object with steps"),
    }
    for name, (valid, expected) in fields.items():
        if name not in header:
            return f"its header lacks {name}"
        if not valid(header[name]):
            return f"its header has {name} {quoted(header[name])}, not {expected}"
    return None


def has_steps(settings: Any) -> bool:
    return isinstance(settings, dict) and is_count(settings.get("steps"))


def checkpoint_info(path: Path, settings: Mapping[str, Any] | None = None) -> CheckpointInfo:
    """The header of the checkpoint at `path`, checked against a run's `settings` when given."""
    header = read_checkpoint(path, header_only=True)["header"]
    if settings is not None:
        check_belongs(path, header, settings)
    return CheckpointInfo(path, header["step"], header["settings"]["steps"], float(header["written_at"]))


# ------------------------------------------------------------------------------------------------ agents


def load_agent_state(agent: object, state: Mapping[str, Any]) -> None:
    """Put a checkpoint's agent `state` (`training_state` of the same algorithm and settings) into `agent`;
    CheckpointError when its parts do not match the agent's."""
    try:
        check_parts(agent, state)
        load_state(agent, state)
    except AgentStateError as error:
        raise CheckpointError(f"the checkpoint's agent does not fit this one ({error})") from None


def torch_rng_state(device: torch.device) -> dict[str, Tensor]:
    """The global torch generators the agents and the replay draw from: the CPU one, and the device's."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_torch_rng_state(state: Mapping[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
