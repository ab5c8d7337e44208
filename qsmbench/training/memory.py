"""The memory a run needs, estimated before anything is allocated, so an impossible request is refused
in a second with one line instead of allocating for a minute and dying (or hanging on 200k envs).

The estimate is deliberately generous (a run that passes should fit) but made of the few things
that grow with the settings, each named in the refusal:
- replay: `seeds x capacity` transitions at `replay_bytes_per_seed_step` on the training device;
- networks: every per-seed tensor of the agent (counted on the `meta` device, so a 10^8-wide layer
  costs nothing to count), times seeds, plus a gradient and two Adam moments per tensor;
- update activations: `seeds x batch_size` states through every hidden layer the update runs
  (the twin critics and their targets; a diffusion actor once per denoising step), forward and back;
- sampled actions: the most actions an update samples per state (QVPO's candidates, DACER's entropy
  estimate's), `seeds x batch_size` times that through one denoising step and the twin critics at once
  (no gradient: a step's rows are freed at the next);
- action batch: evaluation acts for `seeds x eval_episodes` states at once, each with its
  Diffusion-QL candidates or QVPO samples;
- environments (host memory): one training env per seed and one evaluation env per seed and
  episode, at a measured footprint.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from qsmbench.algorithms.contract import EnvDims
from qsmbench.algorithms.state import seed_tensors
from qsmbench.core.errors import ConfigError
from qsmbench.core.messages import format_bytes, short_path
from qsmbench.runs.spec import RunSpec
from qsmbench.runs.write import free_bytes
from qsmbench.training.replay import replay_bytes_per_seed_step

FLOAT_BYTES = 4
OPTIMIZER_COPIES = 3  # a gradient and Adam's two moments per learned value (targets have none: generous)
BACKWARD_FACTOR = 3  # activations kept for the backward pass, and their gradients
# Host memory per environment, measured with qsmbench.envs.environments.make_env on 100 envs (RSS growth / 100),
# rounded up: Hopper-v4 1.1 MB, Humanoid-v4 1.2 MB, dm_control/cheetah-run-v0 12 MB, Pendulum-v1 5 KB.
ENV_BYTES = 2_000_000
DM_CONTROL_ENV_BYTES = 16_000_000
MEMINFO = Path("/proc/meminfo")
# Settings that make an algorithm sample several actions per state, each a row through its networks.
UPDATE_SAMPLES = (  # QVPO; DACER's entropy_samples; SDAC's and DPMD's best-of chains, SDAC's reverse samples
    "train_samples", "target_samples", "entropy_samples", "candidates", "reverse_samples",
)
ACTION_SAMPLES = (  # Diffusion-QL; QVPO; SDAC and DPMD
    "eval_candidates", "explore_candidates", "eval_samples", "behavior_samples", "candidates",
)


def samples_per_state(config: object, names: tuple[str, ...], default: int) -> int:
    """The largest of the settings `names` that `config` has, or `default` where it has none."""
    return max((getattr(config, name) for name in names if hasattr(config, name)), default=default)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by what they hold, on the training device and in host memory (the same pool on the CPU)."""

    device: dict[str, float]
    host: dict[str, float]


def estimate_memory(spec: RunSpec, dims: EnvDims, env_id: str) -> MemoryEstimate:
    run, config = spec.protocol, spec.config
    seeds = run.seeds
    transition = 2 * dims.obs_dim + dims.act_dim + 2
    capacity = 0 if run.dataset else min(config.replay_capacity, run.steps)
    widths = _hidden_widths(config)
    sampled, candidates = samples_per_state(config, UPDATE_SAMPLES, 0), samples_per_state(config, ACTION_SAMPLES, 1)
    device = {
        "replay": seeds * capacity * replay_bytes_per_seed_step(dims.obs_dim, dims.act_dim, max(capacity, 1))
        + seeds * capacity * FLOAT_BYTES * dims.act_dim * getattr(config, "keep_improved_actions", False),  # DIPO's
        "networks": seeds * parameter_count(spec, dims) * (1 + OPTIMIZER_COPIES) * FLOAT_BYTES,
        "update activations": seeds * config.batch_size * (widths + transition) * BACKWARD_FACTOR * FLOAT_BYTES,
        "sampled actions": seeds * config.batch_size * sampled * (_sample_widths(config) + transition) * FLOAT_BYTES,
        "action batch": seeds * run.eval_episodes * candidates * (widths + transition) * FLOAT_BYTES,
    }
    host = {"environments": seeds * (run.eval_episodes + (0 if run.dataset else 1)) * env_bytes(env_id)}
    return MemoryEstimate(device, host)


