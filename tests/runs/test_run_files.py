"""Run files (qsmbench.runs: layout, format, write, read): the typed format, both schemas, paths, atomic rewrites, overwrite protection."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qsmbench.core.errors import ConfigError, RunFileError
from qsmbench.runs.format import METADATA_KEY, SCHEMA_VERSION, EvalRow, RunHeader, RunMetadata
from qsmbench.runs.layout import run_path
from qsmbench.runs.read import read_results, read_run, read_status
from qsmbench.runs.write import RunFiles, check_can_write, write_run

HEADER = RunHeader(algo="sac", task="Pendulum-v1", env_id="Pendulum-v1", run_config={"steps": 200})


def make_rows(seed: int, steps: list[int], task: str = "Pendulum-v1") -> list[EvalRow]:
    """Evaluation rows as the trainer writes them (the first has no diagnostics yet)."""
    return [
        EvalRow(
            task=task, algo="sac", seed=seed, step=step, eval_return=-1000.0 + 10 * i + seed, eval_return_std=5.0,
            train_return=float("nan") if i == 0 else -900.0 + i, train_episodes=i, wall_time_s=1.5 * i,
            sps=float("nan") if i == 0 else 250.0, diagnostics={"critic_loss": 0.5 / i} if i else {},
        )
        for i, step in enumerate(steps)
    ]


def write_rows(path: Path, rows: list[EvalRow], status: str = "running", header: RunHeader = HEADER) -> None:
    write_run(path, pd.DataFrame([row.columns() for row in rows]), RunMetadata(header, rows[0].seed, status))


def test_run_files_round_trip_rows_and_metadata(tmp_path: Path) -> None:
    """Each seed's own rows and the shared header come back as written, with the seed and status."""
    seeds = [3, 7]
    header = RunHeader(
        algo="td3", task="Pendulum-v1", env_id="Pendulum-v1", run_config={"seeds": 2},
        algo_config={"batch_size": 32, "hidden_sizes": (64, 64)}, provenance={"hostname": "box", "device": "cpu"},
    )
    paths = [run_path(tmp_path, "Pendulum-v1", "td3", seed) for seed in seeds]
    files = RunFiles(paths, seeds, header)
    rows = {seed: make_rows(seed, [0, 100, 200]) for seed in seeds}
    for i in range(3):
        files.append([rows[seed][i] for seed in seeds])
    files.write("running")
    files.write("failed", error="Traceback: boom")
    for path, seed in zip(paths, seeds):
        run = read_run(path)
        assert (run.task, run.algo, run.seed, run.status) == ("Pendulum-v1", "td3", seed, "failed")
        assert run.metadata.error == "Traceback: boom"
        assert run.metadata.header.algo_config == {"batch_size": 32, "hidden_sizes": [64, 64]}
        assert run.metadata.header.provenance == {"hostname": "box", "device": "cpu"}
        assert run.curve["step"].tolist() == [0, 100, 200]
        assert run.curve["seed"].tolist() == [seed] * 3
        assert run.curve["task"].tolist() == ["Pendulum-v1"] * 3
        assert run.curve["eval_return"].tolist() == pytest.approx([-1000.0 + seed, -990.0 + seed, -980.0 + seed])
        assert math.isnan(run.curve["critic_loss"][0]) and run.curve["critic_loss"][1] == pytest.approx(0.5)
        assert "eval_normalized_score" not in run.curve.columns
        document = json.loads(pq.read_schema(path).metadata[METADATA_KEY])
        assert document["schema_version"] == SCHEMA_VERSION == 2
        assert document["env_id"] == "Pendulum-v1" and "env" not in document  # one name per meaning
        assert document["hostname"] == "box"  # provenance stays at the top level, as in schema 1


def test_offline_rows_carry_the_normalised_score() -> None:
    row = EvalRow("d/x-v0", "dql", 0, 0, -100.0, 0.0, float("nan"), 0, 0.0, float("nan"), eval_normalized_score=42.0)
    assert row.columns()["eval_normalized_score"] == 42.0 and row.columns()["task"] == "d/x-v0"


def test_schema_1_files_written_by_the_previous_version_still_read(results_v1: Path) -> None:
    """Schema 1 named both the task (rows) and the evaluation env (metadata) `env`; both are mapped."""
    online = read_run(results_v1 / "Pendulum-v1" / "sac" / "seed_1.parquet")
    assert (online.task, online.algo, online.seed, online.status) == ("Pendulum-v1", "sac", 1, "complete")
    assert online.metadata.header.env_id == "Pendulum-v1" and online.metadata.header.ref_scores is None
    assert "task" in online.curve.columns and "env" not in online.curve.columns
    assert online.curve["step"].tolist() == [0, 100, 200]
    assert online.metadata.header.provenance["versions"]["torch"]
    assert online.metadata.header.run_config["update_every"] == 1  # not stored then: every run updated every step
    assert online.metadata.header.run_config["action_repeat"] == 1  # nor this: every action was one simulator step
    offline = read_run(results_v1 / "qsmbench-pendulum-random-v0" / "dql" / "seed_0.parquet")
    header = offline.metadata.header
    assert (offline.task, header.env_id, header.dataset) == ("qsmbench/pendulum/random-v0", "Pendulum-v1", header.task)
    assert header.ref_scores == (-1500.0, -150.0)
    assert set(offline.curve["task"]) == {"qsmbench/pendulum/random-v0"}
    assert "eval_normalized_score" in offline.curve.columns


