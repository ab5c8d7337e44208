"""Variant labels and run directories: one directory per label, and no run takes another label's files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import run_cli, small_overrides

from qsmbench.runs.checkpoint import check_belongs, resume_settings
from qsmbench.runs.layout import path_safe, run_dir
from qsmbench.runs.read import read_run
from qsmbench.runs.spec import make_spec
from qsmbench.training.prepare import resolve_device

OUT = Path("results")


@pytest.mark.parametrize("labels", [("α", "β"), ("a b", "a/b", "a-b", "a_b"), ("-", "α"), ("x", "x y", "x~y")])
def test_different_labels_get_different_directories(labels: tuple[str, ...]) -> None:
    directories = [run_dir(OUT, "Pendulum-v1", "sac", label) for label in labels]
    assert len(set(directories)) == len(labels)
    assert all(directory.parent == OUT / "Pendulum-v1" for directory in directories)


def test_a_path_safe_label_names_its_directory_unchanged() -> None:
    assert run_dir(OUT, "Pendulum-v1", "qsm", "alpha-120") == OUT / "Pendulum-v1" / "qsm.alpha-120"
    assert run_dir(OUT, "Pendulum-v1", "qsm", "alpha=120").name.startswith("qsm.alpha-120~")


@pytest.mark.parametrize("name", ["..", ".", "", "_figures", ".hidden", "../.."])
def test_no_task_name_leaves_the_results_directory_or_hides_from_pyarrow(name: str) -> None:
    directory = run_dir(OUT, name, "sac", name)
    assert directory.parent.parent == OUT and directory.parent.name not in (".", "..", "")
    assert not directory.parent.name.startswith((".", "_")) and "/" not in path_safe(name)


def tiny_run(out: Path, label: str, *extra: str) -> list[str]:
    sets = [*small_overrides("sac"), "warmup_steps=20", "batch_size=16"]
    return [
        "run", "--algo", "sac", "--env", "Pendulum-v1", "--seeds", "1", "--steps", "40", "--eval-every", "20",
        "--eval-episodes", "1", "--device", "cpu", "--quiet", "--out", str(out), "--name", label,
        *(item for override in sets for item in ("--set", override)), *extra,
    ]


def test_a_run_of_another_label_is_not_taken_for_this_one(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`--name α` then `--name β`: once one directory (`sac.-`), where β was told to overwrite α or resumed it."""
    for label in ("α", "β"):
        result = run_cli(tiny_run(tmp_path, label), capfd)
        assert result.returncode == 0, result.stderr
    for label in ("α", "β"):
        run = read_run(run_dir(tmp_path, "Pendulum-v1", "sac", label) / "seed_0.parquet")
        assert (run.status, run.variant) == ("complete", label)


def test_a_directory_shared_by_labels_before_is_not_taken_for_this_label(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Results of `--name α` in `sac.-`, as an older qsmbench wrote them: `--name -`, whose directory that is now,
    is told whose they are and touches nothing."""
    assert run_cli(tiny_run(tmp_path, "α"), capfd).returncode == 0
    shared = run_dir(tmp_path, "Pendulum-v1", "sac", "-")
    shutil.move(run_dir(tmp_path, "Pendulum-v1", "sac", "α"), shared)
    before = (shared / "seed_0.parquet").read_bytes()
    result = run_cli(tiny_run(tmp_path, "-"), capfd)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "labelled 'α'" in result.stderr and "seed_0.parquet" in result.stderr
    assert (shared / "seed_0.parquet").read_bytes() == before
    assert run_cli(tiny_run(tmp_path, "-", "--overwrite"), capfd).returncode == 0
    assert read_run(shared / "seed_0.parquet").variant == "-"


def test_a_checkpoint_of_another_label_is_refused() -> None:
    settings = {
        label: resume_settings(make_spec("sac", env="Pendulum-v1", variant=label), "Pendulum-v1", resolve_device("cpu"))
        for label in ("α", "β", "")
    }
    with pytest.raises(ValueError, match=r"variant α \(this run: β\)"):
        check_belongs(Path("checkpoint_seeds_0-0.pt"), {"settings": settings["α"]}, settings["β"])
    with pytest.raises(ValueError, match=r"variant unset \(this run: β\)"):  # written before labels were compared
        check_belongs(Path("checkpoint_seeds_0-0.pt"), {"settings": settings[""]}, settings["β"])
    assert "variant" not in settings[""]  # an unlabelled run's checkpoints from before still resume
