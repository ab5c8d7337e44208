"""`qsmbench plot --published`: published numbers beside ours, only where task, metric and budget match."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.figure import Figure
from support import run_cli
from test_plot import CHEETAH, HOPPER, STEPS, write_seed

from qsmbench.analysis import figures
from qsmbench.analysis.report import plot_results
from qsmbench.analysis.settings import FigureStyle, PlotSettings
from qsmbench.core.config import from_table
from qsmbench.runs.read import read_results

HEADER = "task,algorithm,metric,steps,seeds,mean,std,source,table,implementation,note"  # typed here independently
BUDGET = STEPS[-1]  # the final step of every task below
OPTIMISTIC = "best during training (optimistic)"
TD3_V1 = f"Hopper-v1,TD3,final,{BUDGET},10,2500.5,300.2,Fujimoto et al. 2018,Table 1,sfujim/TD3,evaluation return"
TD3_V1_LABEL = "TD3, Fujimoto et al. 2018 Table 1 (Hopper-v1), 10 seeds"
HEADING = "## Published numbers (matched: task, metric, budget)"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """qsm and sac on Hopper-v4 and Cheetah Run, 3 seeds each, evaluated up to step 8000."""
    root = tmp_path_factory.mktemp("results")
    for task in (HOPPER, CHEETAH):
        for algo in ("qsm", "sac"):
            for seed in range(3):
                write_seed(root, task, algo, seed)
    return root


def published_csv(folder: Path, *rows: str, header: str = HEADER) -> Path:
    path = folder / "published.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def plot(results: Path, out: Path, **settings: Any) -> tuple[str, list[str]]:
    """summary.md and the warnings of a plot of `results` into `out`."""
    report = plot_results(results, PlotSettings(reps=50, normalize="reference", **settings), out_dir=out)
    return (out / "summary.md").read_text(), report.warnings


def learning_curves(results: Path, **settings: Any) -> Figure:
    from qsmbench.analysis.pipeline import analyse

    analysis = analyse(read_results(results).runs, PlotSettings(reps=50, **settings), lambda _message: None)
    kept = figures.make_figures(analysis, FigureStyle())
    for name, figure in kept.items():
        if name != "learning_curves":
            plt.close(figure)
    return kept["learning_curves"]


def markers(figure: Figure) -> dict[str, list[tuple[float, float]]]:
    """Panel title -> (x, y) of each published marker on it."""
    return {
        ax.get_title(): [(float(line.get_xdata()[0]), float(line.get_ydata()[0])) for line in ax.lines if line.get_gid() == "published"]
        for ax in figure.axes
        if ax.get_visible()
    }


def legend(figure: Figure) -> list[str]:
    return [text.get_text() for text in figure.legends[0].get_texts()]


def section(markdown: str) -> list[str]:
    """The lines of summary.md's published section, heading included; [] without one."""
    lines = markdown.splitlines()
    if HEADING not in lines:
        return []
    start = lines.index(HEADING)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def test_a_matching_row_is_in_the_tables_and_a_marker_on_its_own_panel(results: Path, tmp_path: Path) -> None:
    """A Hopper-v1 row, metric final, at the task's budget: shown beside our Hopper-v4 runs (the version suffix
    ignored, and named), in summary.md, published.csv and as a marker at (budget, mean) on the Hopper panel only."""
    path = published_csv(tmp_path, TD3_V1)
    markdown, warnings = plot(results, tmp_path / "out", published_file=str(path))
    lines = section(markdown)
    assert f"| {HOPPER} | {TD3_V1_LABEL} | 10 | n/a | 2500.5 \u00b1 300.2 |" in lines
    assert any(line.startswith(f"| {HOPPER} | qsm | 3 |") for line in lines)  # ours beside it
    assert not any(line.startswith(f"| {CHEETAH} |") for line in lines)
    assert not [line for line in lines if "matched nothing" in line] and not [w for w in warnings if "published" in w]
    table = pd.read_csv(tmp_path / "out" / "published.csv")
    assert list(table.columns) == ["task", "published_task", *HEADER.split(",")[1:]]
    assert table.to_dict("records") == [
        {"task": HOPPER, "published_task": "Hopper-v1", "algorithm": "TD3", "metric": "final", "steps": BUDGET, "seeds": 10,
         "mean": 2500.5, "std": 300.2, "source": "Fujimoto et al. 2018", "table": "Table 1", "implementation": "sfujim/TD3",
         "note": "evaluation return"}
    ]
    assert "published" not in set(pd.read_csv(tmp_path / "out" / "summary.csv").scope)  # summary.csv keeps its schema
    figure = learning_curves(results, published_file=str(path))
    assert markers(figure) == {"Hopper": [(BUDGET, 2500.5)], "Cheetah Run": []}
    assert legend(figure) == ["QSM", "SAC", TD3_V1_LABEL]
    plt.close(figure)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (TD3_V1.replace(",final,", ",best,"), "1 by metric best, not --score final"),
        (TD3_V1.replace(f",{BUDGET},", f",{BUDGET - 1000},"), "1 at a budget other than the task's final step"),
        (TD3_V1.replace("Hopper-v1", "Walker2d-v4"), "1 on no plotted environment"),
        (TD3_V1.replace("Hopper-v1", "dm_control/cheetah-run-v1"), "1 on no plotted environment"),  # DMC ids match whole
    ],
    ids=["metric", "budget", "task", "dmc-version"],
)
def test_a_row_differing_in_metric_budget_or_task_is_shown_nowhere(results: Path, tmp_path: Path, row: str, reason: str) -> None:
    path = published_csv(tmp_path, row)
    markdown, warnings = plot(results, tmp_path / "out", published_file=str(path))
    lines = section(markdown)
    assert "None matched." in lines and not [line for line in lines if "TD3" in line], lines
    assert f"1 of 1 row of {path} matched nothing: {reason}." in lines
    assert [w for w in warnings if w.startswith("--published: none of the published numbers match") and reason in w]
    assert pd.read_csv(tmp_path / "out" / "published.csv").empty
    figure = learning_curves(results, published_file=str(path))
    assert markers(figure) == {"Hopper": [], "Cheetah Run": []} and legend(figure) == ["QSM", "SAC"]
    plt.close(figure)


