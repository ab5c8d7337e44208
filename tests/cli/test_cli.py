"""The `qsmbench` command, run as a user would: exit codes, messages, files on disk.

Runs, signals and the console script itself are tested in subprocesses; messages and exit codes of
short commands go through the same entry point in this process (`support.run_cli`), which saves the
~3 s start-up of each subprocess.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import typer
from support import CliResult, run_cli, with_default_sigint

from qsmbench.algorithms import ALGORITHMS
from qsmbench.algorithms.qsm import QSMConfig
from qsmbench.cli import app
from qsmbench.runs.format import RunHeader, RunMetadata
from qsmbench.runs.read import read_run
from qsmbench.runs.write import write_run

QSMBENCH = Path(sys.executable).parent / "qsmbench"
SHORT_TIMEOUT_S = 120  # start-up is ~3 s alone, but the 2-core machine may be shared
RUN_TIMEOUT_S = 300
E2E_SEEDS = 2
E2E_ARGS = [
    "run", "--algo", "td3", "--env", "Pendulum-v1", "--seeds", str(E2E_SEEDS), "--steps", "300",
    "--eval-every", "100", "--eval-episodes", "2", "--set", "warmup_steps=100", "--set", "batch_size=32", "--name", "",
]
E2E_COLUMNS = (
    "algo", "task", "seed", "step", "eval_return", "eval_return_std", "train_return", "train_episodes",
    "wall_time_s", "sps", "critic_loss", "q_mean",
)


def cli_env() -> dict[str, str]:
    """The caller's environment without MUJOCO_GL (which importing qsmbench.envs.environments may have set here)."""
    env = dict(os.environ)
    env.pop("MUJOCO_GL", None)
    return env


