"""`qsmbench eval --video`: MP4s of saved policies, with Gymnasium's RecordVideo.

MuJoCo renders off screen through EGL (a GPU driver) or OSMesa (software). Which one works depends on
the machine, and MuJoCo's OpenGL choice is fixed when a process first renders, so each is tried in a
short child process on the task's own env, and the first that renders a frame is set for this one
(`MUJOCO_GL`, `PYOPENGL_PLATFORM`). Envs drawn without OpenGL (classic control, through pygame) pass
the first try. When none works the user gets one line with each renderer's reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from qsmbench.algorithms import Agent
from qsmbench.core.errors import ConfigError
from qsmbench.runs.layout import run_dir
from qsmbench.runs.saved_policies import SavedPolicy
from qsmbench.tools.evaluate import LoadedRuns, evaluator_for, play

RENDERERS = ("egl", "osmesa")
PROBE_TIMEOUT_S = 120
PROBE = """
import sys
from qsmbench.envs.environments import make_env
env = make_env(sys.argv[1], render_mode="rgb_array")
env.reset(seed=0)
frame = env.render()
assert frame is not None and frame.ndim == 3, "no frame"
"""


def renderer_environment(name: str) -> dict[str, str]:
    """MuJoCo's and PyOpenGL's choice of `name`; pygame (classic control) draws off screen without sound devices."""
    return {"MUJOCO_GL": name, "PYOPENGL_PLATFORM": name, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}


def choose_renderer(env_id: str) -> str:
    """Set the first renderer that films `env_id` here for this process and return its name; ConfigError
    with every renderer's reason when none does."""
    reasons = []
    for name in RENDERERS:
        try:
            probe = subprocess.run(
                [sys.executable, "-c", PROBE, env_id], env={**os.environ, **renderer_environment(name)},
                capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            reasons.append(f"{name}: no frame within {PROBE_TIMEOUT_S} s")
            continue
        if probe.returncode == 0:
            os.environ.update(renderer_environment(name))
            return name
        reasons.append(f"{name}: {last_line(probe.stderr)}")
    raise ConfigError(
        f"--video cannot render {env_id} here ({'; '.join(reasons)}); MuJoCo needs EGL (a GPU driver) or OSMesa "
        "(e.g. apt install libosmesa6)"
    )


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:160] if lines else "failed without a message"


def check_video_support() -> None:
    """RecordVideo writes MP4s with moviepy, an optional dependency: one line when it is missing."""
    try:
        import moviepy  # noqa: F401 - imported only to learn whether it is installed
    except ImportError:
        raise ConfigError("--video needs moviepy: pip install 'qsmbench[video]'") from None


def record_videos(
    policies: Sequence[SavedPolicy], agent: Agent, episodes: int, eval_seed: int, directory: Path, device: torch.device
) -> list[Path]:
    """Film `episodes` episodes of each policy (the first of those `qsmbench eval` scores with the same
    `eval_seed`) into `directory` as `seed_<k>-episode-<j>.mp4`; returns the files."""
    from gymnasium.wrappers import RecordVideo

    evaluator = evaluator_for(policies, episodes, eval_seed, device, render_mode="rgb_array")
    names = [f"seed_{policy.seed}-episode-{j}" for policy in policies for j in range(episodes)]
    with warnings.catch_warnings():  # every member's recorder shares the folder, by design
        warnings.filterwarnings("ignore", message=".*Overwriting existing videos.*")
        evaluator.batch.envs = [  # each member films its one episode, which RecordVideo numbers 0
            RecordVideo(env, str(directory), episode_trigger=lambda _: True, name_prefix=name, disable_logger=True)
            for env, name in zip(evaluator.batch.envs, names)
        ]
    play(agent, policies, evaluator)
    return [(directory / f"{name}-episode-0.mp4").replace(directory / f"{name}.mp4") for name in names]


def film_runs(loaded: LoadedRuns, video_dir: Path, episodes: int, eval_seed: int) -> Iterator[tuple[Path, list[Path]]]:
    """Film each run's seeds into `<video_dir>/<task>/<algo>[.<variant>]/`; yields each directory and its files
    as it is done (filming is slow)."""
    for policies, agent in zip(loaded.runs, loaded.agents):
        header = policies[0].header
        directory = run_dir(video_dir, header.task, header.algo, header.variant)
        directory.mkdir(parents=True, exist_ok=True)
        yield directory, record_videos(policies, agent, episodes, eval_seed, directory, loaded.device)


def check_can_film(runs: list[list[SavedPolicy]]) -> None:
    """moviepy installed and a renderer for every run's environment (`find_policies`), before anything is evaluated."""
    check_video_support()
    for env_id in sorted({policies[0].header.env_id for policies in runs}):
        choose_renderer(env_id)
