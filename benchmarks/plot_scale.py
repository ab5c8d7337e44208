"""Time `qsmbench plot` stages on a synthetic results tree of real run files.

    .venv/bin/python benchmarks/plot_scale.py --tasks 10 --algos 4 --seeds 10     # the 40-job paper grid
    .venv/bin/python benchmarks/plot_scale.py --tasks 75 --algos 4 --seeds 10     # 300 groups
    .venv/bin/python benchmarks/plot_scale.py --tasks 1 --algos 1 --seeds 3000    # 3,000 files in one group

Files are written with qsmbench's own writer, 101 evaluations each (1M steps every 10k), and plotted
with the default settings (2,000 resamples). Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from qsmbench.analysis.pipeline import analyse
from qsmbench.analysis.settings import FigureStyle, PlotSettings
from qsmbench.analysis.tables import write_tables
from qsmbench.runs.format import RunHeader, RunMetadata
from qsmbench.runs.layout import FIGURES_DIR, run_path
from qsmbench.runs.read import read_results
from qsmbench.runs.write import write_run

ALGOS = ("qsm", "dql", "sac", "td3")


def write_tree(root: Path, tasks: int, algos: int, seeds: int, evaluations: int) -> None:
    steps = np.arange(evaluations) * 10_000
    rng = np.random.default_rng(0)
    for task_index in range(tasks):
        task = f"dm_control/task{task_index}-run-v0"  # DeepMind Control: every task has a reference scale
        for algo in ALGOS[:algos]:
            header = RunHeader(algo=algo, task=task, env_id=task, run_config={"steps": int(steps[-1])})
            for seed in range(seeds):
                returns = np.linspace(0, 800, evaluations) * rng.uniform(0.5, 1.0) + rng.normal(0, 20, evaluations)
                curve = pd.DataFrame({"task": task, "algo": algo, "seed": seed, "step": steps, "eval_return": returns})
                write_run(run_path(root, task, algo, seed), curve, RunMetadata(header, seed, "complete"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--algos", type=int, default=4, choices=range(1, len(ALGOS) + 1))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--evaluations", type=int, default=101)
    parser.add_argument("--reps", type=int, default=PlotSettings.reps)
    parser.add_argument("--figures", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        write_tree(root, args.tasks, args.algos, args.seeds, args.evaluations)
        settings = PlotSettings(reps=args.reps)
        start = time.perf_counter()
        tree = read_results(root)
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        analysis = analyse(tree.runs, settings, lambda _message: None)
        analyse_s = time.perf_counter() - start
        write_tables(analysis.table, analysis.aggregates, analysis.protocol, analysis.warnings, root / FIGURES_DIR)
        draw_s = float("nan")
        if args.figures:
            from qsmbench.analysis.figures import draw_figures

            start = time.perf_counter()
            draw_figures(analysis, FigureStyle(), root / FIGURES_DIR, lambda _message: None)
            draw_s = time.perf_counter() - start
    files = args.tasks * args.algos * args.seeds
    print(
        f"{files} files, {args.tasks * args.algos} groups, {args.reps} resamples: read {read_s:.1f} s, "
        f"analyse (bootstrap) {analyse_s:.1f} s, draw {draw_s:.1f} s"
    )


if __name__ == "__main__":
    main()
