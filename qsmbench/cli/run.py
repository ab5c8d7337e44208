"""`qsmbench run`: train the seeds of one algorithm on one task (or dataset) as one batched run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from qsmbench.cli.exits import EXIT_DIVERGED, interrupted
from qsmbench.core.config import DEFAULT_CHECKPOINT_EVERY, DEFAULT_TRACK_EVERY, variant_label
from qsmbench.core.messages import plural
from qsmbench.runs.layout import POLICY_DIR
from qsmbench.runs.spec import make_spec
from qsmbench.training.loop import train
from qsmbench.training.prepare import prepare
from qsmbench.training.progress import make_reporter


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
    update_every: Annotated[
        int, typer.Option(help="Environment steps per gradient update after the warm-up (online only; recorded in the run).")
    ] = 1,
    action_repeat: Annotated[
        int,
        typer.Option(help="Simulator steps per agent step, the action repeated (DeepMind Control's frame skip; online "
                     "only; --steps still counts agent steps; recorded in the run)."),
    ] = 1,
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
        update_every=update_every,
        action_repeat=action_repeat,
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
