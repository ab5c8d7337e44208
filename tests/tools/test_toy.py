"""The multimodality demo's parts: the four-optimum bandit, and the figure pipeline end to end."""

from __future__ import annotations

import inspect
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import matplotlib.image
import matplotlib.pyplot
import numpy as np
import pytest
import typer

from qsmbench.cli import app
from qsmbench.core.messages import plural
from qsmbench.envs.environments import make_env
from qsmbench.runs.read import read_run
from qsmbench.tools.toy import (
    BANDIT_ID,
    MODE_SHARE,
    OPTIMA,
    bandit_reward,
    changed_settings,
    draw_samples,
    mass_near_optima,
    policy_samples,
    register_bandit,
    run_toy,
    toy_grid,
    toy_specs,
    train_on_bandit,
)


def test_bandit_reward_has_four_equal_optima() -> None:
    at_optima = bandit_reward(OPTIMA)
    np.testing.assert_allclose(at_optima, at_optima[0], rtol=1e-9)
    assert at_optima[0] > 1.0 - 1e-3
    assert bandit_reward(np.zeros(2)) < 0.3 * at_optima[0]
    assert bandit_reward(np.array([1.0, 1.0])) < 0.1 * at_optima[0]


def test_bandit_episodes_are_one_step_and_terminal() -> None:
    register_bandit()
    env = make_env(BANDIT_ID)
    obs, _ = env.reset(seed=0)
    _, reward, terminated, truncated, _ = env.step(np.array([0.5, -0.5], dtype=np.float32))
    assert obs.shape == (1,) and terminated and not truncated
    assert reward == float(bandit_reward(np.array([0.5, -0.5])))


def test_mass_near_optima_counts_each_optimum() -> None:
    samples = np.concatenate([np.tile(OPTIMA[0], (30, 1)), np.tile(OPTIMA[2], (10, 1)), np.zeros((60, 2))])
    np.testing.assert_allclose(mass_near_optima(samples), [0.3, 0.0, 0.1, 0.0])


def test_the_demo_settings_are_data_in_its_grid_file() -> None:
    """QSM's bandit settings (alpha 1, T 10, actor lr 1e-3) come from data/toy.toml, not from code."""
    specs = {spec.algo: spec for spec in toy_specs(toy_grid())}
    assert list(specs) == ["qsm", "dql", "dipo", "qvpo", "dacer", "sdac", "dpmd", "sac", "td3"]
    qsm = specs["qsm"].config
    assert (qsm.alpha, qsm.diffusion_steps, qsm.actor_lr, qsm.warmup_steps) == (1.0, 10, 1e-3, 500)
    assert changed_settings(specs["qsm"]) == "diffusion_steps=10, actor_lr=0.001, alpha=1"
    assert all(spec.execution.device == "cpu" and spec.protocol.steps == 4000 for spec in specs.values())
    short = toy_specs(toy_grid(), ["td3"], seeds=3, steps=200, out="elsewhere")[0]
    assert (short.protocol.seeds, short.protocol.steps, short.execution.out, short.config.warmup_steps) == (3, 200, "elsewhere", 100)
    unlisted = toy_specs(toy_grid("smoke"), ["td3"], steps=50)[0]  # td3's default warm-up is 10,000 steps
    assert (unlisted.protocol.steps, unlisted.config.warmup_steps) == (50, 25)


def test_docs_and_toy_help_state_the_demo_defaults() -> None:
    """The account of `qsmbench toy` in docs/training.md and its --help give the defaults of data/toy.toml
    (the README, where the account lived, said `qsm,sac,td3` once the grid file also ran Diffusion-QL)."""
    grid = toy_grid()
    page = " ".join((Path(__file__).parents[2] / "docs" / "training.md").read_text().split())
    said = (
        f"`qsmbench toy` trains each algorithm (default `{','.join(grid.algorithms)}`, {plural(grid.protocol.seeds, 'seed')} "
        f"each) for {grid.protocol.steps:,} one-step episodes"
    )
    assert said in page
    samples = inspect.signature(run_toy).parameters["samples"].default
    assert f"then plots {samples:,} action samples" in page and f"into `{grid.out}/multimodal.png`" in page
    options = {param.name: param.help for param in typer.main.get_command(app).commands["toy"].params}
    assert "data/toy.toml" in options["algos"] and f"(default {grid.protocol.seeds})" in options["seeds"]
    assert f"(default {grid.protocol.steps})" in options["steps"] and f"(default {grid.out})" in options["out"]


def test_panel_titles_of_the_demo_stay_apart() -> None:
    """Every demo algorithm's title (its changed settings are long for DIPO, QVPO and SDAC) ends before the
    next panel's in its row begins, and above the panels of the row above: one line each overran the next
    panel's. Nine panels are a 3 x 3 square (in one row they made a figure 36 inches wide)."""
    specs = toy_specs(toy_grid())
    fig = draw_samples({spec: np.zeros((1, 10, 2)) for spec in specs})
    renderer = fig.canvas.get_renderer()
    spans = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    panels = [ax.get_window_extent(renderer) for ax in fig.axes]
    matplotlib.pyplot.close(fig)
    assert len({round(span.y0) for span in panels}) == 3 and len({round(span.x0) for span in panels}) == 3
    rows = [[span for span in spans if round(span.y0) == y] for y in sorted({round(span.y0) for span in spans})]
    assert all(left.x1 < right.x0 for row in rows for left, right in pairwise(row)), [(s.x0, s.x1) for s in spans]
    for title in spans:  # below the panels of the row above
        assert all(title.y1 < panel.y0 for panel in panels if panel.y0 > title.y0), (title.y1, [p.y0 for p in panels])


def test_toy_trains_each_algorithm_and_draws_the_figure(tmp_path: Path) -> None:
    path = run_toy(toy_specs(toy_grid("smoke"), out=str(tmp_path)), samples=50, quiet=True)
    assert path == tmp_path / "multimodal.png"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 2 * image.shape[0] * 0.8  # two panels side by side
    for algo in ("qsm", "sac"):
        run = read_run(tmp_path / "qsmbench-MultimodalBandit-v0" / algo / "seed_1.parquet")
        assert run.status == "complete"
        assert run.curve["train_episodes"].iloc[-1] == 200  # every bandit episode is one step
    evaluated = subprocess.run(  # a fresh process, where only qsmbench can register the bandit
        [str(Path(sys.executable).parent / "qsmbench"), "eval", str(tmp_path), "--episodes", "2", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert evaluated.returncode == 0 and "qsmbench-MultimodalBandit-v0" not in evaluated.stderr, evaluated.stderr
    assert evaluated.stdout.count("qsmbench/MultimodalBandit-v0") >= 2, evaluated.stdout


@pytest.mark.slow
def test_qsm_keeps_several_optima_of_the_bandit(tmp_path: Path) -> None:
    """The paper's multimodality claim, with the demo's own settings: at least two optima each hold
    more than twice the share a uniform policy puts near one (4.9%). One seed keeps the suite within
    CI time; seeds 0 and 1 both put 15-19% near every optimum (docs/benchmarks.md)."""
    (spec,) = toy_specs(toy_grid(), ["qsm"], seeds=1, out=str(tmp_path))
    samples = policy_samples(train_on_bandit(spec, quiet=True), 1000)
    for seed_samples in samples:
        mass = mass_near_optima(seed_samples)
        assert (mass > MODE_SHARE).sum() >= 2, f"share near each optimum: {np.round(mass, 3)}"