def env_bytes(env_id: str) -> int:
    """Host memory one environment of `env_id` takes, at its measured footprint (`qsmbench eval` counts them too)."""
    return DM_CONTROL_ENV_BYTES if env_id.startswith("dm_control/") else ENV_BYTES


def parameter_count(spec: RunSpec, dims: EnvDims) -> int:
    """Values the agent keeps per seed (networks, targets, EMA copies, free tensors), counted without allocating."""
    meta = torch.device("meta")
    with meta:
        agent = spec.algorithm.make_agent(dims.obs_dim, dims.act_dim, [0], meta, spec.config)
    return sum(tensor.numel() for tensor in seed_tensors(agent, 1))


def _hidden_widths(config: object) -> int:
    """Hidden units one sample passes through in an update: twin critics and their targets, and the
    actor (a diffusion actor once per denoising step, each step also adding its time features)."""
    critic = sum(getattr(config, "hidden_sizes", ()))
    actor = sum(getattr(config, "actor_hidden_sizes", getattr(config, "hidden_sizes", ())))
    per_step = actor + getattr(config, "time_features", 0) + sum(getattr(config, "time_hidden_sizes", ()))
    per_step += getattr(config, "time_hidden", 0)
    return 4 * critic + per_step * getattr(config, "diffusion_steps", 1)


def _sample_widths(config: object) -> int:
    """Hidden units one sampled action holds at once: one denoising step of the actor, then both critics."""
    critic = sum(getattr(config, "hidden_sizes", ()))
    actor = sum(getattr(config, "actor_hidden_sizes", ()))
    return actor + getattr(config, "time_features", 0) + getattr(config, "time_hidden", 0) + 2 * critic


def available_bytes(device: torch.device) -> float:
    """Free memory where the tensors of `device` live: the GPU's free memory, or the host's available memory."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return float(free)
    return host_available_bytes()


def host_available_bytes(meminfo: Path = MEMINFO) -> float:
    """Linux's MemAvailable (what can be allocated without swapping); elsewhere (macOS has no /proc and
    no SC_AVPHYS_PAGES) the physical memory; infinity where not even that can be read, so the host check
    lets the run go rather than refuse it on a guess."""
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGESIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name (some macOS builds)
        return math.inf
    return float(pages * page_size) if pages > 0 else math.inf


def check_checkpoint_room(spec: RunSpec, dims: EnvDims, env_id: str, run_dir: Path) -> None:
    """Refuse a run whose checkpoints cannot fit beside its files: at the end of the run a checkpoint holds
    the whole replay and every network with its optimiser state, and a new one is written beside the old
    before it replaces it. Refused up front rather than failing at the first checkpoint, hours in."""
    need = estimate_memory(spec, dims, env_id).device
    needed, free = 2 * (need["replay"] + need["networks"]), free_bytes(run_dir)
    if free < needed:
        raise ConfigError(
            f"{short_path(run_dir)} has {format_bytes(free)} free, and this run's checkpoints need about "
            f"{format_bytes(needed)} (two at the end of the run, while one replaces the other); free some space, "
            "give another --out, or a smaller replay_capacity"
        )


def check_fits(spec: RunSpec, dims: EnvDims, env_id: str, device: torch.device) -> None:
    """Refuse a run that cannot fit, naming its largest parts, what it needs and what is available."""
    need = estimate_memory(spec, dims, env_id)
    pools = {device.type: dict(need.device), "host": dict(need.host)}
    if device.type == "cpu":  # one pool: tensors live in host memory
        pools = {"host": {**need.device, **need.host}}
    for pool, parts in pools.items():
        total, available = sum(parts.values()), available_bytes(device if pool != "host" else torch.device("cpu"))
        if total > available:
            largest = sorted(parts.items(), key=lambda item: -item[1])[:2]
            detail = ", ".join(f"{name} {format_bytes(size)}" for name, size in largest)
            where = "host memory" if pool == "host" else f"{pool} memory"
            raise ConfigError(
                f"this run needs about {format_bytes(total)} of {where} ({detail}), but {format_bytes(available)} "
                "is available; use fewer --seeds or --eval-episodes, or smaller replay_capacity, batch_size or networks"
            )

