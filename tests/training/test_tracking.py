"""`qsmbench run --track tensorboard|wandb`: what the trackers receive, read back from their own files, and
that tracking changes no result.

W&B runs offline (WANDB_MODE=offline, WANDB_DIR under tmp_path): nothing leaves the machine. Both packages
are the `track` extra, which `make` installs; where they are missing, the tests that need them skip.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import keeping_first_checkpoint, run_cli

from qsmbench.runs.read import read_run

SEEDS = (0, 1)
TIMING_COLUMNS = ["wall_time_s", "sps"]  # measured afresh by every run


def run_args(out: Path, *extra: str) -> list[str]:
    """TD3 on Pendulum-v1: 2 seeds, 200 steps, learning from step 50, evaluations at 0, 100 and 200."""
    return [
        "run", "--algo", "td3", "--env", "Pendulum-v1", "--seeds", "2", "--steps", "200", "--eval-every", "100",
        "--eval-episodes", "1", "--device", "cpu", "--quiet", "--out", str(out), "--set", "warmup_steps=50",
        "--set", "batch_size=32", "--set", "hidden_sizes=32,32", "--name", "", *extra,
    ]


def curves(out: Path) -> list[pd.DataFrame]:
    return [read_run(out / "Pendulum-v1" / "td3" / f"seed_{seed}.parquet").curve for seed in SEEDS]


def without_timing(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    return [frame.drop(columns=TIMING_COLUMNS) for frame in frames]


def tensorboard_scalars(out: Path) -> tuple[dict[str, list[tuple[int, float]]], list[str]]:
    """Every scalar tag's (step, value) pairs and the config texts (one per start of the run), as TensorBoard
    reads the run's event files."""
    accumulator_module = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator", reason="the track extra (tensorboard) is not installed"
    )
    accumulator = accumulator_module.EventAccumulator(str(out / "_tensorboard" / "Pendulum-v1" / "td3" / "seeds_0-1"))
    accumulator.Reload()
    scalars = {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
    configs = [event.tensor_proto.string_val[0].decode() for event in accumulator.Tensors("config/text_summary")]
    return scalars, configs


def test_tracking_changes_no_row_and_tensorboard_gets_them(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The run files of a tracked run equal an untracked run's; TensorBoard has every row value per seed at its
    evaluation step, the diagnostics' means every --track-every steps, and the run's config."""
    pytest.importorskip("tensorboard", reason="the track extra (tensorboard) is not installed")
    tracked_out, plain_out = tmp_path / "tracked", tmp_path / "plain"
    assert run_cli(run_args(tracked_out, "--track", "tensorboard", "--track-every", "50"), capfd).returncode == 0
    assert run_cli(run_args(plain_out), capfd).returncode == 0
    rows = curves(tracked_out)
    for got, want in zip(without_timing(rows), without_timing(curves(plain_out))):
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert not (plain_out / "_tensorboard").exists()

    scalars, (config,) = tensorboard_scalars(tracked_out)
    for seed, curve in zip(SEEDS, rows):
        for column in ("eval_return", "eval_return_std", "train_episodes", "wall_time_s", "critic_loss", "q_mean"):
            logged = {step: value for step, value in scalars[f"seed_{seed}/{column}"]}
            expected = {step: value for step, value in zip(curve["step"], curve[column]) if np.isfinite(value)}
            assert logged == pytest.approx(expected, rel=1e-6), (seed, column)  # TensorBoard keeps float32
        assert [step for step, _ in scalars[f"seed_{seed}/sps"]] == [100, 200]  # NaN at step 0 is left out
        interval = dict(scalars[f"seed_{seed}/diagnostics/critic_loss"])
        assert sorted(interval) == [100, 150, 200]  # learning starts at 50: no update before the boundary at 50
        evaluation = dict(zip(curve["step"], curve["critic_loss"]))
        assert interval[100] == pytest.approx(evaluation[100], rel=1e-6)  # the same 50 updates, 51..100
        assert (interval[150] + interval[200]) / 2 == pytest.approx(evaluation[200], rel=1e-5)
    settings = json.loads(config.removeprefix("```json\n").removesuffix("\n```"))
    assert settings["run_config"]["track"] == "tensorboard" and settings["run_config"]["track_every"] == 50
    assert settings["algo_config"]["batch_size"] == 32 and settings["provenance"]["versions"]["torch"]


def test_resume_ignores_the_tracking_settings_and_tensorboard_drops_the_redone_steps(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint of a run tracked every 50 steps resumes untracked, and tracked every 25, with the rows of
    the uninterrupted run; TensorBoard's curves go on from the checkpoint without the steps logged after it."""
    pytest.importorskip("tensorboard", reason="the track extra (tensorboard) is not installed")
    reference, kept = tmp_path / "reference", tmp_path / "checkpoint_at_70.pt"
    checkpoint = Path("Pendulum-v1") / "td3" / "checkpoint_seeds_0-1.pt"
    (reference / checkpoint).parent.mkdir(parents=True)
    with keeping_first_checkpoint(reference / checkpoint, kept):
        args = run_args(reference, "--track", "tensorboard", "--track-every", "50", "--checkpoint-every", "70")
        assert run_cli(args, capfd).returncode == 0
    for name, extra in (("untracked", []), ("tracked", ["--track", "tensorboard", "--track-every", "25"])):
        out = tmp_path / name
        (out / checkpoint).parent.mkdir(parents=True)
        shutil.copyfile(kept, out / checkpoint)
        shutil.copytree(reference / "_tensorboard", out / "_tensorboard")  # what the run logged up to step 200
        result = run_cli(run_args(out, "--checkpoint-every", "70", *extra), capfd)
        assert result.returncode == 0, result.stderr
        assert "resuming from the checkpoint at step 70 of 200" in result.stdout
        for got, want in zip(without_timing(curves(out)), without_timing(curves(reference))):
            pd.testing.assert_frame_equal(got, want, check_exact=True)
    scalars, configs = tensorboard_scalars(tmp_path / "tracked")
    documents = [json.loads(config.removeprefix("```json\n").removesuffix("\n```")) for config in configs]
    assert [document["run_config"]["track_every"] for document in documents] == [50, 25]
    assert [step for step, _ in scalars["seed_0/diagnostics/critic_loss"]] == [75, 100, 125, 150, 175, 200]
    assert [step for step, _ in scalars["seed_1/eval_return"]] == [0, 100, 200]


def wandb_records(run_dir: Path) -> Iterator[Any]:
    """The records of the offline W&B run in `run_dir`, from its `.wandb` log: a 7-byte file header, then
    32 KiB blocks of chunks, each with a 7-byte header (CRC, length, type: 1 whole, 2 first, 3 middle, 4 last)."""
    wandb_internal = pytest.importorskip("wandb.proto.wandb_internal_pb2")
    block, header = 32768, 7
    (log,) = run_dir.glob("*.wandb")
    data = log.read_bytes()
    assert data[:4] == b":W&B"
    position, pending = header, b""
    while position + header <= len(data):
        left = block - position % block
        _crc, length, kind = struct.unpack("<IHB", data[position : position + header]) if left >= header else (0, 0, 0)
        if kind == 0:  # the zero padding at a block's end
            position += left
            continue
        pending += data[position + header : position + header + length]
        position += header + length
        if kind in (1, 4):
            record = wandb_internal.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_run(wandb_dir: Path) -> tuple[dict[str, Any], dict[int, dict[str, Any]], list[str]]:
    """(config, history by step, record kinds) of the one offline run under `wandb_dir`."""
    (run_dir,) = (wandb_dir / "wandb").glob("offline-run-*")
    config: dict[str, Any] = {}
    history: dict[int, dict[str, Any]] = {}
    kinds = []
    for record in wandb_records(run_dir):
        kind = record.WhichOneof("record_type")
        kinds.append(kind)
        if kind == "config":
            config |= {item.key: json.loads(item.value_json) for item in record.config.update}
        elif kind == "history":
            values = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history.setdefault(record.history.step.num, {}).update(values)
    return config, history, kinds


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """W&B offline into a fresh WANDB_DIR; torn down afterwards, as wandb reads its environment once per process."""
    wandb = pytest.importorskip("wandb", reason="the track extra (wandb) is not installed")
    wandb_dir = tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    yield wandb_dir
    wandb.teardown()


def test_wandb_offline_run_has_the_rows_the_diagnostics_and_the_config(
    tmp_path: Path, offline_wandb: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every row value per seed at its step, the diagnostics every --track-every steps, the config; finished."""
    out = tmp_path / "out"
    result = run_cli(run_args(out, "--track", "wandb", "--track-every", "50"), capfd)
    assert result.returncode == 0, result.stderr
    config, history, kinds = wandb_run(offline_wandb)
    assert kinds[-1] == "exit", "the W&B run was not finished"
    assert config["run_config"]["track"] == "wandb" and config["algo_config"]["hidden_sizes"] == [32, 32]
    assert config["provenance"]["versions"]["python"] and config["task"] == "Pendulum-v1"
    assert sorted(history) == [0, 100, 150, 200]
    for seed, curve in zip(SEEDS, curves(out)):
        for row in curve.to_dict("records"):
            logged = history[row["step"]]
            for column in ("eval_return", "eval_return_std", "train_episodes", "wall_time_s"):
                assert logged[f"seed_{seed}/{column}"] == pytest.approx(row[column], rel=1e-12), (seed, column)
        assert history[100][f"seed_{seed}/diagnostics/q_mean"] == pytest.approx(curve["q_mean"].iloc[1], rel=1e-6)
        assert f"seed_{seed}/diagnostics/q_mean" in history[150] and f"seed_{seed}/eval_return" not in history[150]


def test_a_diverged_run_finishes_its_wandb_run(tmp_path: Path, offline_wandb: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Exit 3 (every seed diverged) closes the tracker too: the W&B run ends with its exit record."""
    result = run_cli(run_args(tmp_path / "out", "--track", "wandb", "--set", "critic_lr=1e30"), capfd)
    assert result.returncode == 3, result.stderr
    _, history, kinds = wandb_run(offline_wandb)
    assert kinds[-1] == "exit", "the W&B run was not finished"
    assert "seed_0/eval_return" in history[0]


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb"])
def test_a_missing_tracker_package_is_one_line_before_any_file(
    tracker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Without the package (None in sys.modules makes its import fail), one line saying how to install it."""
    monkeypatch.setitem(sys.modules, tracker, None)
    out = tmp_path / "out"
    result = run_cli(run_args(out, "--track", tracker), capfd)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"qsmbench: error: --track {tracker} needs the {tracker} package: pip install 'qsmbench[track]'"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--track", "mlflow"], "qsmbench: error: --track must be tensorboard or wandb, got 'mlflow'"),
        (["--track", "tensorboard", "--track-every", "0"], "qsmbench: error: --track-every must be at least 1, got 0"),
    ],
)
def test_bad_tracking_options_are_one_line(
    extra: list[str], message: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    result = run_cli(run_args(out, *extra), capfd)
    assert result.returncode == 2 and result.stderr.strip() == message
    assert not out.exists()
