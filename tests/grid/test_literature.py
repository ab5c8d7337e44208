"""The literature's protocols as grids: CGPO's and QVPO's MuJoCo tables (literature-mujoco) and FlowRL's DeepMind
Control suite (flowrl-dmc), each with every published QSM by name; their smoke scales run and plot end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from qsmbench.analysis.settings import OPTIMISTIC
from qsmbench.core.errors import ConfigError
from qsmbench.grid.files import load_grid
from qsmbench.grid.local import run_grid
from qsmbench.grid.plan import plan
from qsmbench.runs.read import read_run

QSMS = ["qsm", "qsm_flowrl", "qsm_relax"]
OTHERS = ["sac", "td3", "dipo", "qvpo", "dacer", "sdac", "dpmd", "dql"]
LITERATURE_TASKS = ["Hopper-v4", "Walker2d-v4", "HalfCheetah-v4", "Ant-v4", "Humanoid-v4"]


def test_literature_mujoco_is_cgpos_protocol_with_every_qsm(tmp_path: Path) -> None:
    grid = load_grid("literature-mujoco")
    jobs = plan(grid, tmp_path)
    assert [(job.task, job.algo) for job in jobs] == [(task, algo) for task in LITERATURE_TASKS for algo in [*QSMS, *OTHERS]]
    for job in jobs:
        run = job.spec.protocol
        assert (run.seeds, run.steps, run.eval_every, run.eval_episodes) == (5, 1_000_000, 10_000, 10)
        assert job.spec.config == job.spec.algorithm.config_cls()  # each at its source's defaults
    assert (grid.plot.score, grid.plot.published) == ("best", True)
    assert all("v3" in task.source and "v4 here" in task.source for task in grid.tasks)  # the version difference said


def test_flowrl_dmc_is_flowrls_suite_at_its_action_repeat(tmp_path: Path) -> None:
    grid = load_grid("flowrl-dmc")
    tasks = [task.env for task in grid.tasks]
    assert len(tasks) == 28 and all(task.startswith("dm_control/") for task in tasks)
    assert {"dm_control/dog-run-v0", "dm_control/humanoid-walk-v0", "dm_control/hopper-hop-v0"} <= set(tasks)
    jobs = plan(grid, tmp_path)
    assert len(jobs) == 28 * len([*QSMS, *OTHERS])
    for job in jobs:
        run = job.spec.protocol
        assert (run.seeds, run.steps, run.action_repeat, run.eval_every) == (5, 500_000, 2, 5_000)  # 1M frames
    flowrl = next(job.spec.config for job in jobs if job.algo == "qsm_flowrl")
    assert (flowrl.batch_size, flowrl.hidden_sizes, flowrl.actor_hidden_sizes) == (512, (512, 512, 512), (512, 512, 512))
    assert grid.plot.published and grid.plot.score == "final"


@pytest.mark.parametrize(("name", "algos", "labelled"), [("literature-mujoco", QSMS, True), ("flowrl-dmc", QSMS[:2], False)])
def test_the_smoke_scale_trains_and_plots_with_the_published_numbers(
    name: str, algos: list[str], labelled: bool, tmp_path: Path
) -> None:
    """Every job's seeds complete; the plot compares with the shipped published numbers and says that none
    matches a 300-step budget; best-during-training scores are labelled optimistic."""
    grid = load_grid(name, "smoke")
    assert list(grid.algorithms) == algos
    out = tmp_path / "results"
    report = run_grid(grid, out, device="cpu", quiet=True)
    files = sorted(out.glob("*/*/seed_*.parquet"))
    assert len(files) == 2 * len(algos) and all(read_run(path).status == "complete" for path in files)
    assert any("none of the published numbers match" in warning for warning in report.warnings), report.warnings
    summary = (report.out_dir / "summary.md").read_text()
    assert (OPTIMISTIC in summary) == labelled


PER_TASK_REPEAT = """\
out = "unused"
algorithms = ["td3"]
seeds = 1
steps = 500_000
action_repeat = 2
eval_every = 10_000
eval_episodes = 1

[[tasks]]
env = "dm_control/cartpole-swingup-v0"
confidence = "smoke"
source = "DrQ-style protocols repeat actions 8 times on cartpole"
action_repeat = {repeat}

[[tasks]]
env = "dm_control/cheetah-run-v0"
confidence = "smoke"
source = "the grid's repeat"

[scales.test]
"""


def test_a_task_sets_its_own_action_repeat(tmp_path: Path) -> None:
    """DeepMind Control protocols often repeat actions per task (DrQ: 8 on cartpole, 4 on cheetah): a task's own
    `action_repeat` replaces the grid's on its jobs only; a bad one is one line naming the task."""
    path = tmp_path / "grid.toml"
    path.write_text(PER_TASK_REPEAT.format(repeat=8))
    repeats = {spec.protocol.task: spec.protocol.action_repeat for spec in load_grid(str(path), "test").specs}
    assert repeats == {"dm_control/cartpole-swingup-v0": 8, "dm_control/cheetah-run-v0": 2}
    path.write_text(PER_TASK_REPEAT.format(repeat=0))
    with pytest.raises(ConfigError, match=r"task 1.*--action-repeat must be an integer from 1"):
        load_grid(str(path), "test")
