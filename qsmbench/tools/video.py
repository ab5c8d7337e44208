"""`qsmbench eval --video`: MP4s of saved policies, with memory bounded however long or many the episodes.

Each frame goes to the encoder (imageio-ffmpeg) as it is drawn, so memory holds one frame per episode
being filmed (Gymnasium's RecordVideo kept every frame until its episode ended: about 690 MB per
1,000-step MuJoCo episode), and at most `FILM_AT_ONCE` episodes are filmed at a time. Each pass plays
the whole evaluation `qsmbench eval` scores, with only its episodes on film: QSM's and Diffusion-QL's
noise is drawn for the whole batch, so a smaller batch would act otherwise, and every film is then an
episode that the table scores. The folder a run's videos go to is `<DIR>/<task>/<algo>[.<variant>]`
from the policy's stored header; one that would resolve outside DIR (a task named `..`, a folder of DIR
linked elsewhere) is refused, naming the policy file, before anything is evaluated.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from qsmbench.algorithms import Agent
from qsmbench.core.errors import ConfigError, PolicyError
from qsmbench.runs.layout import run_dir
from qsmbench.runs.saved_policies import SavedPolicy
from qsmbench.tools.evaluate import LoadedRuns, evaluator_for, play

RENDERERS = ("egl", "osmesa")
FILM_AT_ONCE = 4  # episodes filmed in one pass: an encoder and a frame in memory each
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
    """The MP4 encoder (imageio-ffmpeg, which the `video` extra installs): one line when it is missing."""
    try:
        import imageio_ffmpeg  # noqa: F401 - imported only to learn whether it is installed
    except ImportError:
        raise ConfigError("--video needs imageio-ffmpeg: pip install 'qsmbench[video]'") from None


@dataclass(frozen=True)
class Film:
    """One filmed episode: its MP4, and its return (the one `qsmbench eval` scores for that episode)."""

    path: Path
    episode_return: float


class FrameStream(gym.Wrapper):
    """Films the episode its env starts at its next reset into `path`, sending each frame to the encoder as
    it is drawn; the film ends with the episode, or when the env is closed."""

    def __init__(self, env: gym.Env, path: Path):
        super().__init__(env)
        self.path = path
        self.encoder: Any = None
        self.filming = self.filmed = False

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        result = self.env.reset(**kwargs)
        self.filming = not self.filmed
        self.film_frame()
        return result

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        result = self.env.step(action)
        self.film_frame()
        if result[2] or result[3]:
            self.end_film()
        return result

    def film_frame(self) -> None:
        """Draw the env now and send the frame to the encoder, started at the first frame (its size is the frame's)."""
        if not self.filming:
            return
        frame = np.ascontiguousarray(self.env.render(), dtype=np.uint8)
        if self.encoder is None:
            import imageio_ffmpeg

            height, width = frame.shape[:2]
            self.encoder = imageio_ffmpeg.write_frames(
                str(self.path), (width, height), fps=self.env.metadata.get("render_fps", 30), macro_block_size=2,
                ffmpeg_log_level="error",
            )
            self.encoder.send(None)  # starts ffmpeg
        self.encoder.send(frame)

    def end_film(self) -> None:
        """Finish the MP4; the env films nothing more (an evaluation plays each episode once)."""
        if self.filming and self.encoder is not None:
            self.encoder.close()  # waits for ffmpeg to finish the file
        self.filmed = self.filmed or self.filming
        self.filming = False

    def close(self) -> None:
        self.end_film()
        super().close()


def film_run(
    policies: Sequence[SavedPolicy], agent: Agent, scored: int, filmed: int, eval_seed: int, directory: Path,
    device: torch.device, at_once: int = FILM_AT_ONCE,
) -> list[Film]:
    """Film the first `filmed` episodes of each policy into `directory` as `seed_<k>-episode-<j>.mp4`, `at_once`
    at a time. Every pass plays the evaluation of `max(scored, filmed)` episodes per seed that `qsmbench eval
    --episodes scored` plays with the same `eval_seed`, so each film is the episode it scores."""
    members = [(k, j) for k in range(len(policies)) for j in range(filmed)]
    films: list[Film] = []
    for start in range(0, len(members), at_once):
        films += film_pass(policies, agent, members[start : start + at_once], max(scored, filmed), eval_seed, directory, device)
    return films


def film_pass(
    policies: Sequence[SavedPolicy], agent: Agent, members: list[tuple[int, int]], episodes: int, eval_seed: int,
    directory: Path, device: torch.device,
) -> list[Film]:
    """One evaluation with the episodes `members` (seed index, episode index) on film; the seeds without one
    in it stay still."""
    evaluator = evaluator_for(policies, episodes, eval_seed, device, render_mode="rgb_array")
    paths = [directory / f"seed_{policies[k].seed}-episode-{j}.mp4" for k, j in members]
    for (k, j), path in zip(members, paths):
        evaluator.batch.envs[k * episodes + j] = FrameStream(evaluator.batch.envs[k * episodes + j], path)
    live = np.isin(np.arange(len(policies)), [k for k, _ in members])
    returns = play(agent, policies, evaluator, live)
    return [Film(path, float(returns[k, j])) for (k, j), path in zip(members, paths)]


def film_directory(policies: Sequence[SavedPolicy], video_dir: Path) -> Path:
    """`<video_dir>/<task>/<algo>[.<variant>]/` for a run; PolicyError naming its policy when that resolves
    outside `video_dir` (a stored task of `..`, a folder of `video_dir` linked elsewhere)."""
    header = policies[0].header
    directory = run_dir(video_dir, header.task, header.algo, header.variant)
    if not directory.resolve().is_relative_to(video_dir.resolve()):
        raise PolicyError(
            f"{policies[0].path}: its task {header.task[:80]!r} would put its videos in {directory.resolve()}, "
            f"outside --video {video_dir}"
        )
    return directory


def film_runs(
    loaded: LoadedRuns, video_dir: Path, scored: int, filmed: int, eval_seed: int, at_once: int = FILM_AT_ONCE
) -> Iterator[tuple[Path, list[Film]]]:
    """Film each run's seeds into its `film_directory`; yields each directory and its films as it is done
    (filming is slow)."""
    for policies, agent in zip(loaded.runs, loaded.agents):
        directory = film_directory(policies, video_dir)
        directory.mkdir(parents=True, exist_ok=True)
        yield directory, film_run(policies, agent, scored, filmed, eval_seed, directory, loaded.device, at_once)


def check_can_film(loaded: LoadedRuns, video_dir: Path) -> None:
    """The encoder installed, every run's folder inside `video_dir`, and a renderer for every run's environment,
    before anything is evaluated."""
    check_video_support()
    for policies in loaded.runs:
        film_directory(policies, video_dir)
    for env_id in sorted({policies[0].header.env_id for policies in loaded.runs}):
        choose_renderer(env_id)
