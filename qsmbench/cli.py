"""The `qsmbench` command line: parse, validate, call. No training logic lives here.

Bad input ends with one line on stderr and exit code 2, before any result file is touched. A run
stopped by SIGTERM or SIGUSR1 (what schedulers send before a kill or a time limit) writes a checkpoint
and ends with exit code 75 (EX_TEMPFAIL: run the same command again to go on); Ctrl-C writes one too
and ends with 130; either signal outside training ends with 143 or 130. Every completed evaluation is
on disk then, the files marked `interrupted`. A run that finishes with some seeds diverged ends with 3.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import re
import importlib.metadata
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qsmbench.algorithms import ALGORITHMS, lookup, resolve
from qsmbench.bench import append_results
from qsmbench.bench import bench as measure
from qsmbench.plot_settings import FigureStyle, PlotSettings
from qsmbench.config import DEFAULT_CHECKPOINT_EVERY, DEFAULT_TRACK_EVERY, explain, variant_label
from qsmbench.errors import ConfigError
from qsmbench.envs import EXAMPLE_ENV_IDS, check_env_id
from qsmbench.grid import load_grid
from qsmbench.plan import format_job_list, format_plan, plan, select
from qsmbench.plotting import PlotReport, plot_results
from qsmbench.runs.layout import FIGURES_DIR, POLICY_DIR, run_dir
from qsmbench.policies import load_agent
from qsmbench.policy_eval import PolicyReturns, evaluate_policies, find_policies, parse_seeds
from qsmbench.progress import make_reporter
from qsmbench.ray_grid import run_on_ray
from qsmbench.reproduce import plot_grid, plot_if_complete, run_grid, train_jobs
from qsmbench.spec import make_spec
from qsmbench.messages import plural
from qsmbench.stopping import Stopped
from qsmbench.toy import register_bandit, run_toy, toy_grid, toy_specs
from qsmbench.training.loop import train
from qsmbench.training.prepare import check_compile_device, prepare, resolve_device
from qsmbench.video import check_video_support, choose_renderer, record_videos

EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 3, 130, 143
EXIT_CHECKPOINTED = 75  # stopped by SIGTERM or SIGUSR1 with a checkpoint written: requeue and run again


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGUSR1 outside training, raised in the main thread: handled like Ctrl-C."""


def raise_terminated(_signum: int, _frame: object) -> None:
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the final writes short
    raise Terminated


