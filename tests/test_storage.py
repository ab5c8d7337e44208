"""Run files (qsmbench.storage): Parquet round trip, paths, atomic rewrites and overwrite protection."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from qsmbench.config import ConfigError
from qsmbench.storage import (
    SCHEMA_VERSION,
    RunFiles,
    check_can_write,
    read_run,
    read_status,
    run_path,
    write_run,
)


def make_rows(seed: int, steps: list[int]) -> list[dict[str, Any]]:
    """Evaluation rows as the trainer writes them (the first has no diagnostics yet)."""
    rows: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        row: dict[str, Any] = {
            "algo": "sac",
            "env": "Pendulum-v1",
            "seed": seed,
            "step": step,
            "eval_return": -1000.0 + 10 * i + seed,
            "eval_return_std": 5.0,
            "train_return": float("nan") if i == 0 else -900.0 + i,
            "train_episodes": i,
            "wall_time_s": 1.5 * i,
            "sps": float("nan") if i == 0 else 250.0,
        }
        if i > 0:
            row["critic_loss"] = 0.5 / i
        rows.append(row)
    return rows


def test_write_read_round_trip(tmp_path: Path) -> None:
    """Rows and the metadata document come back as written, with the schema version added."""
    path = tmp_path / "Pendulum-v1" / "sac" / "seed_0.parquet"  # parent dirs are created
    rows = make_rows(0, [0, 100, 200])
    metadata = {"status": "complete", "algo_config": {"batch_size": 32, "hidden_sizes": (64, 64)}, "error": None}
    write_run(path, rows, metadata)
    frame, document = read_run(path)
    assert list(frame["step"]) == [0, 100, 200]
    assert list(frame["seed"]) == [0, 0, 0]
    assert list(frame["algo"]) == ["sac"] * 3
    assert frame["eval_return"].tolist() == pytest.approx([r["eval_return"] for r in rows])
    assert math.isnan(frame["train_return"][0]) and frame["train_return"][1] == pytest.approx(-899.0)
    assert math.isnan(frame["critic_loss"][0]) and frame["critic_loss"][2] == pytest.approx(0.25)
    assert frame["train_episodes"].tolist() == [0, 1, 2]
    assert document["status"] == "complete"
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["algo_config"] == {"batch_size": 32, "hidden_sizes": [64, 64]}
    assert document["error"] is None
    assert read_status(path) == "complete"


def test_read_run_rejects_parquet_without_metadata(tmp_path: Path) -> None:
    """A Parquet file not written by qsmbench is refused with a clear error."""
    path = tmp_path / "other.parquet"
    pd.DataFrame({"x": [1, 2]}).to_parquet(path)
    with pytest.raises(ValueError, match="not a qsmbench run file"):
        read_run(path)
    assert read_status(path) == "unreadable"


def test_run_path_layout(tmp_path: Path) -> None:
    """<out>/<env>/<algo>/seed_<k>.parquet."""
    assert run_path(tmp_path, "Pendulum-v1", "td3", 4) == tmp_path / "Pendulum-v1" / "td3" / "seed_4.parquet"
    assert run_path(str(tmp_path), "Hopper-v4", "sac", 0) == tmp_path / "Hopper-v4" / "sac" / "seed_0.parquet"


def test_run_path_makes_dm_control_ids_one_directory_level(tmp_path: Path) -> None:
    """'dm_control/cheetah-run-v0' becomes a single path component without a slash."""
    path = run_path(tmp_path, "dm_control/cheetah-run-v0", "sac", 1)
    relative = path.relative_to(tmp_path)
    assert len(relative.parts) == 3
    env_dir = relative.parts[0]
    assert "/" not in env_dir and "\\" not in env_dir
    assert env_dir == "dm_control-cheetah-run-v0"
    assert relative.parts[1:] == ("sac", "seed_1.parquet")
    write_run(path, make_rows(1, [0]), {"status": "running"})
    assert [p.name for p in tmp_path.iterdir()] == ["dm_control-cheetah-run-v0"]


def test_write_run_leaves_no_temporary_files(tmp_path: Path) -> None:
    """After write_run (first write and rewrite) the directory holds only the run file."""
    path = tmp_path / "seed_0.parquet"
    write_run(path, make_rows(0, [0]), {"status": "running"})
    write_run(path, make_rows(0, [0, 100]), {"status": "complete"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed_0.parquet"]
    frame, document = read_run(path)
    assert list(frame["step"]) == [0, 100]
    assert document["status"] == "complete"


def crash_mid_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pyarrow write a few bytes and then fail, like a crash or a full disk during the write."""

    def failing_write_table(table: Any, where: Any, *args: Any, **kwargs: Any) -> None:
        where.write(b"PAR1 partial")
        raise OSError("simulated crash mid-write")

    monkeypatch.setattr(pq, "write_table", failing_write_table)


