"""`qsmbench eval` on hostile and unlucky input: copied, damaged or edited policies, symlinked run directories,
huge requests, and filming with bounded memory (qsmbench.tools.evaluate, qsmbench.tools.video)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support import run_cli, small_overrides

from qsmbench.core.errors import PolicyError
from qsmbench.runs.layout import POLICY_DIR
from qsmbench.runs.saved_policies import read_policy
from qsmbench.runs.spec import make_spec
from qsmbench.training.loop import train
from qsmbench.training.prepare import prepare
from qsmbench.training.progress import PlainReporter

STEPS = 300
TASK = "Pendulum-v1"
RENDER_VARIABLES = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "SDL_VIDEODRIVER", "SDL_AUDIODRIVER")


def train_tiny(out: Path, algo: str) -> Path:
    """Two seeds of `algo` on Pendulum-v1 for 300 steps with 32-wide networks; the run directory."""
    spec = make_spec(algo, [*small_overrides(algo), "warmup_steps=100"], env=TASK, seeds=2, steps=STEPS, eval_every=STEPS,
                     eval_episodes=1, device="cpu", out=str(out))
    outcome = train(prepare(spec), PlainReporter(algo, spec.protocol.seed_values, STEPS))
    return outcome.paths[0].parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results tree holding one complete two-seed SAC run, shared by the tests (each copies it first)."""
    root = tmp_path_factory.mktemp("trained")
    train_tiny(root, "sac")
    return root


@pytest.fixture
def tree(trained: Path, tmp_path: Path) -> Path:
    """A copy of `trained` this test may damage."""
    shutil.copytree(trained, tmp_path / "results")
    return tmp_path / "results"


def edit_header(policy: Path, **changes: Any) -> None:
    """Rewrite the run header stored in a saved policy, as a hand edit (or a hostile one) would."""
    stored = torch.load(policy, weights_only=True)
    document = json.loads(stored["document"])
    document["header"].update(changes)
    stored["document"] = json.dumps(document)
    torch.save(stored, policy)


def policies_of(run_dir: Path) -> list[Path]:
    return sorted((run_dir / POLICY_DIR).glob("seed_*.pt"))


def table_rows(stdout: str) -> list[list[str]]:
    """The cells of each row of the printed table."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in stdout.splitlines() if line.startswith("│")]


def test_a_copied_policy_is_not_counted_as_another_seed(tree: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`cp seed_0.pt seed_7.pt` gave two rows labelled seed 0 and a mean over both."""
    run_dir = tree / TASK / "sac"
    copy = run_dir / POLICY_DIR / "seed_7.pt"
    shutil.copy(run_dir / POLICY_DIR / "seed_0.pt", copy)
    result = run_cli(["eval", str(tree), "--episodes", "1", "--device", "cpu"], capfd)
    assert result.returncode == 0, result.stderr
    assert [row[2] for row in table_rows(result.stdout)] == ["0", "1", "mean"]
    assert f"qsmbench: warning: {copy} holds seed 0, but its name says seed 7" in result.stderr
    asked = run_cli(["eval", str(run_dir), "--seeds", "7", "--device", "cpu"], capfd)
    assert asked.returncode == 2 and asked.stderr.count("\n") == 1 and str(copy) in asked.stderr, asked