def qsmbench(args: list[str], cwd: Path, timeout: float = SHORT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run the console script to completion, capturing stdout and stderr."""
    assert QSMBENCH.exists(), f"console script not installed at {QSMBENCH}"
    return subprocess.run(
        [str(QSMBENCH), *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str] | CliResult, prefix: str = "qsmbench: error:") -> str:
    """Exit code 2, exactly one non-empty stderr line starting with `prefix`, and no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix), lines[0]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def seed_files(out: Path, env: str = "Pendulum-v1", algo: str = "td3", seeds: int = E2E_SEEDS) -> list[Path]:
    return [out / env / algo / f"seed_{k}.parquet" for k in range(seeds)]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--algo", "sak", "--env", "Pendulum-v1"], ["unknown algorithm", "'sak'", "did you mean 'sac'"]),
        (["--algo", "sac", "--env", "Hoper-v4"], ["unknown environment", "'Hoper-v4'", "Hopper-v4"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--seeds", "0"], ["--seeds", "at least 1"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--steps", "0"], ["--steps", "at least 1"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--set", "lr"], ["key=value", "'lr'"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--set", "batch_sise=64"], ["'batch_sise'", "'batch_size'"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--set", "batch_size=abc"], ["batch_size", "'abc'"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--seeds", "abc"], ["--seeds"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--update-every", "0"], ["--update-every", "at least 1"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--update-every", "-4"], ["--update-every", "at least 1"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--update-every", "2.5"], ["--update-every", "valid integer"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--action-repeat", "0"], ["--action-repeat", "from 1 to 100, got 0"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--action-repeat", "101"], ["--action-repeat", "from 1 to 100, got 101"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--action-repeat", "1.5"], ["--action-repeat", "valid integer"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--tf32", "--device", "cpu"], ["--tf32 changes CUDA matmuls only", "cpu"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--eval-workers", "-1"], ["--eval-workers must be non-negative"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--env-workers", "-2"], ["--env-workers must be non-negative"]),
        (["--algo", "sac", "--env", "Pendulum-v1", "--compile", "--device", "cpu"], ["--compile is for CUDA", "cpu"]),
        (["--algo", "qsm", "--env", "Pendulum-v1", "--steps", "10000"], ["--steps 10000", "warmup_steps 10000"]),
        (["--algo", "td3", "--env", "Pendulum-v1", "--steps", "300", "--set", "warmup_steps=500"],
         ["--steps 300", "warmup_steps 500", "nothing would be trained"]),
    ],
    ids=[
        "algo", "env", "seeds0", "steps0", "set-malformed", "set-key", "set-value", "seeds-abc", "update-every0",
        "update-every-negative", "update-every-float", "action-repeat0", "action-repeat101", "action-repeat-float", "tf32-cpu", "workers",
        "env-workers", "compile-cpu", "steps-at-warmup", "steps-below-warmup",
    ],
)
def test_bad_input_is_one_line_exit_2_and_touches_no_files(
    tmp_path: Path, args: list[str], fragments: list[str], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each kind of bad input: exit 2, one `qsmbench: error:` line saying what is wrong, no --out created.

    In process (`support.run_cli`): the console script itself is exercised by the tests below."""
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    result = run_cli(["run", *args, "--out", str(out), "--quiet"], capfd)
    line = assert_one_line_error(result)
    for fragment in fragments:
        assert fragment in line, line
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # nor anything in the working directory (e.g. ./results)


def test_bad_input_leaves_existing_run_files_untouched(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """An interrupted run on disk (which a valid command would redo) is left byte-identical by bad input."""
    out = tmp_path / "out"
    path = out / "Pendulum-v1" / "sac" / "seed_0.parquet"
    header = RunHeader(algo="sac", task="Pendulum-v1", env_id="Pendulum-v1")
    write_run(path, pd.DataFrame(), RunMetadata(header, seed=0, status="interrupted"))
    before = snapshot(out)
    result = run_cli(["run", "--algo", "sac", "--env", "Pendulum-v1", "--seeds", "1", "--set", "gamma=2", "--out", str(out)], capfd)
    assert "gamma" in assert_one_line_error(result)
    assert snapshot(out) == before


def test_out_that_is_a_file_is_bad_input(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`--out` naming an existing file is refused as bad input, and the file is left alone."""
    out = tmp_path / "results"
    out.write_text("not a directory")
    result = run_cli(["run", "--algo", "sac", "--env", "Pendulum-v1", "--out", str(out)], capfd)
    assert "not a directory" in assert_one_line_error(result)
    assert out.read_text() == "not a directory"


def test_a_run_whose_seeds_diverge_says_so_and_exits_3(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`--set critic_lr=1e30` used to finish with NaN everywhere, status complete and exit 0."""
    out = tmp_path / "r"
    args = ["run", "--algo", "td3", "--env", "Pendulum-v1", "--seeds", "2", "--steps", "200", "--eval-every", "100",
            "--eval-episodes", "1", "--set", "warmup_steps=50", "--set", "critic_lr=1e30", "--name", "", "--out", str(out), "--quiet"]
    result = run_cli(args, capfd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 3 and len(lines) == 1, result.stderr
    assert lines[0].startswith("qsmbench: 2 of 2 seeds diverged: seed 0 (non-finite "), lines[0]
    assert "last evaluation return per seed: diverged diverged" in result.stdout
    assert [read_run(path).status for path in seed_files(out, seeds=2)] == ["diverged", "diverged"]


def test_list_shows_algorithms_and_example_envs(capfd: pytest.CaptureFixture[str]) -> None:
    """`qsmbench list` exits 0 and names both algorithms and an example env."""
    result = run_cli(["list"], capfd)
    assert result.returncode == 0, result.stderr
    for word in ("sac", "td3", "Pendulum-v1", "batch_size", "policy_delay", "target_entropy"):
        assert word in result.stdout, word
    assert "Traceback" not in result.stderr


# Every algorithm's fields and defaults as `qsmbench list` printed them before the fields documented
# themselves (issue 22): run files store dataclasses.asdict of the config and resume compares it.
LISTED_DEFAULTS = {
    "qsm": [
        ("batch_size", "256"), ("gamma", "0.99"), ("tau", "0.005"), ("warmup_steps", "10000"),
        ("replay_capacity", "1000000"), ("hidden_sizes", "(512, 512)"), ("actor_hidden_sizes", "(512, 512)"),
        ("diffusion_steps", "5"), ("schedule", "'vp'"), ("actor_lr", "0.0003"), ("critic_lr", "0.0003"),
        ("exploration_noise", "0.1"), ("time_features", "64"), ("time_feature_std", "0.2"),
        ("time_hidden_sizes", "(128, 128)"), ("sampler_temperature", "1.0"), ("alpha", "50.0"),
        ("actor_lr_decay_steps", "2000000"), ("target_noise", "0.1"), ("score_critic", "'online'"),
        ("score_normalization", "'none'"), ("score_sigma_weight", "False"), ("eval_candidates", "1"),
        ("sampler_clip", "'every_step'"), ("actor_lr_schedule", "'cosine'"), ("network_init", "'xavier'"),
        ("state_encoder_sizes", "()"), ("time_final_activation", "False"),
    ],
    "qsm_flowrl": [
        ("batch_size", "256"), ("gamma", "0.99"), ("tau", "0.005"), ("warmup_steps", "5000"),
        ("replay_capacity", "1000000"), ("hidden_sizes", "(256, 256)"), ("actor_hidden_sizes", "(256, 256, 256)"),
        ("diffusion_steps", "20"), ("schedule", "'cosine_continuous'"), ("actor_lr", "0.0003"), ("critic_lr", "0.0003"),
        ("exploration_noise", "0.1"), ("time_features", "64"), ("time_feature_std", "0.2"),
        ("time_hidden_sizes", "(64, 64)"), ("sampler_temperature", "1.0"), ("alpha", "10.0"),
        ("actor_lr_decay_steps", "2000000"), ("target_noise", "0.0"), ("score_critic", "'target'"),
        ("score_normalization", "'batch_mean_abs'"), ("score_sigma_weight", "True"), ("eval_candidates", "10"),
        ("sampler_clip", "'denoised'"), ("actor_lr_schedule", "'constant'"), ("network_init", "'orthogonal'"),
        ("state_encoder_sizes", "(128, 128)"), ("time_final_activation", "True"),
    ],
    "dql": [
        ("batch_size", "256"), ("gamma", "0.99"), ("tau", "0.005"), ("warmup_steps", "10000"),
        ("replay_capacity", "1000000"), ("hidden_sizes", "(256, 256, 256)"),
        ("actor_hidden_sizes", "(256, 256, 256)"), ("diffusion_steps", "5"), ("schedule", "'vp'"),
        ("actor_lr", "0.0003"), ("critic_lr", "0.0003"), ("exploration_noise", "0.1"), ("time_features", "16"),
        ("time_hidden", "32"), ("eta", "1.0"), ("bc_weight", "1.0"), ("max_grad_norm", "9.0"),
        ("ema_decay", "0.995"), ("ema_every", "5"), ("ema_start", "1000"), ("explore_candidates", "1"),
        ("eval_candidates", "50"),
    ],
    "dipo": [
        ("batch_size", "256"), ("gamma", "0.99"), ("tau", "0.005"), ("warmup_steps", "10000"),
        ("replay_capacity", "1000000"), ("hidden_sizes", "(256, 256, 256)"),
        ("actor_hidden_sizes", "(256, 256, 256)"), ("diffusion_steps", "100"), ("schedule", "'cosine'"),
        ("actor_lr", "0.0003"), ("critic_lr", "0.0003"), ("exploration_noise", "0.0"), ("time_features", "32"),
        ("time_hidden", "256"), ("noise_ratio", "1.0"), ("max_grad_norm", "2.0"), ("actor_target_every", "1"),
        ("action_lr", "0.03"), ("action_gradient_steps", "20"), ("action_grad_ratio", "0.1"),
        ("keep_improved_actions", "False"),
    ],
    "qvpo": [
        ("batch_size", "256"), ("gamma", "0.99"), ("tau", "0.005"), ("warmup_steps", "10000"),
        ("replay_capacity", "1000000"), ("hidden_sizes", "(256, 256, 256)"),
        ("actor_hidden_sizes", "(256, 256, 256)"), ("diffusion_steps", "20"), ("schedule", "'cosine'"),
        ("actor_lr", "0.0001"), ("critic_lr", "0.0003"), ("exploration_noise", "0.0"), ("time_features", "32"),
        ("time_hidden", "256"), ("noise_ratio", "1.0"), ("max_grad_norm", "2.0"), ("actor_target_every", "1"),
        ("train_samples", "64"), ("behavior_samples", "4"), ("target_samples", "4"), ("eval_samples", "32"),
        ("entropy_weight", "0.02"), ("entropy_weight_min", "0.002"), ("entropy_decay_steps", "1000000"),
        ("entropy_samples", "10"),
    ],
    "dacer": [
        ("batch_size", "256"), ("gamma", "0.99"), ("tau", "0.005"), ("warmup_steps", "10000"),
        ("replay_capacity", "1000000"), ("hidden_sizes", "(256, 256, 256)"),
        ("actor_hidden_sizes", "(256, 256, 256)"), ("diffusion_steps", "20"), ("schedule", "'vp'"),
        ("actor_lr", "0.0001"), ("critic_lr", "0.0001"), ("exploration_noise", "0.0"), ("time_features", "16"),
        ("noise_scale", "0.15"), ("init_temperature", "3.0"), ("temperature_lr", "0.03"),
        ("target_entropy_per_dim", "-0.9"), ("entropy_every", "10000"), ("entropy_samples", "200"),
        ("mixture_components", "3"), ("em_iterations", "100"), ("policy_delay", "2"), ("reward_scale", "0.2"),
    ],
    "sdac": [
        ("batch_size", "256"), ("gamma", "0.99"), ("tau", "0.005"), ("warmup_steps", "10000"),
        ("replay_capacity", "1000000"), ("hidden_sizes", "(256, 256, 256)"),
        ("actor_hidden_sizes", "(256, 256, 256)"), ("diffusion_steps", "20"), ("schedule", "'scaled_linear'"),
        ("actor_lr", "0.0003"), ("critic_lr", "0.0003"), ("exploration_noise", "0.0"), ("time_features", "16"),
        ("initial_noise", "0.5"), ("actor_lr_end", "3e-05"), ("actor_lr_decay_start", "25000"),
        ("actor_lr_decay_steps", "50000"), ("noise_scale", "0.1"), ("candidates", "32"), ("init_temperature", "5.0"),
        ("temperature_lr", "0.007"), ("target_entropy_per_dim", "-0.9"), ("temperature_every", "250"),
        ("policy_delay", "2"), ("reward_scale", "0.2"), ("reverse_samples", "64"),
    ],
    "dpmd": [
        ("batch_size", "256"), ("gamma", "0.99"), ("tau", "0.005"), ("warmup_steps", "10000"),
        ("replay_capacity", "1000000"), ("hidden_sizes", "(256, 256, 256)"),
        ("actor_hidden_sizes", "(256, 256, 256)"), ("diffusion_steps", "20"), ("schedule", "'scaled_linear'"),
        ("actor_lr", "0.0003"), ("critic_lr", "0.0003"), ("exploration_noise", "0.0"), ("time_features", "16"),
        ("initial_noise", "0.5"), ("actor_lr_end", "3e-05"), ("actor_lr_decay_start", "25000"),
        ("actor_lr_decay_steps", "50000"), ("noise_scale", "0.1"), ("candidates", "32"), ("init_temperature", "5.0"),
        ("temperature_lr", "0.007"), ("target_entropy_per_dim", "-0.9"), ("temperature_every", "250"),
        ("policy_delay", "2"), ("reward_scale", "0.2"), ("repeat_critic_step", "True"), ("centred_weights", "False"),
    ],
    "sac": [
        ("batch_size", "256"), ("gamma", "0.99"), ("tau", "0.005"), ("warmup_steps", "10000"),
        ("replay_capacity", "1000000"), ("hidden_sizes", "(256, 256)"), ("actor_lr", "0.0003"),
        ("critic_lr", "0.0003"), ("temperature_lr", "0.0003"), ("init_temperature", "1.0"),
        ("target_entropy", "None"), ("log_std_min", "-5.0"), ("log_std_max", "2.0"),
    ],
    "td3": [
        ("batch_size", "256"), ("gamma", "0.99"), ("tau", "0.005"), ("warmup_steps", "10000"),
        ("replay_capacity", "1000000"), ("hidden_sizes", "(256, 256)"), ("actor_lr", "0.0003"),
        ("critic_lr", "0.0003"), ("exploration_noise", "0.1"), ("target_noise", "0.2"),
        ("target_noise_clip", "0.5"), ("policy_delay", "2"),
    ],
    "qsm_relax": [
        ("batch_size", "256"), ("gamma", "0.99"), ("tau", "0.005"), ("warmup_steps", "10000"),
        ("replay_capacity", "1000000"), ("hidden_sizes", "(256, 256, 256)"), ("actor_hidden_sizes", "(256, 256, 256)"),
        ("langevin_steps", "20"), ("particles", "64"), ("eval_particles", "64"), ("eval_restarts", "16"),
        ("critic_lr", "0.0001"), ("score_lr", "0.0001"), ("score_lr_end", "None"), ("score_lr_decay_start", "25000"),
        ("score_lr_decay_steps", "50000"), ("exploration_noise", "0.0"),
    ],
}


def cells(line: str) -> list[str]:
    """The stripped cells of one row of a rich table (its header row too), [] for a line that is no row."""
    bar = line[:1]
    return [cell.strip() for cell in line.split(bar)[1:-1]] if bar in ("│", "┃") else []


def test_list_prints_the_same_fields_and_defaults_as_before(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`qsmbench list` without --explain: each algorithm's heading, then a two-column table of its fields
    and defaults, in the order and with the values it printed before they documented themselves."""
    monkeypatch.setenv("COLUMNS", "200")
    result = run_cli(["list"], capfd)
    assert result.returncode == 0, result.stderr
    listed: dict[str, list[tuple[str, str]]] = {}
    for line in result.stdout.splitlines():
        if line.split(":")[0] in ALGORITHMS:
            algo = line.split(":")[0]
            listed[algo] = []
        elif row := cells(line):
            assert len(row) == 2, line
            listed[algo].append((row[0], row[1]))
    assert listed == LISTED_DEFAULTS
    for name, rows in LISTED_DEFAULTS.items():  # what run files store
        assert list(dataclasses.asdict(ALGORITHMS[name].config_cls()).items()) == [(k, eval(v)) for k, v in rows]


def test_list_explain_shows_every_field_with_its_default_meaning_and_source(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`qsmbench list --explain qsm`: one table row per QSMConfig field, in field order, with its default,
    its help and its source."""
    monkeypatch.setenv("COLUMNS", "1000")  # one line per row
    result = run_cli(["list", "--explain", "qsm"], capfd)
    assert result.returncode == 0, result.stderr
    rows = [row for row in map(cells, result.stdout.splitlines()) if row]
    assert rows[0] == ["name", "default", "meaning", "source"]
    expected = [
        [f.name, repr(getattr(QSMConfig(), f.name)), f.metadata["help"], f.metadata["source"]]
        for f in dataclasses.fields(QSMConfig)
    ]
    assert rows[1:] == expected
    assert all(meaning and source for _, _, meaning, source in expected)
    assert "M_q" in dict((row[0], row[2]) for row in rows)["alpha"]


def test_list_explain_of_an_unknown_algorithm_is_one_line_exit_2(capfd: pytest.CaptureFixture[str]) -> None:
    line = assert_one_line_error(run_cli(["list", "--explain", "qsn"], capfd))
    assert "unknown algorithm 'qsn'" in line and "did you mean 'qsm'" in line, line


def test_version_prints_the_installed_version(capfd: pytest.CaptureFixture[str]) -> None:
    result = run_cli(["--version"], capfd)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"qsmbench {importlib.metadata.version('qsmbench')}\n"


COMMANDS = sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_fits_80_columns_and_shows_every_word_whole(
    command: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`COLUMNS=80 qsmbench [COMMAND] --help`: no line wider than 80 columns, and every word of the command's
    help and of each option's help appears whole (rich cut `dm_control/cheetah-run-v0` to `dm_control/cheetah-…`
    in a 21-column help column before the boolean options lost their `--no-` twins)."""
    monkeypatch.setenv("COLUMNS", "80")
    result = run_cli([*([command] if command else []), "--help"], capfd)
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout
    group = typer.main.get_command(app)
    shown = group.commands[command] if command else group
    texts = [shown.help or "", *(getattr(param, "help", None) or "" for param in shown.params)]
    words = [word.replace("\\[", "[") for text in texts for word in text.split()]  # rich markup escapes, shown bare
    cut = [word for word in words if word not in result.stdout]
    assert not cut, f"words not shown whole: {cut}\n{result.stdout}"


@pytest.fixture(scope="module")
def e2e_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short real TD3 run on Pendulum-v1 (2 seeds, 300 steps), shared by the end-to-end tests."""
    root = tmp_path_factory.mktemp("e2e")
    out = root / "results"
    result = qsmbench([*E2E_ARGS, "--out", str(out), "--quiet"], cwd=root, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "last evaluation return per seed" in result.stdout
    return out


def test_e2e_writes_one_file_per_seed(e2e_out: Path) -> None:
    """Exactly seed_0.parquet and seed_1.parquet under <out>/Pendulum-v1/td3, their policies and the directory's
    lock and claim files."""
    run_dir = e2e_out / "Pendulum-v1" / "td3"
    names = [".qsmbench.claim", ".qsmbench.lock", "_policies", "seed_0.parquet", "seed_1.parquet"]
    assert sorted(p.name for p in run_dir.iterdir()) == names
    assert sorted(p.name for p in (run_dir / "_policies").iterdir()) == ["seed_0.pt", "seed_1.pt"]
    assert sorted(p.name for p in e2e_out.iterdir()) == ["Pendulum-v1"]


def test_e2e_rows_on_the_evaluation_grid(e2e_out: Path) -> None:
    """One row per evaluation at steps 0, 100, 200, 300, with every documented column."""
    for seed, path in enumerate(seed_files(e2e_out)):
        frame = read_run(path).curve
        assert frame["step"].tolist() == [0, 100, 200, 300]
        for column in E2E_COLUMNS:
            assert column in frame.columns, column
        assert set(frame["algo"]) == {"td3"}
        assert set(frame["task"]) == {"Pendulum-v1"}
        assert set(frame["seed"]) == {seed}
        assert all(math.isfinite(v) and v < 0 for v in frame["eval_return"])  # Pendulum rewards are <= 0
        assert all(math.isfinite(v) and v >= 0 for v in frame["eval_return_std"])
        # Pendulum episodes last 200 steps: one finished training episode per seed, counted at step 200.
        assert frame["train_episodes"].tolist() == [0, 0, 1, 0]
        assert math.isfinite(frame["train_return"][2])
        assert frame["wall_time_s"].is_monotonic_increasing
        assert math.isnan(frame["sps"][0]) and all(v > 0 for v in frame["sps"][1:])
        # warmup_steps=100: no updates before step 100, updates (and diagnostics) after it.
        assert math.isnan(frame["critic_loss"][1]) and math.isnan(frame["q_mean"][1])
        assert all(math.isfinite(frame[c][i]) for c in ("critic_loss", "q_mean") for i in (2, 3))


def test_e2e_metadata(e2e_out: Path) -> None:
    """The metadata holds status, both configs with the overrides, and provenance."""
    for seed, path in enumerate(seed_files(e2e_out)):
        metadata = read_run(path).metadata
        header, provenance = metadata.header, metadata.header.provenance
        assert metadata.status == "complete" and metadata.error is None and metadata.seed == seed
        assert (header.algo, header.task, header.env_id, header.dataset) == ("td3", "Pendulum-v1", "Pendulum-v1", None)
        assert header.run_config["seeds"] == 2
        assert header.run_config["steps"] == 300
        assert header.run_config["eval_every"] == 100
        assert header.run_config["tf32"] is False  # full float32 unless asked: recorded with the run
        assert header.algo_config["batch_size"] == 32
        assert header.algo_config["warmup_steps"] == 100
        assert header.algo_config["policy_delay"] == 2  # a default is recorded too
        for package in ("torch", "gymnasium", "mujoco"):
            assert provenance["versions"][package], package
        assert provenance["versions"]["torch"] == torch.__version__
        if torch.cuda.is_available():
            assert provenance["device"].startswith("cuda")
        else:
            assert provenance["device"] == "cpu"
        assert isinstance(provenance["cpu"], str) and provenance["cpu"]
        started = datetime.datetime.fromisoformat(provenance["start_time"])
        assert abs((datetime.datetime.now(datetime.UTC) - started).total_seconds()) < 3600


def test_rerun_without_overwrite_refuses_and_keeps_files(e2e_out: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Repeating a complete run without --overwrite exits 2 and leaves its files byte-identical."""
    before = snapshot(e2e_out)
    result = run_cli([*E2E_ARGS, "--out", str(e2e_out), "--quiet"], capfd)
    line = assert_one_line_error(result)
    assert "finished run (complete)" in line and "--overwrite" in line
    assert snapshot(e2e_out) == before


def test_rerun_with_overwrite_succeeds(e2e_out: Path, tmp_path: Path) -> None:
    """With --overwrite the same run is redone and written anew (on a copy of the results)."""
    out = tmp_path / "results"
    shutil.copytree(e2e_out, out)
    old = read_run(seed_files(out)[0]).metadata.header.provenance
    time.sleep(1.1)  # start_time has one-second resolution
    result = qsmbench([*E2E_ARGS, "--out", str(out), "--quiet", "--overwrite"], cwd=tmp_path, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    for path in seed_files(out):
        run = read_run(path)
        assert run.status == "complete"
        assert run.curve["step"].tolist() == [0, 100, 200, 300]
        assert run.metadata.header.provenance["start_time"] > old["start_time"]


def wait_or_dump_stacks(process: subprocess.Popen[bytes], stderr: Path, timeout: float = 30) -> int:
    """The exit code; if the process does not end in time, fail with the Python stacks it prints on SIGUSR2."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR2)
        time.sleep(2)
        pytest.fail(f"still running {timeout:.0f} s after the signal; its stacks:\n{stderr.read_text()}")


def test_sigusr2_prints_the_stacks_and_the_run_goes_on(tmp_path: Path) -> None:
    """For a run that looks stuck on a cluster node: `kill -USR2 <pid>` shows where it is."""
    out = tmp_path / "r"
    args = [
        "run", "--algo", "td3", "--env", "Pendulum-v1", "--seeds", "1", "--steps", "100000", "--eval-every", "100",
        "--eval-episodes", "1", "--set", "warmup_steps=100", "--name", "", "--out", str(out), "--quiet",
    ]
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            [str(QSMBENCH), *args], cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            deadline = time.monotonic() + 90
            while not seed_files(out, seeds=1)[0].exists():
                assert process.poll() is None and time.monotonic() < deadline, "no evaluation written"
                time.sleep(0.1)
            process.send_signal(signal.SIGUSR2)
            time.sleep(2)
            assert process.poll() is None, "SIGUSR2 must not stop the run"
        finally:
            process.kill()
            process.wait(timeout=30)
    dump = (tmp_path / "stderr.txt").read_text()
    assert "Current thread" in dump and "qsmbench" in dump, dump


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 75)])
def test_ctrl_c_or_sigterm_exits_and_keeps_every_evaluation(tmp_path: Path, stop: int, code: int) -> None:
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler's stop) mid-run: its own exit code, one line naming the cause,
    every seed file readable and marked interrupted, and a checkpoint to resume from.

    The warm-up ends at the second evaluation, so the signal lands among gradient updates, not random actions.
    """
    out = tmp_path / "results"
    args = [
        "run", "--algo", "td3", "--env", "Pendulum-v1", "--seeds", str(E2E_SEEDS), "--steps", "100000",
        "--eval-every", "100", "--eval-episodes", "2", "--set", "warmup_steps=100", "--set", "batch_size=32",
        "--name", "", "--out", str(out), "--quiet",
    ]
    first = seed_files(out)[0]
    with open(tmp_path / "stdout.txt", "w") as stdout, open(tmp_path / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            with_default_sigint([str(QSMBENCH), *args]), cwd=tmp_path, env=cli_env(), stdout=stdout, stderr=stderr
        )
        try:
            rows_seen = 0
            deadline = time.monotonic() + 90
            while rows_seen < 2:
                assert process.poll() is None, f"qsmbench ended early with code {process.returncode}"
                assert time.monotonic() < deadline, "no second evaluation written within 90 s"
                if first.exists():
                    rows_seen = len(read_run(first).curve)
                time.sleep(0.1)
            process.send_signal(stop)
            exit_code = wait_or_dump_stacks(process, tmp_path / "stderr.txt")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    assert exit_code == code
    err = (tmp_path / "stderr.txt").read_text()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"stopped by {signal.Signals(stop).name}" in lines[0], err
    assert "Traceback" not in err
    counts = []
    for seed, path in enumerate(seed_files(out)):
        run = read_run(path)
        frame = run.curve
        assert run.status == "interrupted" and run.seed == seed
        assert len(frame) >= rows_seen
        assert frame["step"].tolist() == [100 * i for i in range(len(frame))]
        counts.append(len(frame))
    assert len(set(counts)) == 1  # every seed holds the same completed evaluations
    names = [".qsmbench.claim", ".qsmbench.lock", f"checkpoint_seeds_0-{E2E_SEEDS - 1}.pt"]
    names += [f"seed_{k}.parquet" for k in range(E2E_SEEDS)]
    assert sorted(p.name for p in first.parent.iterdir()) == names
