"""Checkpoints: one file per run, `<run dir>/checkpoint_seeds_<first>-<last>.pt`, from which it goes on
exactly where it stopped.

What a checkpoint holds is gathered by the trainer (`Trainer.checkpoint_state`); this module defines
the file: how it is written (atomically: a temporary file, fsync, rename, fsync of the directory, so a
kill at any moment leaves the previous checkpoint whole), how it is read (`torch.load(weights_only=True)`:
tensors and containers of numbers and strings, nothing unpickled), and when it belongs to a run (the
same format version, algorithm, task, run and algorithm settings, and device type).

A file holds `{"format", "header", "document", "tensors"}`: `header` and `document` are JSON text (the
header small, for the plan and for refusals; the document every plain value: random generator states,
the environments' episodes, the rows so far), `tensors` the networks, optimisers, replay and the torch
random generators' states.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from qsmbench.errors import CheckpointError
from qsmbench.policies import network_state
from qsmbench.spec import RunSpec
from qsmbench.storage import replace_atomically
from qsmbench.messages import format_duration

FORMAT_VERSION = 1
# Run settings a resumed run may change: none changes what a seed learns. The variant label names the run's
# directory, where its checkpoint lives, so it is compared by where the checkpoint is (and checkpoints written
# before labels existed still resume).
NOT_COMPARED = ("out", "device", "checkpoint_every", "env_workers", "eval_workers", "variant", "track", "track_every")


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


def checkpoint_path(run_dir: Path, seed_start: int, seeds: int) -> Path:
    return run_dir / f"checkpoint_seeds_{seed_start}-{seed_start + seeds - 1}.pt"


def checkpoint_ranges(run_dir: Path) -> list[tuple[int, int]]:
    """The (seed_start, seeds) of every checkpoint in `run_dir`, from the file names."""
    if not run_dir.is_dir():
        return []
    ranges = []
    for entry in os.scandir(run_dir):
        match = re.fullmatch(r"checkpoint_seeds_(0|[1-9]\d*)-(0|[1-9]\d*)\.pt", entry.name)
        if match and int(match[2]) >= int(match[1]):
            ranges.append((int(match[1]), int(match[2]) - int(match[1]) + 1))
    return sorted(ranges)


def run_settings(spec: RunSpec, env_id: str, device: torch.device) -> dict[str, Any]:
    """What must be equal for a checkpoint to continue a run, as JSON reads it back."""
    run = {key: value for key, value in dataclasses.asdict(spec.run).items() if key not in NOT_COMPARED}
    settings = {
        "algo": spec.algo, "env_id": env_id, **run, **dataclasses.asdict(spec.config), "device type": device.type,
    }  # fmt: skip
    return json.loads(json.dumps(settings))


def check_belongs(path: Path, header: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """CheckpointError naming what differs when the checkpoint at `path` was written by another run."""
    saved = header.get("settings", {})
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

    `header_only` maps the file instead of reading it: a grid's plan asks every checkpoint for its step.
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
    except Exception as error:  # noqa: BLE001 - a damaged or hostile file of any kind is one line
        reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason}); pass --overwrite to start over") from None
    return checkpoint


def checkpoint_info(path: Path, settings: Mapping[str, Any] | None = None) -> CheckpointInfo:
    """The header of the checkpoint at `path`, checked against a run's `settings` when given."""
    header = read_checkpoint(path, header_only=True)["header"]
    if settings is not None:
        check_belongs(path, header, settings)
    return CheckpointInfo(path, int(header["step"]), int(header["settings"]["steps"]), float(header["written_at"]))


# ------------------------------------------------------------------------------------------------ agents


def agent_state(agent: object) -> dict[str, Any]:
    """Everything an agent learns or counts: its networks and free tensors (`policies.network_state`: targets,
    EMA copies, SAC's log temperature), optimisers and integer counters. Every other attribute of an agent is
    made from its config in its constructor (schedules, sampler options), so this is all it needs to go on."""
    state = network_state(agent)
    for name, value in vars(agent).items():
        if isinstance(value, torch.optim.Optimizer):
            state[name] = value.state_dict()
        elif isinstance(value, int) and not isinstance(value, bool):
            state[name] = value
    return state


def load_agent_state(agent: object, state: Mapping[str, Any]) -> None:
    """Put `state` (from `agent_state` of the same algorithm and settings) into `agent`, in place, so the
    optimisers keep their parameters; CheckpointError when its parts do not match the agent's."""
    expected = agent_state(agent)
    if set(expected) != set(state):
        raise CheckpointError(f"the checkpoint's agent has parts {sorted(state)}, this one {sorted(expected)}")
    try:
        for name, saved in state.items():
            value = getattr(agent, name)
            if isinstance(value, (nn.Module, torch.optim.Optimizer)):
                value.load_state_dict(saved)
            elif isinstance(value, Tensor):
                with torch.no_grad():
                    value.copy_(saved)
            else:
                setattr(agent, name, int(saved))
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"the checkpoint's agent does not fit this one ({str(error).splitlines()[0]})") from None


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