def interrupted(interrupt: KeyboardInterrupt, kept: str) -> typer.Exit:
    """One line saying what stopped us and what was kept, and the exit code that tells the cases apart."""
    if isinstance(interrupt, Stopped):
        print(
            f"qsmbench: stopped by {interrupt.signal_name} at step {interrupt.step:,} with a checkpoint written; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return typer.Exit(EXIT_INTERRUPTED if interrupt.signum == signal.SIGINT else EXIT_CHECKPOINTED)
    cause = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
    print(f"qsmbench: {cause}; {kept}", file=sys.stderr)
    return typer.Exit(EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Seed-batched benchmarks of QSM, SAC, TD3 and Diffusion-QL on continuous control.",
)


def print_version(asked: bool) -> None:
    """`qsmbench --version`: the installed distribution's version, from its metadata (the one pip reports)."""
    if asked:
        print(f"qsmbench {importlib.metadata.version('qsmbench')}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool, typer.Option("--version", callback=print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Options of `qsmbench` itself, before the command."""


@app.command()
def run(
    algo: Annotated[str, typer.Option(help="Algorithm: see `qsmbench list`.")],
    env: Annotated[
        str | None, typer.Option(help="Gymnasium id to train in, e.g. Hopper-v4 or dm_control/cheetah-run-v0.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Minari dataset id to train from offline, e.g. mujoco/hopper/medium-v0.")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Number of independent seeds, trained as one batch.")] = 5,
    seed_start: Annotated[int, typer.Option(help="First seed; seeds are seed-start .. seed-start+seeds-1.")] = 0,
    steps: Annotated[int, typer.Option(help="Environment steps per seed (gradient steps with --dataset).")] = 1_000_000,
    eval_every: Annotated[int, typer.Option(help="Steps between evaluations.")] = 10_000,
    eval_episodes: Annotated[int, typer.Option(help="Evaluation episodes per seed.")] = 10,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    out: Annotated[Path, typer.Option(help="Results directory.")] = Path("results"),
    set_: Annotated[
        list[str], typer.Option("--set", help="Override a hyperparameter, key=value (repeatable).")
    ] = [],  # noqa: B006 - Typer reads the default, it is never mutated
    checkpoint_every: Annotated[
        int, typer.Option(help="Steps between checkpoints (one is also written on SIGINT, SIGTERM, SIGUSR1).")
    ] = DEFAULT_CHECKPOINT_EVERY,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace complete runs already in --out; start over instead of resuming.")
    ] = False,
    tf32: Annotated[
        bool,
        typer.Option("--tf32", help="CUDA only: float32 matmuls in TF32, faster and less exact (recorded in the run)."),
    ] = False,
    compile: Annotated[
        bool, typer.Option("--compile", help="CUDA only: compile the networks with torch.compile (recorded in the run).")
    ] = False,
    env_workers: Annotated[
        int,
        typer.Option(help="Processes stepping the training envs (slow simulators, many cores); 0: in this process."),
    ] = 0,
    eval_workers: Annotated[
        int,
        typer.Option(help="Processes stepping the evaluation envs (slow simulators, many cores); 0: in this process."),
    ] = 0,
    name: Annotated[
        str | None,
        typer.Option(
            help="Variant label (e.g. alpha-120): its own directory and group in plot. Default: the --set "
            "values; '' for none."
        ),
    ] = None,
    track: Annotated[
        str | None,
        typer.Option(help="Also log to tensorboard or wandb (needs the track extra)."),
    ] = None,
    track_every: Annotated[
        int, typer.Option(help="With --track: steps between the logged means of the update diagnostics.")
    ] = DEFAULT_TRACK_EVERY,
    quiet: Annotated[bool, typer.Option("--quiet", help="Plain log lines instead of the live display.")] = False,
) -> None:
    """Train SEEDS seeds of ALGO on ENV (or offline on DATASET); write one Parquet learning curve per seed.

    An interrupted run with a checkpoint resumes from it when the same command is run again."""
    spec = make_spec(
        algo,
        set_,
        env=env,
        dataset=dataset,
        seeds=seeds,
        seed_start=seed_start,
        steps=steps,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        device=device,
        out=str(out),
        checkpoint_every=checkpoint_every,
        tf32=tf32,
        compile=compile,
        env_workers=env_workers,
        eval_workers=eval_workers,
        track=track,
        track_every=track_every,
    )
    label = variant_label(set_, spec.config, spec.algorithm.config_cls()) if name is None else name
    prepared = prepare(spec.with_settings(variant=label), overwrite)
    if prepared.resume:
        print(f"resuming from the checkpoint at {prepared.resume.describe()}", flush=True)
    title = f"{algo} {spec.protocol.task} ({plural(seeds, 'seed')}, {prepared.device.type})"
    reporter = make_reporter(title, spec.protocol.seed_values, steps, quiet)
    try:
        outcome = train(prepared, reporter, on_takeover=lambda note: print(note, file=sys.stderr))
    except KeyboardInterrupt as interrupt:
        raise interrupted(interrupt, "every completed evaluation is on disk, marked interrupted") from None
    divergences = outcome.divergences
    last = [
        "diverged" if divergence else f"{rows[-1].eval_return:.1f}" for rows, divergence in zip(outcome.rows, divergences)
    ]
    print(f"last evaluation return per seed: {' '.join(last)}")
    print(f"learning curves: {outcome.run_dir}/seed_<k>.parquet; policies: {outcome.run_dir / POLICY_DIR}")
    diverged = [f"seed {seed} ({divergence})" for seed, divergence in zip(outcome.seeds, divergences) if divergence]
    if diverged:
        print(f"qsmbench: {len(diverged)} of {plural(seeds, 'seed')} diverged: {'; '.join(diverged)}", file=sys.stderr)
        raise typer.Exit(EXIT_DIVERGED)


@app.command("eval")
def eval_command(
    path: Annotated[Path, typer.Argument(help="A run directory, or a results directory searched at any depth.")],
    episodes: Annotated[int, typer.Option(help="Fresh evaluation episodes per seed.")] = 10,
    seeds: Annotated[str | None, typer.Option(help="Seeds to evaluate, e.g. 0,2,5-7 (default: all saved).")] = None,
    eval_seed: Annotated[int, typer.Option(help="Which fresh episodes: another value, other episodes.")] = 0,
    video: Annotated[
        Path | None, typer.Option(help="Also film each seed's first --video-episodes episodes as MP4s here.")
    ] = None,
    video_episodes: Annotated[int, typer.Option(help="Episodes filmed per seed with --video.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Evaluate the saved policies of the runs under PATH on fresh seeded episodes, and print a table."""
    if min(episodes, video_episodes) < 1 or eval_seed < 0:
        raise ConfigError("--episodes and --video-episodes must be at least 1, --eval-seed non-negative")
    runs = find_policies(path, parse_seeds(seeds) if seeds is not None else None)
    register_bandit()  # the toy demo's runs save policies too; its env is registered by qsmbench only
    if video is not None:
        check_video_support()
        for env_id in sorted({policies[0].header.env_id for policies in runs}):
            choose_renderer(env_id)
    torch_device = resolve_device(device)
    agents = [load_agent(policies, torch_device) for policies in runs]
    results = [evaluate_policies(policies, agent, episodes, eval_seed, torch_device) for policies, agent in zip(runs, agents)]
    Console().print(returns_table(results, episodes, eval_seed))
    if video is None:
        return
    for policies, agent in zip(runs, agents):
        header = policies[0].header
        directory = run_dir(video, header.task, header.algo, header.variant)
        directory.mkdir(parents=True, exist_ok=True)
        files = record_videos(policies, agent, video_episodes, eval_seed, directory, torch_device)
        print(f"videos: {len(files)} in {directory}")


def returns_table(results: list[PolicyReturns], episodes: int, eval_seed: int) -> Table:
    """One row per seed (mean and standard deviation over its episodes), and each run's mean over seeds."""
    table = Table("task", "algorithm", "seed", "step", "return", "std", title=f"qsmbench eval: {episodes} episodes per seed, eval seed {eval_seed}")
    for result in results:
        header = result.policies[0].header
        for policy, returns in zip(result.policies, result.returns):
            table.add_row(header.task, escape(result.label), str(policy.seed), f"{policy.step:,}", f"{returns.mean():.1f}", f"{returns.std():.1f}")
        if len(result.policies) > 1:
            table.add_row(header.task, escape(result.label), "mean", "", f"{result.returns.mean(axis=1).mean():.1f}", "", style="bold")
    return table


@app.command()
def toy(
    algos: Annotated[
        str | None, typer.Option(help="Comma-separated algorithms to compare (default: those of qsmbench/data/toy.toml).")
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per algorithm; their samples are pooled (default 1).")] = None,
    steps: Annotated[int | None, typer.Option(help="Bandit steps (one-step episodes) per seed (default 4000).")] = None,
    out: Annotated[Path | None, typer.Option(help="Directory for the runs and multimodal.png (default results/toy).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Plain log lines instead of the live display.")] = False,
) -> None:
    """Train on a 2-D bandit with four equal optima and plot each policy's action samples."""
    names = [name.strip() for name in algos.split(",") if name.strip()] if algos is not None else None
    if names is not None and not names:
        raise ConfigError("--algos needs at least one algorithm")
    specs = toy_specs(toy_grid(), names, seeds, steps, None if out is None else str(out))
    print(f"figure: {run_toy(specs, quiet=quiet)}")


@app.command()
def plot(
    results_dir: Annotated[Path, typer.Argument(help="Directory of run files, searched at any depth.")],
    out: Annotated[Path | None, typer.Option(help=f"Output directory (default: RESULTS_DIR/{FIGURES_DIR}).")] = None,
    normalize: Annotated[
        str,
        typer.Option(
            help="auto: reference scores when every task has them, else raw returns aggregated per task; "
            "reference: fixed reference scores (D4RL, DMC return / 1000); none: raw returns across tasks."
        ),
    ] = PlotSettings.normalize,
    last_evals: Annotated[
        int, typer.Option(help="A run's final score: mean of its last N evaluations (never step 0).")
    ] = PlotSettings.last_evals,
    reps: Annotated[int, typer.Option(help="Bootstrap resamples for every confidence interval.")] = PlotSettings.reps,
    reference: Annotated[
        str | None,
        typer.Option(
            help="Probability of improvement of this method over each other one: an algorithm (qsm) or a variant "
            "(qsm\\[alpha=120]); default: the first in the registry's order.",
            metavar="METHOD",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            help='Show algorithm, variant or task NAME as TEXT in the figures (repeatable), e.g. qsm="QSM (ours)".',
            metavar="NAME=TEXT",
        ),
    ] = None,
    titles: Annotated[bool, typer.Option(help="A title above each figure saying what it shows.")] = FigureStyle.titles,
    figsize: Annotated[
        str | None, typer.Option(help="The size of every figure in inches (default: sized by its content).", metavar="W,H")
    ] = None,
) -> None:
    """Tables (summary.csv, summary.md) and figures with rliable: IQM, curves, profiles, P(improvement)."""
    settings = PlotSettings(
        normalize=normalize, last_evals=last_evals, reps=reps, reference=reference or ""  # type: ignore[arg-type]
    )
    style = FigureStyle(labels=parse_labels(label or []), titles=titles, figsize=parse_figsize(figsize))
    console = Console(stderr=True)
    with console.status("qsmbench plot: reading runs") as status:
        say = lambda message: status.update(f"qsmbench plot: {message}")  # noqa: E731
        report = plot_results(results_dir, settings, out, progress=say, style=style)
    for warning in report.warnings:
        print(f"qsmbench: warning: {warning}", file=sys.stderr)
    print(f"tables and figures: {report.out_dir} (summary.md, summary.csv, {plural(len(report.files) - 2, 'figure file')})")


def parse_labels(given: list[str]) -> dict[str, str]:
    """`--label qsm="QSM (ours)"` -> {"qsm": "QSM (ours)"}; a variant's name keeps its `=`:
    `--label "qsm[alpha=120]=QSM, alpha 120"` -> {"qsm[alpha=120]": "QSM, alpha 120"}. A name given twice is refused."""
    labels: dict[str, str] = {}
    for item in given:
        match = re.fullmatch(r"\s*([^=\[\]]+(?:\[[^\]]*\])?)\s*=(.*)", item, flags=re.S)
        if not match:
            raise ConfigError(f"--label {item!r}: expected NAME=TEXT, e.g. qsm=\"QSM (ours)\"")
        name, text = match[1].strip(), match[2].strip()
        if name in labels:
            raise ConfigError(f"--label {name} is given twice")
        labels[name] = text
    return labels


def parse_figsize(given: str | None) -> tuple[float, float] | None:
    """`--figsize 6,4` -> (6.0, 4.0) inches."""
    if given is None:
        return None
    try:
        width, height = (float(part) for part in given.split(","))
    except ValueError:
        raise ConfigError(f"--figsize {given!r}: expected W,H in inches, e.g. 6,4") from None
    return width, height


@app.command()
def reproduce(
    grid: Annotated[str, typer.Argument(help="A shipped grid (paper) or the path of a grid .toml file.")],
    scale: Annotated[str, typer.Option(help="Scale of the grid: paper (as written) or smoke (tiny, for tests).")] = "paper",
    out: Annotated[Path | None, typer.Option(help="Results directory (default: the grid's, e.g. results/paper).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and a time estimate; train nothing.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    checkpoint_every: Annotated[
        int, typer.Option(help="Steps between checkpoints of each run (one is also written on a stop signal).")
    ] = DEFAULT_CHECKPOINT_EVERY,
    list_jobs: Annotated[
        bool,
        typer.Option("--list-jobs", help="Print each job's index, id and status (of --shard's jobs with it); train nothing."),
    ] = False,
    job: Annotated[
        str | None, typer.Option(help="Train this job only: its index or id from --list-jobs (e.g. $SLURM_ARRAY_TASK_ID).")
    ] = None,
    shard: Annotated[str | None, typer.Option(help="Train the shard I/N of the jobs: every N-th, from the I-th.")] = None,
    plot_only: Annotated[
        bool, typer.Option("--plot-only", help="Make the grid's tables and figures; every job must be complete.")
    ] = False,
    workers: Annotated[
        int, typer.Option(help="With --dry-run: also estimate the time on this many machines (GPUs) at once.")
    ] = 1,
    ray: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Train the jobs as Ray tasks: 'local' starts Ray on this machine, 'auto' or host:port joins a cluster.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Plain log lines instead of the live display.")] = False,
) -> None:
    """Train every job (task x algorithm, all seeds batched) of GRID not yet complete, then plot; resumable.

    With --ray, each job is a Ray task (retried and resumed if its worker is lost).

    With --job or --shard, train that part only, and make the figures with --plot-only at the end.

    That is how a Slurm array or several machines share one results directory (docs/cluster.md)."""
    loaded = load_grid(grid, scale)
    results = out or loaded.out
    if plot_only and (dry_run or list_jobs or job is not None or shard is not None or ray is not None):
        raise ConfigError("--plot-only trains nothing: give it without --dry-run, --list-jobs, --job, --shard or --ray")
    if ray is not None and (job is not None or shard is not None):
        raise ConfigError("--ray trains every pending job of the grid: give it without --job or --shard")
    if plot_only:
        report_plot(plot_grid(loaded, results))
        return
    jobs = plan(loaded, results)
    selected = select(jobs, job, shard)
    if list_jobs:
        print(format_job_list(jobs, selected))
        return
    if dry_run:
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        print(format_plan(loaded, jobs, results, workers))
        return
    try:
        if ray is not None:
            failed = run_on_ray(loaded, grid, results, ray, device, checkpoint_every)
            for line in failed:
                print(f"qsmbench: job failed: {line}", file=sys.stderr)
            if failed:
                raise typer.Exit(EXIT_FAILED)
            report_plot(plot_if_complete(loaded, results))
            return
        if job is None and shard is None:
            report_plot(run_grid(loaded, results, device, quiet, checkpoint_every))
            return
        print(format_job_list(jobs, selected), flush=True)
        train_jobs(selected, device, quiet, checkpoint_every)
    except KeyboardInterrupt as interrupt:
        raise interrupted(interrupt, "finished runs are kept: run the same command again to go on") from None
    same = f"{grid}{f' --scale {scale}' if scale != 'paper' else ''}{f' --out {out}' if out else ''}"
    print(f"done: {len(selected)} of {plural(len(jobs), 'job')}; once all are complete: qsmbench reproduce {same} --plot-only")


def report_plot(report: PlotReport | None) -> None:
    """The plot's warnings on stderr, and where its table and figures are (nothing when there was no plot)."""
    if report is None:
        return
    for warning in report.warnings:
        print(f"qsmbench: warning: {warning}", file=sys.stderr)
    print(f"table: {report.out_dir / 'summary.md'}; figures: {report.out_dir}")


@app.command("bench")
def bench_command(
    algos: Annotated[str, typer.Option(help="Comma-separated algorithms to measure.")] = "sac,td3,qsm,dql",
    env: Annotated[str, typer.Option(help="Gymnasium id whose sizes and simulator to use.")] = "Hopper-v4",
    seeds: Annotated[str, typer.Option(help="Comma-separated seed counts (each one batched run).")] = "1,10",
    calls: Annotated[int, typer.Option(help="Timed calls per measurement (after a tenth as many warm-up calls).")] = 100,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    out: Annotated[Path, typer.Option(help="JSON-lines file the results are appended to.")] = Path("results/bench.jsonl"),
    compile: Annotated[
        bool, typer.Option("--compile", help="CUDA only: also measure every algorithm with compiled networks.")
    ] = False,
) -> None:
    """Measure env, act, update and whole-step speed, and operators per update and act, of each algorithm here."""
    names = [name.strip() for name in algos.split(",") if name.strip()]
    for name in names:
        resolve(name, [])
    counts = parse_counts("--seeds", seeds)
    if not names or calls < 1:
        raise ConfigError("--algos needs at least one algorithm and --calls at least 1")
    check_env_id(env)
    torch_device = resolve_device(device)
    check_compile_device(compile, torch_device)
    results = []
    table = Table("algo", "seeds", "env/s", "act/s", "update/s", "loop/s", "seed-steps/s", "ops/update", "ops/act",
                  title=f"qsmbench bench: {env} on {torch_device.type} (per second: batched steps and calls)")  # fmt: skip
    modes = [False, True] if compile else [False]  # eager, then compiled
    for name, compiled in [(name, compiled) for name in names for compiled in modes]:
        for count in counts:
            result = measure(name, env, count, calls, torch_device, compiled)
            results.append(result)
            table.add_row(
                f"{name} (compiled)" if compiled else name, str(count), f"{result.env_sps:,.0f}", f"{result.act_per_s:,.0f}", f"{result.update_per_s:,.1f}",
                f"{result.loop_sps:,.1f}", f"{result.loop_sps * count:,.1f}", f"{result.update_operators:,.0f}",
                f"{result.act_operators:,.0f}",
            )  # fmt: skip
    Console().print(table)
    append_results(out, results, torch_device)
    print(f"appended {plural(len(results), 'result')} to {out}")


def parse_counts(option: str, text: str) -> list[int]:
    """'1,10' -> [1, 10]; one line naming the option otherwise."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated whole numbers, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise ConfigError(f"{option} needs whole numbers of at least 1, got {text!r}")
    return counts


@app.command("list")
def list_algorithms(
    explain_algo: Annotated[
        str | None,
        typer.Option(
            "--explain", metavar="ALGO",
            help="Explain each hyperparameter of ALGO instead: its name, default, meaning and where the default "
            "comes from.",
        ),
    ] = None,
) -> None:
    """Show the algorithms with their default hyperparameters, and example environment ids."""
    console = Console()
    if explain_algo is not None:
        algorithm = lookup(explain_algo)
        console.print(f"[bold]{algorithm.name}[/bold]: {algorithm.summary}")
        table = Table(show_lines=True)
        table.add_column("name", no_wrap=True)
        table.add_column("default", no_wrap=True)
        table.add_column("meaning", overflow="fold")
        table.add_column("source", overflow="fold")
        for name, default, meaning, source in explain(algorithm.config_cls):
            table.add_row(name, repr(default), escape(meaning), escape(source))
        console.print(table)
        return
    for algorithm in ALGORITHMS.values():
        console.print(f"[bold]{algorithm.name}[/bold]: {algorithm.summary}")
        table = Table(show_header=False)
        for name, value in dataclasses.asdict(algorithm.config_cls()).items():
            table.add_row(name, repr(value))
        console.print(table)
    console.print("Example environments: " + ", ".join(EXAMPLE_ENV_IDS))
    console.print("Any Gymnasium id with Box actions works, and DeepMind Control tasks as dm_control/<domain>-<task>-v0.")


def main() -> None:
    """Entry point: map errors to one line and an exit code, never a traceback.

    `kill -USR2 <pid>` prints every thread's Python stack to stderr and lets the run go on: the
    way to see where a run that looks stuck is.
    """
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    signal.signal(signal.SIGTERM, raise_terminated)
    signal.signal(signal.SIGUSR1, raise_terminated)
    try:
        code = app(standalone_mode=False)
    except ConfigError as error:
        print(f"qsmbench: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except typer.TyperException as error:
        if error.format_message():  # empty for a bare `qsmbench`, which has printed the help
            print(f"qsmbench: error: {error.format_message()}", file=sys.stderr)
        sys.exit(error.exit_code)
    except typer.Abort as abort:  # Ctrl-C or SIGTERM outside a run: nothing was being written
        sys.exit(EXIT_TERMINATED if isinstance(abort.__cause__, Terminated) else EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - one line here; the traceback is in the run files
        print(f"qsmbench: run failed: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    sys.exit(code if isinstance(code, int) else 0)