def test_read_results_reads_a_tree_and_names_what_it_skips(tmp_path: Path) -> None:
    """Usable files at any depth; foreign, empty and duplicate files are skipped with their reason."""
    write_rows(run_path(tmp_path, "Pendulum-v1", "sac", 0), make_rows(0, [0, 100]), "complete")
    write_rows(run_path(tmp_path / "nested" / "deeper", "Pendulum-v1", "sac", 1), make_rows(1, [0, 100]))
    write_rows(run_path(tmp_path / "copy", "Pendulum-v1", "sac", 0), make_rows(0, [0]))  # same task, algo, seed
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "foreign.parquet")
    write_run(tmp_path / "empty" / "seed_5.parquet", pd.DataFrame(), RunMetadata(HEADER, 5, "interrupted"))
    tree = read_results(tmp_path)
    assert sorted((run.seed, run.status) for run in tree.runs) == [(0, "complete"), (1, "running")]
    reasons = " | ".join(tree.warnings)
    assert "foreign.parquet: not a qsmbench run file" in reasons
    assert "seed_5.parquet: no evaluations yet" in reasons
    assert "Pendulum-v1 / sac seed 0 is in several files" in reasons
    assert len(tree.skipped) == 3


def test_of_several_files_of_one_seed_the_best_is_used_and_named(tmp_path: Path) -> None:
    """An untrained copy whose path sorts first must not replace the trained run: complete wins, then the
    furthest step evaluated, then the file written last; one warning line per choice says which and why."""
    trained, untrained = run_path(tmp_path / "b", "Pendulum-v1", "sac", 0), run_path(tmp_path / "a", "Pendulum-v1", "sac", 0)
    write_rows(trained, make_rows(0, [0, 100, 200]), "complete")
    write_rows(untrained, make_rows(0, [0]), "running")
    further, shorter = run_path(tmp_path / "c", "Pendulum-v1", "sac", 1), run_path(tmp_path / "d", "Pendulum-v1", "sac", 1)
    write_rows(further, make_rows(1, [0, 100]), "interrupted")
    write_rows(shorter, make_rows(1, [0]), "failed")
    older, newer = run_path(tmp_path / "f", "Pendulum-v1", "sac", 2), run_path(tmp_path / "e", "Pendulum-v1", "sac", 2)
    write_rows(older, make_rows(2, [0, 100]), "running")
    write_rows(newer, make_rows(2, [0, 100]), "running")
    os.utime(older, (1_000_000_000, 1_000_000_000))
    variant = run_path(tmp_path / "g", "Pendulum-v1", "sac.alpha-1", 0)
    write_rows(variant, make_rows(0, [0]), "running", dataclasses.replace(HEADER, variant="alpha=1"))
    tree = read_results(tmp_path)
    assert sorted(str(run.path) for run in tree.runs) == sorted(map(str, [trained, further, newer, variant]))
    assert sorted(tree.skipped) == sorted([untrained, shorter, older])
    assert [w for w in tree.warnings if "several files" in w] == [
        f"Pendulum-v1 / sac seed 0 is in several files: used {trained} (complete, evaluated to step 200) because it "
        f"is complete; skipped {untrained} (running, evaluated to step 0)",
        f"Pendulum-v1 / sac seed 1 is in several files: used {further} (interrupted, evaluated to step 100) because "
        f"it evaluated more steps; skipped {shorter} (failed, evaluated to step 0)",
        f"Pendulum-v1 / sac seed 2 is in several files: used {newer} (running, evaluated to step 100) because it was "
        f"written last; skipped {older} (running, evaluated to step 100)",
    ]


def test_a_file_without_a_variant_reads_as_none(tmp_path: Path) -> None:
    """Files written before variants existed have no `variant` key: they read as "", and a variant round-trips."""
    path = run_path(tmp_path, "Pendulum-v1", "sac", 0)
    write_rows(path, make_rows(0, [0]), "complete", dataclasses.replace(HEADER, variant="alpha=120"))
    assert read_run(path).variant == "alpha=120"
    stored = pq.read_table(path)
    document = json.loads(stored.schema.metadata[b"qsmbench"])
    del document["variant"]
    pq.write_table(stored.replace_schema_metadata({b"qsmbench": json.dumps(document).encode()}), path)
    assert read_run(path).variant == "" and read_run(path).metadata.header.provenance == HEADER.provenance


