"""What a run was made with: package versions, commit, device and CPU (stored in every run file).

MuJoCo results differ across MuJoCo versions and CPUs, so both are recorded with every run.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
from pathlib import Path

import torch

PACKAGES = ("qsmbench", "torch", "gymnasium", "mujoco", "numpy", "dm-control", "shimmy")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The commit of the qsmbench checkout, with `-dirty` when it has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


def provenance(device: torch.device) -> dict[str, object]:
    return {
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": device_name(device),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "start_time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
