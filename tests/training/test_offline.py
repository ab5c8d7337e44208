"""Offline training from a Minari dataset, end to end: trainer, files, normalised scores, CLI errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import keeping_first_checkpoint, small_overrides

from qsmbench.algorithms import ALGORITHMS
from qsmbench.core.errors import ConfigError
from qsmbench.runs.layout import path_safe
from qsmbench.runs.read import read_run
from qsmbench.runs.spec import RunSpec, make_spec
from qsmbench.training.loop import Trainer, start
from qsmbench.training.prepare import prepare
from qsmbench.training.progress import PlainReporter

QSMBENCH = Path(sys.executable).parent / "qsmbench"
OFFLINE = [name for name, algorithm in ALGORITHMS.items() if algorithm.offline]
ONLINE_ONLY = [name for name, algorithm in ALGORITHMS.items() if not algorithm.offline]


def offline_spec(algo: str, dataset_id: str, out: Path, overrides: Sequence[str] = (), **settings: int) -> RunSpec:
    return make_spec(algo, overrides, dataset=dataset_id, seeds=2, steps=40, eval_every=20, eval_episodes=2, device="cpu",
                     out=str(out), **settings)


def train_offline(algo: str, dataset_id: str, out: Path) -> Trainer:
    spec = offline_spec(algo, dataset_id, out, [*small_overrides(algo), "batch_size=32"])
    trainer = start(prepare(spec), PlainReporter(algo, spec.protocol.seed_values, spec.protocol.steps))
    trainer.train()
    return trainer


@pytest.mark.parametrize("algo", OFFLINE)
def test_offline_training_uses_the_dataset_and_records_normalised_scores(
    algo: str, minari_dataset: str, tmp_path: Path
) -> None:
    trainer = train_offline(algo, minari_dataset, tmp_path)
    assert trainer.prepared.dataset is not None and trainer.parts.collector is None
    low, high = trainer.prepared.dataset.ref_scores
    assert low < high
    for seed, path in zip((0, 1), trainer.recorder.files.paths):
        assert path == tmp_path / path_safe(minari_dataset) / algo / f"seed_{seed}.parquet"
        run = read_run(path)
        curve, header = run.curve, run.metadata.header
        assert run.status == "complete"
        assert (header.task, header.dataset, header.env_id) == (minari_dataset, minari_dataset, "Pendulum-v1")
        assert header.ref_scores == (low, high)
        assert curve["step"].tolist() == [0, 20, 40]
        assert (curve["task"] == minari_dataset).all()
        assert (curve["train_episodes"] == 0).all(), "offline runs take no environment steps"
        expected = 100 * (curve["eval_return"] - low) / (high - low)
        np.testing.assert_allclose(curve["eval_normalized_score"], expected, rtol=1e-6)
        assert np.isfinite(curve["critic_loss"].iloc[-1])


def test_an_offline_run_resumes_exactly(minari_dataset: str, tmp_path: Path) -> None:
    """Offline there is no replay and no training env: the checkpoint's agent, generators and rows suffice."""
    algo = OFFLINE[0]
    spec = offline_spec(
        algo, minari_dataset, tmp_path / "whole", [*small_overrides(algo), "batch_size=32", "eval_candidates=2"], checkpoint_every=30
    )
    whole = start(prepare(spec), PlainReporter(algo, spec.protocol.seed_values, spec.protocol.steps))
    with keeping_first_checkpoint(whole.prepared.checkpoint, tmp_path / "kept.pt"):
        whole.train()
    resumed_spec = spec.with_settings(out=str(tmp_path / "resumed"))
    checkpoint = prepare(resumed_spec).checkpoint
    checkpoint.parent.mkdir(parents=True)
    shutil.copyfile(tmp_path / "kept.pt", checkpoint)
    resumed = start(prepare(resumed_spec), PlainReporter(algo, spec.protocol.seed_values, spec.protocol.steps))
    assert resumed.resumed_from == 30
    resumed.train()
    for got, want in zip(resumed.recorder.files.paths, whole.recorder.files.paths):
        timing = ["wall_time_s", "sps"]
        got_rows, want_rows = (read_run(path).curve.drop(columns=timing) for path in (got, want))
        pd.testing.assert_frame_equal(got_rows, want_rows, check_exact=True)


def test_offline_run_without_reference_scores_has_no_normalised_column(
    make_pendulum_dataset, tmp_path: Path
) -> None:
    dataset_id = make_pendulum_dataset("qsmbench/pendulum/norefs-v0", ref_scores=None)
    trainer = train_offline(OFFLINE[0], dataset_id, tmp_path)
    run = read_run(trainer.recorder.files.paths[0])
    assert "eval_normalized_score" not in run.curve.columns and run.metadata.header.ref_scores is None


@pytest.mark.parametrize("algo", ONLINE_ONLY)
def test_algorithms_without_an_offline_formulation_refuse_a_dataset(algo: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{algo} has no offline formulation"):
        offline_spec(algo, "qsmbench/pendulum/random-v0", tmp_path)
    assert list(tmp_path.iterdir()) == []


def qsmbench(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MUJOCO_GL"}
    return subprocess.run([str(QSMBENCH), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--algo", "sac", "--dataset", "qsmbench/pendulum/random-v0"], "sac has no offline formulation"),
        (["--algo", "dql", "--dataset", "qsmbench/missing/none-v0"], "minari download"),
        (["--algo", "dql", "--dataset", "qsmbench/pendulum/random-v0", "--env", "Pendulum-v1"], "either --env"),
        (["--algo", "dql"], "either --env"),
    ],
    ids=["online-only-algo", "missing-dataset", "both", "neither"],
)
def test_cli_dataset_errors_are_one_line(
    minari_dataset: str, tmp_path: Path, args: list[str], fragment: str
) -> None:
    """With no network (the fixture blocks the hub), bad --dataset use is one line and exit 2."""
    result = qsmbench(["run", *args, "--out", str(tmp_path / "out"), "--quiet"], cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("qsmbench: error:") and fragment in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
