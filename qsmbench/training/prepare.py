"""Everything checked before a file is touched: the folders and files the run will write below --out (no link, no
folder where a file goes), the output directory, device, environment or dataset, memory, existing files and
checkpoint (`prepare`), then the run directory claimed, checked again and cleared of what a killed run left
(`PreparedRun.claim`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from qsmbench.algorithms.contract import EnvDims
from qsmbench.core.errors import ConfigError
from qsmbench.envs.datasets import OfflineDataset, load_offline_dataset
from qsmbench.envs.environments import env_dims
from qsmbench.envs.workers import start_worker_server
from qsmbench.runs.checkpoint import CheckpointInfo, checkpoint_info, resume_settings
from qsmbench.runs.layout import checkpoint_path, policy_path, run_dir, run_path, tensorboard_dir
from qsmbench.runs.locking import RunClaim, claim_run_dir
from qsmbench.runs.saved_policies import remove_policies
from qsmbench.runs.spec import RunSpec
from qsmbench.runs.write import (
    check_can_write,
    check_out_dir,
    check_own_paths,
    check_same_run,
    finished,
    remove_stale_temporaries,
    remove_stranded_checkpoints,
)
from qsmbench.training.memory import check_checkpoint_room, check_fits
from qsmbench.training.tracking import check_installed


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def check_compile_device(compile: bool, device: torch.device) -> None:
    """`--compile` is for CUDA: on the CPU it was measured slower than eager, and inductor's C++ build is long."""
    if compile and device.type != "cuda":
        raise ConfigError(
            f"--compile is for CUDA: on the CPU compiled updates ran at 0.6-0.75x of eager (docs/benchmarks.md); "
            f"this run is on {device.type}"
        )


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
        return checkpoint_path(self.run_dir, self.spec.protocol.seed_start, self.spec.protocol.seeds)

    @property
    def resuming(self) -> bool:
        """Whether this run goes on from its checkpoint: there is one, starting over was not asked for, and not every
        seed's file says the run finished (a checkpoint beside a finished run is stranded: the claim deletes it)."""
        return not self.overwrite and self.checkpoint.exists() and not finished(self.paths)

    @property
    def settings(self) -> dict[str, object]:
        return resume_settings(self.spec, self.env_id, self.device)

    def check_files(self) -> CheckpointInfo | None:
        """Check the files this run would replace and the checkpoint it would go on from (`check_can_write`); that
        checkpoint, if any. A checkpoint of the last step is finished from, rewriting its complete files. Files
        of another run (`check_same_run`) are refused first."""
        check_same_run(self.paths, self.spec, self.overwrite)
        resume = checkpoint_info(self.checkpoint, self.settings) if self.resuming else None
        finishing = resume is not None and resume.step == resume.steps
        check_can_write(self.paths, self.overwrite, resuming=resume is not None, finishing=finishing)
        return resume

    def claim(self) -> RunClaim:
        """Claim the run directory, then check the files again under the claim and clear what killed runs left:
        stale temporaries, checkpoints stranded beside finished runs (and, with `overwrite`, the checkpoint).

        The check in `prepare` fails fast; this one is the one that counts, since another run may have
        finished these seeds (or planted a link) in between.
        """
        claim = claim_run_dir(self.run_dir, self.spec.protocol.steps)
        try:
            check_paths(self.spec, self.paths)
            self.check_files()
        except BaseException:
            claim.release()
            raise
        remove_stale_temporaries(self.run_dir)
        remove_stranded_checkpoints(self.run_dir)
        remove_policies(self.paths)  # policies are written when a run completes: none may outlive the files they match
        if self.overwrite:
            self.checkpoint.unlink(missing_ok=True)
        return claim


def check_paths(spec: RunSpec, paths: list[Path]) -> None:
    """Refuse a link or a misplaced entry where the run with these run files writes below --out: its task and run
    directories, `_policies`, `_tensorboard` with --track tensorboard; its run files, checkpoint and policies."""
    out, directory, protocol = Path(spec.execution.out), paths[0].parent, spec.protocol
    directories = [policy_path(paths[0]).parent]
    if spec.execution.track == "tensorboard":
        directories.append(tensorboard_dir(out, directory, protocol.seed_values))
    checkpoint = checkpoint_path(directory, protocol.seed_start, protocol.seeds)
    check_own_paths(out, directories, [*paths, checkpoint, *map(policy_path, paths)])


def prepare(spec: RunSpec, overwrite: bool = False) -> PreparedRun:
    """Validate --out, device, environment or dataset, memory and output files; ConfigError on bad input."""
    protocol, execution = spec.protocol, spec.execution
    directory = run_dir(execution.out, protocol.task, spec.algo, execution.variant)
    paths = [run_path(execution.out, protocol.task, spec.algo, seed, execution.variant) for seed in protocol.seed_values]
    check_installed(execution.track)
    check_paths(spec, paths)
    check_out_dir(directory, protocol.seeds, protocol.evaluations)
    device = resolve_device(execution.device)
    if execution.tf32 and device.type != "cuda":
        raise ConfigError(f"--tf32 changes CUDA matmuls only; this run is on {device.type}")
    check_compile_device(execution.compile, device)
    if execution.env_workers or execution.eval_workers:
        start_worker_server()  # its imports overlap with the checks below and the trainer's own start
    dataset = load_offline_dataset(protocol.dataset, device, protocol.seeds) if protocol.dataset else None
    env_id = dataset.env_id if dataset else str(protocol.env)
    dims = env_dims(env_id)
    check_fits(spec, dims, env_id, device)
    check_checkpoint_room(spec, dims, env_id, directory)
    if dataset and (dataset.obs_dim, dataset.act_dim) != (dims.obs_dim, dims.act_dim):
        raise ConfigError(
            f"dataset {protocol.dataset} has obs/action dims {dataset.obs_dim}/{dataset.act_dim}, "
            f"but its environment {env_id} has {dims.obs_dim}/{dims.act_dim}"
        )
    prepared = PreparedRun(spec, device, env_id, dims, paths, dataset, overwrite)
    return dataclasses.replace(prepared, resume=prepared.check_files())
