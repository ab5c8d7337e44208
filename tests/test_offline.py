"""Offline training from a Minari dataset, end to end: trainer, files, normalised scores, CLI errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from algorithms import ALGORITHMS
from qsmbench.config import ConfigError, RunConfig, apply_overrides
from qsmbench.progress import PlainReporter
from qsmbench.storage import path_safe, read_run
from qsmbench.trainer import Trainer, prepare

QSMBENCH = Path(sys.executable).parent / "qsmbench"
SMALL = ["hidden_sizes=32,32", "actor_hidden_sizes=32,32", "batch_size=32"]


def offline_run(dataset_id: str, out: Path, algo: str = "dql") -> RunConfig:
    return RunConfig(
        algo=algo, dataset=dataset_id, seeds=2, steps=40, eval_every=20, eval_episodes=2, device="cpu", out=str(out)
    )


def test_offline_dql_trains_from_the_dataset_and_records_normalised_scores(minari_dataset: str, tmp_path: Path) -> None:
    run = offline_run(minari_dataset, tmp_path)
    prepared = prepare(run, apply_overrides(ALGORITHMS["dql"].config_cls(), SMALL), overwrite=False)
    Trainer(prepared, PlainReporter("dql", run.seed_values, run.steps)).train()
    low, high = prepared.dataset.ref_min_score, prepared.dataset.ref_max_score
    assert low is not None and high is not None and low < high
    for seed, path in zip(run.seed_values, prepared.paths):
        assert path == tmp_path / path_safe(minari_dataset) / "dql" / f"seed_{seed}.parquet"
        curve, metadata = read_run(path)
        assert metadata["status"] == "complete"
        assert metadata["dataset"] == minari_dataset and metadata["env"] == "Pendulum-v1"
        assert metadata["ref_scores"] == [low, high]
        assert curve["step"].tolist() == [0, 20, 40]
        assert (curve["env"] == minari_dataset).all()
        assert (curve["train_episodes"] == 0).all(), "offline runs take no environment steps"
        expected = 100 * (curve["eval_return"] - low) / (high - low)
        np.testing.assert_allclose(curve["eval_normalized_score"], expected, rtol=1e-6)
        assert np.isfinite(curve["critic_loss"].iloc[-1]) and np.isfinite(curve["bc_loss"].iloc[-1])


def test_offline_run_without_reference_scores_has_no_normalised_column(
    make_pendulum_dataset, tmp_path: Path
) -> None:
    dataset_id = make_pendulum_dataset("qsmbench/pendulum/norefs-v0", ref_scores=None)
    run = offline_run(dataset_id, tmp_path)
    prepared = prepare(run, apply_overrides(ALGORITHMS["dql"].config_cls(), SMALL), overwrite=False)
    Trainer(prepared, PlainReporter("dql", run.seed_values, run.steps)).train()
    curve, metadata = read_run(prepared.paths[0])
    assert "eval_normalized_score" not in curve.columns and metadata["ref_scores"] == [None, None]


@pytest.mark.parametrize("algo", ["sac", "td3", "qsm"])
def test_algorithms_without_an_offline_formulation_refuse_a_dataset(algo: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{algo} has no offline formulation"):
        prepare(offline_run("qsmbench/pendulum/random-v0", tmp_path, algo), ALGORITHMS[algo].config_cls(), False)
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