def test_rows_read_back_one_per_step_in_step_order(tmp_path: Path) -> None:
    """Rows out of order or repeated (e.g. appended by hand) read back sorted, the last one of a step winning."""
    path = run_path(tmp_path, "Pendulum-v1", "sac", 0)
    rows = make_rows(0, [200, 0, 100, 200])
    write_rows(path, rows)
    curve = read_run(path).curve
    assert curve["step"].tolist() == [0, 100, 200]
    assert curve["eval_return"].tolist() == [rows[1].eval_return, rows[2].eval_return, rows[3].eval_return]


@pytest.mark.parametrize(
    ("document", "fragment"),
    [({"status": "done", "algo": "a", "task": "t", "env_id": "e", "seed": 0}, "no valid status"),
     ({"status": "complete", "algo": "a", "seed": 0}, "lacks task, env_id"),
     (["not", "an", "object"], "not a JSON object")],
    ids=["status", "keys", "type"],
)
def test_malformed_metadata_is_a_run_file_error(tmp_path: Path, document: Any, fragment: str) -> None:
    path = tmp_path / "seed_0.parquet"
    table = pa.table({"step": [0]}).replace_schema_metadata({METADATA_KEY: json.dumps(document).encode()})
    pq.write_table(table, path)
    with pytest.raises(RunFileError, match=fragment):
        read_run(path)


def test_read_run_rejects_parquet_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pd.DataFrame({"x": [1, 2]}).to_parquet(path)
    with pytest.raises(RunFileError, match="not a qsmbench run file"):
        read_run(path)
    assert read_status(path) == "unreadable"


def test_run_path_makes_dm_control_ids_one_directory_level(tmp_path: Path) -> None:
    """<out>/<task>/<algo>/seed_<k>.parquet, with 'dm_control/cheetah-run-v0' as one path component."""
    assert run_path(tmp_path, "Pendulum-v1", "td3", 4) == tmp_path / "Pendulum-v1" / "td3" / "seed_4.parquet"
    path = run_path(str(tmp_path), "dm_control/cheetah-run-v0", "sac", 1)
    assert path.relative_to(tmp_path).parts == ("dm_control-cheetah-run-v0", "sac", "seed_1.parquet")


def test_rewrites_leave_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "seed_0.parquet"
    write_rows(path, make_rows(0, [0]))
    write_rows(path, make_rows(0, [0, 100]), "complete")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed_0.parquet"]
    assert read_run(path).curve["step"].tolist() == [0, 100] and read_status(path) == "complete"


def crash_mid_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pyarrow write a few bytes and then fail, like a crash or a full disk during the write."""

    def failing_write_table(table: Any, where: Any, *args: Any, **kwargs: Any) -> None:
        where.write(b"PAR1 partial")
        raise OSError("simulated crash mid-write")

    monkeypatch.setattr(pq, "write_table", failing_write_table)


def test_failed_write_keeps_previous_file_intact_and_leaves_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "seed_0.parquet"
    write_rows(path, make_rows(0, [0, 100]))
    before = path.read_bytes()
    crash_mid_write(monkeypatch)
    with pytest.raises(OSError, match="simulated crash"):
        write_rows(path, make_rows(0, [0, 100, 200]), "complete")
    monkeypatch.undo()
    assert path.read_bytes() == before and read_status(path) == "running"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed_0.parquet"]


def test_first_write_failure_leaves_no_run_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "seed_0.parquet"
    crash_mid_write(monkeypatch)
    with pytest.raises(OSError):
        write_rows(path, make_rows(0, [0]))
    assert not path.exists() and read_status(path) is None


def test_check_can_write_refuses_a_complete_run_among_others(tmp_path: Path) -> None:
    """One complete seed is enough to refuse; the error names the file and --overwrite."""
    paths = [tmp_path / f"seed_{k}.parquet" for k in range(3)]
    write_rows(paths[0], make_rows(0, [0]), "interrupted")
    write_rows(paths[2], make_rows(2, [0]), "complete")
    with pytest.raises(ConfigError, match=r"seed_2.parquet holds a finished run \(complete\); pass --overwrite"):
        check_can_write(paths, overwrite=False)
    check_can_write(paths, overwrite=True)


@pytest.mark.parametrize("status", ["interrupted", "running", "failed"])
def test_check_can_write_allows_incomplete_runs_and_missing_files(tmp_path: Path, status: str) -> None:
    path = tmp_path / "seed_0.parquet"
    write_rows(path, make_rows(0, [0]), status)
    assert read_status(path) == status
    check_can_write([path, tmp_path / "a" / "seed_1.parquet"], overwrite=False)


def test_check_can_write_refuses_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "seed_0.parquet"
    path.write_bytes(b"this is not parquet at all")
    assert read_status(path) == "unreadable"
    with pytest.raises(ConfigError, match="not a readable qsmbench run file"):
        check_can_write([path], overwrite=False)
    assert path.read_bytes() == b"this is not parquet at all"  # checking never writes


def test_a_run_stopped_before_its_first_evaluation_leaves_readable_files(tmp_path: Path) -> None:
    paths = [tmp_path / "seed_0.parquet"]
    RunFiles(paths, [0], HEADER).write("interrupted")
    run = read_run(paths[0])
    assert run.curve.empty and run.status == "interrupted" and run.seed == 0
