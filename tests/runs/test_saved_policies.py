"""Saved policies, `qsmbench eval` (and its videos), and variant labels of runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from support import CPU, quick_overrides, run_cli, small_overrides

from qsmbench.algorithms import ALGORITHMS
from qsmbench.runs.layout import policy_path, run_dir, run_path
from qsmbench.runs.read import read_run
from qsmbench.runs.saved_policies import load_agent, read_policy
from qsmbench.runs.spec import make_spec
from qsmbench.tools.evaluate import evaluate_policies, find_policies, parse_seeds
from qsmbench.tools.video import RENDERERS, choose_renderer
from qsmbench.training.evaluation import Evaluator
from qsmbench.training.loop import start
from qsmbench.training.prepare import prepare
from qsmbench.training.progress import PlainReporter

STEPS, EVAL_EVERY, EPISODES = 300, 150, 2


def tiny_run(out: Path, algo: str, capfd: pytest.CaptureFixture[str], *extra: str) -> list[Path]:
    """Two seeds of `algo` on Pendulum-v1 for 300 steps with 32-wide networks; their run files."""
    overrides = [f"--set={override}" for override in [*quick_overrides(algo), "warmup_steps=100"]]
    result = run_cli(
        ["run", "--algo", algo, "--env", "Pendulum-v1", "--seeds", "2", "--steps", str(STEPS), "--eval-every",
         str(EVAL_EVERY), "--eval-episodes", str(EPISODES), "--device", "cpu", "--out", str(out), "--quiet",
         "--name", "", *overrides, *extra],
        capfd,
    )
    assert result.returncode == 0, result.stderr
    return [run_path(out, "Pendulum-v1", algo, seed) for seed in (0, 1)]


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_a_saved_policy_is_the_trained_one(tmp_path: Path, algo: str, capfd: pytest.CaptureFixture[str]) -> None:
    """Loaded from its files, the agent repeats the run's evaluations: the same returns at the last step, so
    every network evaluation uses (Diffusion-QL's target critics too) is the final one, seed by seed."""
    files = tiny_run(tmp_path, algo, capfd)
    policies = [read_policy(policy_path(file)) for file in files]
    assert [(policy.seed, policy.step, policy.header.algo) for policy in policies] == [(0, STEPS, algo), (1, STEPS, algo)]
    agent = load_agent(policies, CPU)
    evaluator = Evaluator("Pendulum-v1", [0, 1], EPISODES, CPU)
    for step in range(0, STEPS + 1, EVAL_EVERY):  # the evaluation envs continue their generators, as in the run
        returns, _ = evaluator.evaluate(agent, np.ones(2, dtype=bool), step)
    last_rows = [read_run(file).curve["eval_return"].iloc[-1] for file in files]
    np.testing.assert_allclose(returns.mean(axis=1), last_rows, rtol=1e-6)


def test_policy_files_hold_only_tensors_and_one_seed_each(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    files = tiny_run(tmp_path, "sac", capfd)
    stored = torch.load(policy_path(files[1]), weights_only=True)
    assert set(stored) == {"format", "document", "tensors"}
    assert set(stored["tensors"]) == {"actor", "critic", "critic_target", "log_alpha"}
    assert all(tensor.shape[0] == 1 for tensor in stored["tensors"]["actor"].values())
    batched = load_agent([read_policy(policy_path(file)) for file in files], CPU)
    alone = load_agent([read_policy(policy_path(files[1]))], CPU)
    for name, tensor in alone.actor.state_dict().items():
        assert torch.equal(tensor[0], batched.actor.state_dict()[name][1])


def test_eval_prints_each_seed_on_fresh_episodes(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    files = tiny_run(tmp_path, "td3", capfd)
    result = run_cli(["eval", str(tmp_path), "--episodes", "3", "--device", "cpu"], capfd)
    assert result.returncode == 0, result.stderr
    runs = find_policies(tmp_path).runs
    returns = evaluate_policies(runs[0], load_agent(runs[0], CPU), 3, 0, CPU).returns
    for seed in (0, 1):
        assert f"│ {seed}    │ {STEPS}  │ {returns[seed].mean():.1f}" in result.stdout
    assert f"{returns.mean():.1f}" in result.stdout
    last_rows = [read_run(file).curve["eval_return"].iloc[-1] for file in files]
    assert not np.allclose(returns.mean(axis=1), last_rows)  # other episodes than the training's evaluations saw
    (seed_1,) = find_policies(tmp_path, parse_seeds("1")).runs
    one_seed = evaluate_policies(seed_1, load_agent(seed_1, CPU), 3, 0, CPU).returns
    np.testing.assert_allclose(one_seed[0], returns[1], rtol=1e-5)  # a seed's episodes do not depend on the others
    other_stream = evaluate_policies(runs[0], load_agent(runs[0], CPU), 3, 1, CPU).returns
    assert not np.allclose(other_stream, returns)


def test_eval_refuses_bad_input_in_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    files = tiny_run(tmp_path, "td3", capfd)
    (tmp_path / "empty").mkdir()
    hostile = tmp_path / "hostile" / "td3" / "_policies" / "seed_0.pt"
    hostile.parent.mkdir(parents=True)
    torch.save({"format": 1, "document": "{}", "tensors": {"actor": np.float64(1.0)}}, hostile)  # needs unpickling
    cases = {
        ("eval", str(tmp_path / "missing")): "does not exist",
        ("eval", str(tmp_path / "empty")): "no saved policies under",
        ("eval", str(tmp_path), "--seeds", "7"): "no saved policy of seed 7",
        ("eval", str(tmp_path), "--seeds", "3-1"): "--seeds expects seeds and ranges",
        ("eval", str(tmp_path), "--episodes", "0"): "--episodes and --video-episodes must be at least 1",
        ("eval", str(hostile.parent.parent)): "is not a readable qsmbench policy",
    }
    for args, message in cases.items():
        result = run_cli(args, capfd)
        assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, (args, result)
    assert all(policy_path(file).exists() for file in files)


def test_a_run_started_over_leaves_no_old_policy(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    files = tiny_run(tmp_path, "td3", capfd)
    assert all(policy_path(file).exists() for file in files)
    spec = make_spec("td3", [*small_overrides("td3"), "warmup_steps=100"], env="Pendulum-v1", seeds=2, steps=STEPS,
                     eval_every=EVAL_EVERY, eval_episodes=EPISODES, device="cpu", out=str(tmp_path))
    trainer = start(prepare(spec, overwrite=True), PlainReporter("td3", spec.protocol.seed_values, STEPS))
    try:
        assert not any(policy_path(file).exists() for file in files)
    finally:
        trainer.claim.release()


def test_run_name_and_set_values_label_a_variant(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    args = ["run", "--algo", "td3", "--env", "Pendulum-v1", "--seeds", "1", "--steps", "20", "--eval-every", "20",
            "--eval-episodes", "1", "--device", "cpu", "--out", str(tmp_path), "--quiet"]
    derived = run_cli([*args, "--set", "warmup_steps = 10", "--set", "hidden_sizes=16, 16"], capfd)
    named = run_cli([*args, "--set", "warmup_steps=10", "--set", "hidden_sizes=16,16", "--name", "small nets"], capfd)
    assert derived.returncode == named.returncode == 0, derived.stderr + named.stderr
    labelled = {
        file.parent.name: read_run(file).metadata.header.variant for file in sorted(tmp_path.rglob("seed_0.parquet"))
    }
    labels = ("hidden_sizes=16,16 warmup_steps=10", "small nets")
    assert labelled == {run_dir(tmp_path, "Pendulum-v1", "td3", label).name: label for label in labels}
    assert sorted(labelled)[0].startswith("td3.hidden_sizes-16-16-warmup_steps-10~")  # readable, and one per label
    for bad in ["a\nb", " padded", "x" * 121]:
        result = run_cli([*args, "--set", "warmup_steps=10", "--name", bad], capfd)
        assert result.returncode == 2 and "--name must be printable" in result.stderr
    many = ["--set", "warmup_steps=10", "--set", f"hidden_sizes={','.join(['16'] * 40)}"]  # no --name: too long a label
    result = run_cli([*args, *many], capfd)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "the --set changes make a run label of 148 characters, over 120: give the run a --name" in lines[0]


def test_eval_films_episodes(tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Pendulum-v1 draws with pygame, so this runs wherever the video extra is installed."""
    pytest.importorskip("imageio_ffmpeg", reason="the video extra (imageio-ffmpeg) is not installed")
    for name in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "SDL_VIDEODRIVER", "SDL_AUDIODRIVER"):
        monkeypatch.delenv(name, raising=False)  # restored after the test: --video sets them for its process
    tiny_run(tmp_path / "runs", "sac", capfd)
    result = run_cli(["eval", str(tmp_path / "runs"), "--episodes", "1", "--video", str(tmp_path / "videos"),
                      "--video-episodes", "2", "--device", "cpu"], capfd)
    assert result.returncode == 0, result.stderr
    videos = sorted((tmp_path / "videos" / "Pendulum-v1" / "sac").glob("*.mp4"))
    assert [video.name for video in videos] == [f"seed_{k}-episode-{j}.mp4" for k in (0, 1) for j in (0, 1)]
    frames = iio.imread(videos[0])
    assert frames.shape[0] >= 200 and frames.std() > 0  # a frame per step of the 200-step episode


def test_eval_films_mujoco_where_a_renderer_works(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("imageio_ffmpeg", reason="the video extra (imageio-ffmpeg) is not installed")
    for name in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "SDL_VIDEODRIVER", "SDL_AUDIODRIVER"):
        monkeypatch.delenv(name, raising=False)
    try:
        renderer = choose_renderer("Hopper-v4")
    except Exception as error:
        pytest.skip(f"no MuJoCo renderer ({', '.join(RENDERERS)}) works on this machine: {error}")
    assert renderer in RENDERERS
    args = ["run", "--algo", "td3", "--env", "Hopper-v4", "--seeds", "1", "--steps", "40", "--eval-every", "40",
            "--eval-episodes", "1", "--device", "cpu", "--out", str(tmp_path), "--quiet", "--name", "",
            "--set", "warmup_steps=20", "--set", "hidden_sizes=16,16"]
    assert run_cli(args, capfd).returncode == 0
    result = run_cli(["eval", str(tmp_path / "Hopper-v4"), "--episodes", "1", "--video", str(tmp_path / "videos")], capfd)
    assert result.returncode == 0, result.stderr
    (video,) = (tmp_path / "videos" / "Hopper-v4" / "td3").glob("*.mp4")
    assert iio.imread(video).shape[1:] == (480, 480, 3)
    shutil.rmtree(tmp_path / "videos")