def test_bad_policies_are_named_and_skipped_in_a_tree(tree: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A truncated file, a header naming an env of other dimensions, and a run relabelled as another algorithm:
    each one line naming the file; in a tree each is skipped with a warning and the rest is evaluated."""
    good = tree / TASK / "sac"
    truncated, other_env, relabelled = (tree / name / "sac" for name in ("truncated", "other-env", "relabelled"))
    for run_dir in (truncated, other_env, relabelled):
        shutil.copytree(good, run_dir)
    damaged = policies_of(truncated)[1]
    damaged.write_bytes(damaged.read_bytes()[:500])
    for policy in policies_of(other_env):
        edit_header(policy, env_id="MountainCarContinuous-v0", task="MountainCarContinuous-v0")
    for policy in policies_of(relabelled):
        edit_header(policy, algo="td3")
    whole = run_cli(["eval", str(tree), "--episodes", "1", "--device", "cpu"], capfd)
    assert whole.returncode == 0, whole.stderr
    warnings = whole.stderr.splitlines()
    assert len(warnings) == 3 and all(line.startswith("qsmbench: warning: ") for line in warnings), warnings
    for named in (damaged, policies_of(other_env)[0], policies_of(relabelled)[0]):
        assert sum(str(named) in line for line in warnings) == 1, (named, warnings)
    rows = table_rows(whole.stdout)
    assert [row[2] for row in rows if row[1] == "sac"] == ["0", "1", "mean", "0"]  # the good run; seed 0 of `truncated`
    for run_dir, named, reason in ((truncated, damaged, "is not a readable qsmbench policy"),
                                   (other_env, policies_of(other_env)[0], "MountainCarContinuous-v0 has 2"),
                                   (relabelled, policies_of(relabelled)[0], "td3")):
        alone = run_cli(["eval", str(run_dir), "--episodes", "1", "--seeds", "1", "--device", "cpu"], capfd)
        assert alone.returncode == 2 and alone.stderr.count("\n") == 1, alone
        assert str(named.parent) in alone.stderr and reason in alone.stderr, alone.stderr
    assert len(policies_of(good)) == 2


def test_eval_follows_symlinked_run_directories_without_looping(
    trained: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`plot` reads run directories linked into a tree; `eval` found none of their policies."""
    tree = tmp_path / "results"
    (tree / TASK).mkdir(parents=True)
    (tree / TASK / "sac").symlink_to(trained / TASK / "sac", target_is_directory=True)
    (tree / TASK / "loop").symlink_to(tree, target_is_directory=True)  # a cycle must not be walked forever
    result = run_cli(["eval", str(tree), "--episodes", "1", "--device", "cpu"], capfd)
    assert result.returncode == 0, result.stderr
    assert [row[2] for row in table_rows(result.stdout)] == ["0", "1", "mean"]


def test_seed_ranges_are_not_expanded_and_messages_are_bounded(tree: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`--seeds 0-2000000` printed a 16.9 MB error line, and larger ranges were built in full."""
    for seeds, message in (("0-2000000", "no saved policy of seeds 2-2000000 under"),
                           (f"0-{10**30}", f"no saved policy of seeds 2-{10**30} under"),
                           ("0," * 5000 + "x", "--seeds expects seeds and ranges such as 0,2,5-7")):
        result = run_cli(["eval", str(tree), "--seeds", seeds, "--device", "cpu"], capfd)
        assert result.returncode == 2 and message in result.stderr, result.stderr[:300]
        assert result.stderr.count("\n") == 1 and len(result.stderr) < 400, result.stderr[:300]
    result = run_cli(["eval", str(tree), "--seeds", "1-5,0-0,3", "--episodes", "1", "--device", "cpu"], capfd)
    assert result.returncode == 2 and "no saved policy of seeds 2-5 under" in result.stderr, result.stderr


def test_eval_refuses_what_cannot_fit_before_building_it(tree: Path) -> None:
    """`--episodes` builds seeds x episodes environments: refused up front in one line, as `run` refuses.
    Before, 10^9 episodes per seed went on building envs until memory ran out (a subprocess, so a hang fails)."""
    command = [sys.executable, "-c", "from qsmbench.cli import main; main()", "eval", str(tree), "--episodes", str(10**9),
               "--device", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert result.returncode == 2, result.stderr[-500:]
    assert result.stderr.startswith("qsmbench: error: evaluating") and "host memory" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


@pytest.fixture
def filming(monkeypatch: pytest.MonkeyPatch) -> None:
    """The video extra, and the render settings `--video` sets for its process restored after the test."""
    pytest.importorskip("imageio_ffmpeg", reason="the video extra is not installed")
    for name in RENDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("filming")
def test_filming_holds_a_bounded_number_of_frames(tree: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """RecordVideo kept every frame of every filmed episode until its episode ended: 150 MB per 200-step
    Pendulum episode, all seeds' episodes at once. Frames now go to the encoder as they are drawn."""
    tracemalloc.start()
    try:
        result = run_cli(["eval", str(tree), "--episodes", "2", "--video", str(tmp_path / "videos"), "--video-episodes",
                          "2", "--device", "cpu"], capfd)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "videos" / TASK / "sac").glob("seed_*-episode-*.mp4"))) == 4
    assert peak < 100e6, f"{peak / 1e6:.0f} MB traced while filming four 200-frame episodes"