def test_failed_write_keeps_previous_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the Parquet write fails, the earlier file is byte-identical and still readable."""
    path = tmp_path / "seed_0.parquet"
    write_run(path, make_rows(0, [0, 100]), {"status": "running"})
    before = path.read_bytes()
    crash_mid_write(monkeypatch)
    with pytest.raises(OSError, match="simulated crash"):
        write_run(path, make_rows(0, [0, 100, 200]), {"status": "complete"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    frame, document = read_run(path)
    assert list(frame["step"]) == [0, 100]
    assert document["status"] == "running"


def test_failed_write_removes_its_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write cleans up its partial temporary file instead of leaving debris next to the runs."""
    path = tmp_path / "seed_0.parquet"
    write_run(path, make_rows(0, [0]), {"status": "running"})
    crash_mid_write(monkeypatch)
    with pytest.raises(OSError, match="simulated crash"):
        write_run(path, make_rows(0, [0, 100]), {"status": "running"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed_0.parquet"]


def test_first_write_failure_leaves_no_run_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails before any file existed does not leave a half-written run file behind."""
    path = tmp_path / "seed_0.parquet"
    crash_mid_write(monkeypatch)
    with pytest.raises(OSError):
        write_run(path, make_rows(0, [0]), {"status": "running"})
    assert not path.exists()
    assert read_status(path) is None


def write_status(path: Path, status: str) -> None:
    write_run(path, make_rows(0, [0]), {"status": status})


def test_check_can_write_refuses_a_complete_run(tmp_path: Path) -> None:
    """A complete run is protected unless overwrite=True; the error names the file and --overwrite."""
    path = tmp_path / "seed_0.parquet"
    write_status(path, "complete")
    with pytest.raises(ConfigError) as info:
        check_can_write([path], overwrite=False)
    assert str(path) in str(info.value) and "--overwrite" in str(info.value)
    check_can_write([path], overwrite=True)


def test_check_can_write_refuses_if_any_seed_is_complete(tmp_path: Path) -> None:
    """One complete seed among missing or interrupted ones is enough to refuse."""
    paths = [tmp_path / f"seed_{k}.parquet" for k in range(3)]
    write_status(paths[0], "interrupted")
    write_status(paths[2], "complete")
    with pytest.raises(ConfigError, match="seed_2"):
        check_can_write(paths, overwrite=False)


@pytest.mark.parametrize("status", ["interrupted", "running", "failed"])
def test_check_can_write_allows_incomplete_runs(tmp_path: Path, status: str) -> None:
    """Interrupted, running and failed runs are simply redone, without --overwrite."""
    path = tmp_path / "seed_0.parquet"
    write_status(path, status)
    assert read_status(path) == status
    check_can_write([path], overwrite=False)


def test_check_can_write_allows_missing_files(tmp_path: Path) -> None:
    """Nothing on disk yet: nothing to protect."""
    check_can_write([tmp_path / "a" / "seed_0.parquet", tmp_path / "seed_1.parquet"], overwrite=False)


def test_check_can_write_refuses_garbage_file(tmp_path: Path) -> None:
    """A non-Parquet file where a run file belongs is not silently replaced."""
    path = tmp_path / "seed_0.parquet"
    path.write_bytes(b"this is not parquet at all")
    assert read_status(path) == "unreadable"
    with pytest.raises(ConfigError, match="not a readable qsmbench run file"):
        check_can_write([path], overwrite=False)
    check_can_write([path], overwrite=True)
    assert path.read_bytes() == b"this is not parquet at all"  # checking never writes


def test_run_files_write_one_file_per_seed(tmp_path: Path) -> None:
    """RunFiles writes each seed's own rows to its own file, with the seed and status in the metadata."""
    seeds = [3, 7]
    paths = [run_path(tmp_path, "Pendulum-v1", "td3", seed) for seed in seeds]
    files = RunFiles(paths, seeds, {"algo": "td3", "env": "Pendulum-v1", "run_config": {"seeds": 2}})
    for step in (0, 100):
        files.append([make_rows(seed, [step])[0] for seed in seeds])
    files.write("running")
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["seed_3.parquet", "seed_7.parquet"]
    for path, seed in zip(paths, seeds):
        frame, document = read_run(path)
        assert document["seed"] == seed
        assert document["status"] == "running"
        assert document["error"] is None
        assert document["algo"] == "td3" and document["run_config"] == {"seeds": 2}
        assert frame["seed"].tolist() == [seed, seed]
        assert frame["step"].tolist() == [0, 100]
    files.append([make_rows(seed, [200])[0] for seed in seeds])
    files.write("failed", error="Traceback: boom")
    for path, seed in zip(paths, seeds):
        frame, document = read_run(path)
        assert document["status"] == "failed" and document["error"] == "Traceback: boom"
        assert document["seed"] == seed
        assert frame["step"].tolist() == [0, 100, 200]


def test_run_files_write_with_no_rows_yet(tmp_path: Path) -> None:
    """A run stopped before its first evaluation still leaves readable files with its status."""
    paths = [tmp_path / "seed_0.parquet"]
    RunFiles(paths, [0], {"algo": "sac"}).write("interrupted")
    frame, document = read_run(paths[0])
    assert len(frame) == 0
    assert document["status"] == "interrupted" and document["seed"] == 0
