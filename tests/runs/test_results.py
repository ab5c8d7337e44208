"""Results as data: `qsmbench.runs.results.load` and `pd.read_parquet` on a results directory that has been plotted.

The tree is made the way a user makes one: two short `qsmbench run`s of algorithms with different diagnostics
(SAC logs alpha and entropy, QSM q_score_norm), then `qsmbench plot`, each the installed console script.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from support import rewrite_metadata, write_schema_1_results

from qsmbench.core.errors import ConfigError
from qsmbench.runs.results import SkippedRunFileWarning, load

QSMBENCH = Path(sys.executable).parent / "qsmbench"
REPO_RESULTS_README = Path(__file__).parents[2] / "results" / "_README.md"  # the one file of results/ in git
ALGOS = {"sac": [], "qsm": ["actor_hidden_sizes=32,32", "time_hidden_sizes=16,16", "diffusion_steps=2"]}
SEEDS, STEPS, EVAL_EVERY = 2, 150, 50
EVALUATIONS = STEPS // EVAL_EVERY + 1  # at 0, 50, 100, 150
WARMUP = 50


def qsmbench(args: list[str], cwd: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "MUJOCO_GL"}
    result = subprocess.run([str(QSMBENCH), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """results/ after `qsmbench run` of SAC and QSM (Pendulum-v1, 2 seeds, 150 steps) and `qsmbench plot`, in a
    results/ that holds the repository's own _README.md first, as a fresh clone's does."""
    root = tmp_path_factory.mktemp("results-as-data")
    (root / "results").mkdir()
    shutil.copy(REPO_RESULTS_README, root / "results")
    for algo, sets in ALGOS.items():
        settings = [f"warmup_steps={WARMUP}", "batch_size=32", "hidden_sizes=32,32", *sets]
        qsmbench(["run", "--algo", algo, "--env", "Pendulum-v1", "--seeds", str(SEEDS), "--steps", str(STEPS),
                  "--eval-every", str(EVAL_EVERY), "--eval-episodes", "1", "--out", "results", "--quiet",
                  "--name", "", *(part for setting in settings for part in ("--set", setting))], root)
    qsmbench(["plot", "results", "--normalize", "none", "--reps", "20"], root)
    return root / "results"


def test_load_has_a_row_per_evaluation_with_the_run_as_columns(plotted: Path) -> None:
    frame = load(plotted)
    assert len(frame) == len(ALGOS) * SEEDS * EVALUATIONS
    assert list(frame.columns[:7]) == ["task", "algo", "variant", "seed", "status", "env_id", "dataset"]
    assert frame.groupby(["algo", "seed"])["step"].apply(list).to_dict() == {
        (algo, seed): [0, 50, 100, 150] for algo in ALGOS for seed in range(SEEDS)
    }
    assert set(frame["status"]) == {"complete"} and set(frame["variant"]) == {""} and set(frame["task"]) == {"Pendulum-v1"}
    assert set(frame["run.steps"]) == {STEPS} and set(frame["run.eval_every"]) == {EVAL_EVERY}
    assert set(frame["hp.batch_size"]) == {32} and set(frame["hp.hidden_sizes"]) == {(32, 32)}
    assert frame.loc[frame["algo"] == "qsm", "hp.alpha"].eq(50.0).all()
    assert frame.loc[frame["algo"] == "sac", "hp.alpha"].isna().all()  # QSM's alpha is no SAC hyperparameter


def test_load_has_every_algorithms_diagnostics_nan_where_it_has_none(plotted: Path) -> None:
    frame = load(plotted)
    trained = frame[frame["step"] > WARMUP]
    sac, qsm = trained[trained["algo"] == "sac"], trained[trained["algo"] == "qsm"]
    for column in ("alpha", "entropy", "alpha_loss"):
        assert sac[column].map(math.isfinite).all() and qsm[column].isna().all(), column
    assert qsm["q_score_norm"].map(math.isfinite).all() and sac["q_score_norm"].isna().all()
    assert trained[["critic_loss", "q_mean", "actor_loss"]].notna().all().all()


def test_load_columns_come_in_one_order_whatever_files_are_read(plotted: Path) -> None:
    """Each algorithm alone gives its columns in the order they have in the whole tree's frame."""
    columns = list(load(plotted).columns)
    diagnostics = columns[columns.index("sps") + 1 : columns.index("run.env")]
    assert diagnostics == sorted(diagnostics)
    for algo in ALGOS:
        alone = list(load(plotted / "Pendulum-v1" / algo).columns)
        assert alone == [column for column in columns if column in alone], algo


def test_pd_read_parquet_reads_a_plotted_results_dir(plotted: Path) -> None:
    """The figures are in _figures/, which pyarrow's dataset discovery skips: `qsmbench plot` put them in
    figures/ before, and pd.read_parquet(results) failed on the first PNG. Its schema is the first file's,
    so a diagnostic only other algorithms log is dropped: `load` keeps them."""
    frame = pd.read_parquet(plotted)
    assert (plotted / "_figures" / "summary.md").is_file() and not (plotted / "figures").exists()
    assert (plotted / "_README.md").is_file() and "results/" in REPO_RESULTS_README.read_text()
    assert len(frame) == len(ALGOS) * SEEDS * EVALUATIONS
    assert set(frame["algo"]) == set(ALGOS) and set(frame["seed"]) == set(range(SEEDS))
    assert {"step", "eval_return", "critic_loss"} <= set(frame.columns)


def test_load_skips_an_unreadable_file_with_a_warning(plotted: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(plotted, results)
    broken = results / "Pendulum-v1" / "td3" / "seed_0.parquet"
    broken.parent.mkdir()
    broken.write_bytes(b"not parquet")
    with pytest.warns(SkippedRunFileWarning, match="td3/seed_0.parquet"):
        frame = load(results)
    assert len(frame) == len(ALGOS) * SEEDS * EVALUATIONS


def test_load_skips_a_file_with_malformed_metadata_with_a_warning(plotted: Path, tmp_path: Path) -> None:
    """`seed: "zero"` in a file's metadata once made `load` raise a bare ValueError naming no file."""
    results = tmp_path / "results"
    shutil.copytree(plotted, results)
    bad = results / "Pendulum-v1" / "sac" / "seed_1.parquet"
    rewrite_metadata(bad, lambda document: document.update(seed="zero"))
    with pytest.warns(SkippedRunFileWarning, match="sac/seed_1.parquet: its qsmbench metadata has seed 'zero'"):
        frame = load(results)
    assert len(frame) == (len(ALGOS) * SEEDS - 1) * EVALUATIONS
    assert set(frame.loc[frame["algo"] == "sac", "seed"]) == {0}


def test_load_with_no_readable_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "seed_0.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="readable qsmbench run") as refused:
        load(tmp_path)
    assert "\n" not in str(refused.value)


def test_load_reads_schema_1_files(tmp_path: Path) -> None:
    write_schema_1_results(tmp_path)
    frame = load(tmp_path)
    assert len(frame) == 3 * 2 * 3 and set(frame["variant"]) == {""}
    offline = frame[frame["algo"] == "dql"]
    assert offline["eval_normalized_score"].notna().all() and frame.loc[frame["algo"] != "dql", "eval_normalized_score"].isna().all()
    assert set(offline["dataset"]) == {"qsmbench/pendulum/random-v0"} and set(frame["hp.batch_size"]) == {16}