@pytest.mark.usefixtures("filming")
def test_filmed_episodes_are_the_scored_ones_however_many_are_filmed_at_once(tmp_path: Path) -> None:
    """QSM acts with noise drawn for the whole evaluation batch: filming in smaller batches must still give
    the episodes `qsmbench eval` scores (the same returns, exactly)."""
    from qsmbench.tools.evaluate import evaluate_runs, find_policies, load_runs
    from qsmbench.tools.video import check_can_film, film_runs

    train_tiny(tmp_path / "results", "qsm")
    loaded = load_runs(find_policies(tmp_path / "results"), "cpu")
    check_can_film(loaded, tmp_path / "videos")
    (scored,) = evaluate_runs(loaded, 3, eval_seed=0)
    for at_once in (1, 8):  # one episode per pass, and all in one
        ((_, films),) = film_runs(loaded, tmp_path / f"videos-{at_once}", 3, 2, 0, at_once=at_once)
        assert [film.path.name for film in films] == [f"seed_{k}-episode-{j}.mp4" for k in (0, 1) for j in (0, 1)]
        np.testing.assert_array_equal([film.episode_return for film in films], scored.returns[:, :2].ravel())


@pytest.mark.usefixtures("filming")
def test_a_stored_name_never_films_outside_the_video_directory(
    tree: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A header with task=".." sent the video one level above --video DIR; a folder of DIR linked elsewhere
    must not take it out either."""
    run_dir = tree / TASK / "sac"
    for policy in policies_of(run_dir):
        edit_header(policy, task="..")
    videos = tmp_path / "videos"
    result = run_cli(["eval", str(run_dir), "--episodes", "1", "--video", str(videos), "--device", "cpu"], capfd)
    assert not list(tmp_path.glob("sac/*.mp4")) and not list(tmp_path.glob("*.mp4"))
    if result.returncode != 0:  # refused, or filmed inside DIR under a name that cannot leave it
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and str(run_dir / POLICY_DIR) in result.stderr
    for policy in policies_of(run_dir):
        edit_header(policy, task=TASK)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(videos, ignore_errors=True)
    videos.mkdir()
    (videos / TASK).symlink_to(elsewhere, target_is_directory=True)
    linked = run_cli(["eval", str(run_dir), "--episodes", "1", "--video", str(videos), "--device", "cpu"], capfd)
    assert linked.returncode == 2 and linked.stderr.count("\n") == 1 and str(run_dir / POLICY_DIR) in linked.stderr, linked
    assert not list(elsewhere.rglob("*"))


@pytest.mark.parametrize("changes", [{"task": 5}, {"variant": None}, {"algo_config": [1]}], ids=["task", "variant", "algo-config"])
def test_a_policy_header_of_the_wrong_types_is_one_line_naming_the_file(tree: Path, changes: dict[str, Any]) -> None:
    """A policy's header is checked as a run file's metadata is (qsmbench.runs.format.METADATA_TYPES), so a hand-edited
    value fails where it is read, naming the file, not later as a raw TypeError."""
    policy = policies_of(tree / TASK / "sac")[0]
    edit_header(policy, **changes)
    with pytest.raises(PolicyError, match=rf"{re.escape(str(policy))} is not a readable qsmbench policy \(.*{next(iter(changes))}"):
        read_policy(policy)