def test_under_score_best_only_best_rows_match_and_say_optimistic(results: Path, tmp_path: Path) -> None:
    path = published_csv(tmp_path, TD3_V1, TD3_V1.replace(",final,", ",best,").replace("2500.5", "3100.0"))
    markdown, _ = plot(results, tmp_path / "out", published_file=str(path), score="best")
    lines = section(markdown)
    label = f"{TD3_V1_LABEL}, {OPTIMISTIC}"
    assert f"| {HOPPER} | {label} | 10 | n/a | 3100.0 \u00b1 300.2 |" in lines
    assert not [line for line in lines if "2500.5" in line]
    assert f"1 of 2 rows of {path} matched nothing: 1 by metric final, not --score best." in lines
    figure = learning_curves(results, published_file=str(path), score="best")
    assert markers(figure)["Hopper"] == [(BUDGET, 3100.0)] and legend(figure)[-1] == label
    plt.close(figure)


def test_without_published_nothing_changes(results: Path, tmp_path: Path) -> None:
    """The default plot has no published section, file, marker or legend entry; --published adds its section and
    changes nothing else in summary.md."""
    plain, _ = plot(results, tmp_path / "plain")
    off, _ = plot(results, tmp_path / "off", published=False)
    assert plain == off and not section(plain) and not (tmp_path / "plain" / "published.csv").exists()
    shown, _ = plot(results, tmp_path / "shown", published_file=str(published_csv(tmp_path, TD3_V1)))
    added = section(shown)
    assert added and shown.replace("\n".join(added) + "\n", "") == plain
    figure = learning_curves(results)
    assert markers(figure) == {"Hopper": [], "Cheetah Run": []} and legend(figure) == ["QSM", "SAC"]
    plt.close(figure)


def test_the_shipped_file_has_the_header_and_the_flag_reads_it(results: Path, tmp_path: Path, capfd: Any) -> None:
    shipped = importlib.resources.files("qsmbench").joinpath("data/published.csv").read_text(encoding="utf-8")
    assert shipped.splitlines()[0] == HEADER
    out = tmp_path / "out"
    result = run_cli(["plot", str(results), "--out", str(out), "--reps", "20", "--published"], capfd)
    assert result.returncode == 0, result.stderr
    assert "summary.md, summary.csv, published.csv, 10 figure files" in result.stdout
    if len(shipped.splitlines()) == 1:  # no rows yet
        assert "qsmbench: warning: --published: qsmbench/data/published.csv has no rows" in result.stderr.splitlines()
    assert HEADING in (out / "summary.md").read_text()
    assert from_table(PlotSettings, {"published": True}).published  # grid key plot.published


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([TD3_V1.replace(",final,", ",last,")], HEADER, "line 2: metric must be one of final, best, got 'last'"),
        ([TD3_V1, TD3_V1.replace(",300.2,", ",-1,")], HEADER, "line 3: std must be empty or at least 0, got '-1'"),
        ([TD3_V1.replace(",300.2,", ",")], HEADER.replace(",std", ""), "line 1: missing column 'std'"),
        ([TD3_V1.replace(f",{BUDGET},", ",1e6,")], HEADER, "line 2: steps must be a positive whole number, got '1e6'"),
        ([TD3_V1.replace("2500.5", "nan")], HEADER, "line 2: mean must be a finite number, got 'nan'"),
    ],
    ids=["metric", "negative-std", "missing-column", "steps", "mean"],
)
def test_a_malformed_file_is_a_one_line_error(
    results: Path, tmp_path: Path, capfd: Any, rows: list[str], header: str, message: str
) -> None:
    path = published_csv(tmp_path, *rows, header=header)
    result = run_cli(["plot", str(results), "--out", str(tmp_path / "out"), "--published-file", str(path)], capfd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("qsmbench: error:") and f"{path}, {message}" in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
