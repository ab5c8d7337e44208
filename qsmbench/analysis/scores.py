"""Run files -> groups of aligned learning curves -> run scores, on a scale fixed before any data is seen.

Separate from the bootstrap: everything here is deterministic, so the rules that decide which numbers are
compared (which steps, which budget, which reference) can be read and tested without rliable.
"""

from __future__ import annotations

import csv
import importlib.resources
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from qsmbench.algorithms import ALGORITHMS
from qsmbench.analysis.settings import Diverged, Normalize, PlotSettings, score_words
from qsmbench.core.config import BUDGET
from qsmbench.core.errors import ConfigError
from qsmbench.core.messages import plural
from qsmbench.runs.format import OFFLINE_SCORE, RunFile, with_added_hyperparameters

DMC_PREFIX = "dm_control/"
DMC_MAX_RETURN = 1000.0


def algo_rank(algo: str) -> tuple[int, str]:
    """Sort key: the registry's order, then algorithms it does not know alphabetically (legends, colours)."""
    registered = list(ALGORITHMS)
    return (registered.index(algo) if algo in ALGORITHMS else len(registered), algo)


def algo_order(algos: Iterable[str]) -> list[str]:
    return sorted(set(algos), key=algo_rank)


@dataclass(frozen=True)
class Reference:
    random: float
    expert: float
    source: str


def reference_scores() -> dict[str, Reference]:
    """The shipped per-task random and expert returns (package data, so it works from an installed wheel).

    Keyed by the file's `env` column: the environment id, which is the task of an online run.
    """
    text = importlib.resources.files("qsmbench").joinpath("data/reference_scores.csv").read_text(encoding="utf-8")
    return {
        row["env"]: Reference(float(row["random_score"]), float(row["expert_score"]), row["source"])
        for row in csv.DictReader(text.splitlines())
    }


@dataclass(frozen=True)
class Method:
    """What one curve, bar or table row shows: an algorithm, or one variant of it (an ablation such as qsm
    with alpha=120: a run given `qsmbench run --name`, or labelled by its `--set` values)."""

    algo: str
    variant: str = ""

    def __str__(self) -> str:
        """The name `--reference` takes and warnings print: `qsm`, or `qsm[alpha=120]` for a variant."""
        return f"{self.algo}[{self.variant}]" if self.variant else self.algo


def method_rank(method: Method) -> tuple[int, str, str]:
    """Sort key: algorithms in `algo_rank` order, each algorithm's variants after it by label."""
    return (*algo_rank(method.algo), method.variant)


def method_order(methods: Iterable[Method]) -> list[Method]:
    return sorted(set(methods), key=method_rank)


@dataclass(frozen=True)
class Group:
    """The runs of one method on one task, aligned on the evaluation steps that all of them reached."""

    task: str
    algo: str
    variant: str
    seeds: tuple[int, ...]  # the seeds scored: under `--diverged exclude`, those that did not diverge
    incomplete: tuple[str, ...]  # "seed (status)" of each run that is not complete and did not diverge
    diverged: dict[int, str]  # seed -> where it went non-finite, for every diverged seed, scored or not
    offline: bool
    steps: np.ndarray  # [T]
    returns: np.ndarray  # [seeds, T] evaluation returns; a diverged seed's after its divergence by the rule
    normalised: np.ndarray | None  # [seeds, T] on the fixed-reference scale; None without a reference
    before_divergence: dict[int, tuple[np.ndarray, np.ndarray]]  # diverged seed -> its finite (steps, returns)
    # the hyperparameters all its runs were trained with (check_one_configuration), as run files hold them, with those
    # added since the file was written at their defaults: what qsmbench.analysis.sensitivity compares across variants
    hyperparameters: dict[str, Any]

    @property
    def method(self) -> Method:
        return Method(self.algo, self.variant)

    @property
    def name(self) -> str:
        """'task / method', as warnings name a group."""
        return f"{self.task} / {self.method}"


Scale = Literal["reference", "none", "per_task"]  # what the aggregates compare; see resolve_scale


def resolve_scale(normalize: Normalize, groups: list[Group]) -> Scale:
    """`auto` is the reference scale when every task has reference scores, else raw returns, one task at a
    time (raw returns of different tasks are not comparable, so they are aggregated per task only)."""
    if normalize != "auto":
        return normalize
    return "reference" if all(group.normalised is not None for group in groups) else "per_task"


def scores_on(group: Group, scale: Scale) -> np.ndarray | None:
    """The group's scores on the aggregates' scale; None when it has no reference on the reference scale."""
    return group.normalised if scale == "reference" else group.returns


def build_groups(runs: list[RunFile], rule: Diverged = "untrained") -> tuple[list[Group], list[str]]:
    """Group runs by (task, algorithm, variant) and align them; ConfigError for a group whose runs were
    trained with different settings (see check_one_configuration).

    A diverged seed is a failed run, not a missing one: scored by `rule` (see PlotSettings.diverged) on the
    steps its group's other seeds reached, or left out of every number under `exclude`. A seed without a
    single finite evaluation has nothing to score and is left out under every rule.
    """
    references = reference_scores()
    by_key: dict[tuple[str, Method], list[RunFile]] = {}
    for run in runs:
        by_key.setdefault((run.task, Method(run.algo, run.variant)), []).append(run)
    groups: list[Group] = []
    warnings: list[str] = []
    for (task, method), members in sorted(by_key.items(), key=lambda item: (item[0][0], method_rank(item[0][1]))):
        members.sort(key=lambda run: run.seed)
        check_one_configuration(f"{task} / {method}", members)
        diverged = {run.seed: why for run in members if (why := divergence(run))}
        scored = [run for run in members if run.seed not in diverged or (rule != "exclude" and finite_rows(run))]
        if diverged:
            warnings.append(diverged_warning(f"{task} / {method}", diverged, len(members), rule, scored))
        if not scored:
            continue
        steps = group_steps(scored, diverged)
        if not steps:
            warnings.append(f"{task} / {method}: its runs share no evaluation step; left out")
            continue
        offline = all(OFFLINE_SCORE in run.curve.columns for run in scored)
        returns = aligned(scored, steps, "eval_return", rule)
        normalised = normalised_scores(task, scored, steps, returns, offline, references, rule)
        incomplete = tuple(f"{run.seed} ({run.status})" for run in scored if run.status != "complete" and run.seed not in diverged)
        seeds = tuple(run.seed for run in scored)
        before = {run.seed: finite_curve(run) for run in members if run.seed in diverged}
        header = members[0].metadata.header
        hyperparameters = with_added_hyperparameters(header.algo, header.algo_config)
        groups.append(
            Group(
                task, method.algo, method.variant, seeds, incomplete, diverged, offline, np.array(steps), returns, normalised, before,
                hyperparameters,
            )
        )
    return groups, warnings


RULE_TEXT = {
    "untrained": "scored as their step-0 (untrained) evaluation after the divergence",
    "last": "scored as their last finite evaluation after the divergence",
    "exclude": "left out (--diverged exclude)",
}


def diverged_warning(name: str, diverged: dict[int, str], members: int, rule: Diverged, scored: list[RunFile]) -> str:
    """One line naming each diverged seed, where it diverged, and how it is scored."""
    listed = capped([f"seed {seed} ({why})" for seed, why in diverged.items()], ", ")
    unscorable = sorted(set(diverged) - {run.seed for run in scored}) if rule != "exclude" else []
    none = f"; seeds {', '.join(map(str, unscorable))} left out: no finite evaluation" if unscorable else ""
    return f"{name}: {len(diverged)} of {plural(members, 'seed')} diverged, {RULE_TEXT[rule]}: {listed}{none}"


def group_steps(scored: list[RunFile], diverged: dict[int, str]) -> list[int]:
    """The steps every seed that did not diverge reached (a diverged seed is scored on them by its rule);
    when every seed diverged, the steps any of them reached."""
    clean = [run for run in scored if run.seed not in diverged]
    if clean:
        return sorted(set.intersection(*(set(run.curve["step"]) for run in clean)))
    return sorted(set.union(*(set(run.curve["step"]) for run in scored)))


def finite_rows(run: RunFile) -> int:
    """How many of the run's first evaluations are finite: those before it diverged."""
    columns = [column for column in ("eval_return", OFFLINE_SCORE) if column in run.curve.columns]
    finite = np.isfinite(run.curve[columns].to_numpy(dtype=float)).all(axis=1)
    return len(finite) if finite.all() else int(np.argmin(finite))


def finite_curve(run: RunFile) -> tuple[np.ndarray, np.ndarray]:
    """(steps, evaluation returns) of a run up to its divergence, as the learning curves draw it."""
    rows = finite_rows(run)
    return run.curve["step"].to_numpy()[:rows], run.curve["eval_return"].to_numpy(dtype=float)[:rows]


def divergence(run: RunFile) -> str | None:
    """Why a run cannot be scored as it stands: its status says it diverged, or (files of older versions) it
    holds non-finite evaluation values. None for a usable run."""
    if run.metadata.divergence is not None:
        return str(run.metadata.divergence)
    if finite_rows(run) < len(run.curve):
        return "non-finite evaluation values"
    return None


def training_settings(run: RunFile) -> dict[str, str]:
    """What must be equal for runs to be seeds of one group: hyperparameters and budget, as text."""
    header = run.metadata.header
    values = {**with_added_hyperparameters(header.algo, header.algo_config), **{key: header.run_config.get(key) for key in BUDGET}}
    return {key: repr(value) for key, value in values.items()}


def check_one_configuration(name: str, runs: list[RunFile]) -> None:
    """Refuse to pool runs trained with different hyperparameters or budgets: averaging a 32-wide 300-step run
    with a 128-wide 1,500-step one (and comparing at the steps they share) gives a number of neither.
    The message names the first two files that differ and how."""
    first = training_settings(runs[0])
    for run in runs[1:]:
        other = training_settings(run)
        differing = [key for key in sorted(first.keys() | other.keys()) if first.get(key) != other.get(key)]
        if differing:
            changes = capped(
                [f"{key} {shortened(first.get(key, 'absent'))} vs {shortened(other.get(key, 'absent'))}" for key in differing], ", "
            )
            raise ConfigError(
                f"{name}: {runs[0].path} and {run.path} were trained with different settings ({changes}); "
                "give one of them its own name (qsmbench run --name LABEL) to plot them as separate variants"
            )


LISTED = 10  # items one warning names; the rest are counted, so a warning about thousands of seeds stays one line
SHOWN_CHARS = 60  # of a setting's value


def capped(items: list[str], separator: str) -> str:
    """The first LISTED items, then how many more: 'a, b, c and 7 more'."""
    more = f" and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return separator.join(items[:LISTED]) + more


def shortened(text: str) -> str:
    """A setting's value as printed in a warning: a value thousands of characters long is cut (values are
    compared whole before, so two that differ only past the cut still warn)."""
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text):,} characters)"


def aligned(runs: list[RunFile], steps: list[int], column: str, rule: Diverged) -> np.ndarray:
    """`column` of each run at `steps`: [runs, steps]; see scored_values."""
    return np.stack([scored_values(run, steps, column, rule) for run in runs])


def scored_values(run: RunFile, steps: list[int], column: str, rule: Diverged) -> np.ndarray:
    """`column` of one run at `steps`: its own finite evaluations, and at steps after its divergence its first
    evaluation (step 0, the untrained policy) under `untrained`, else its last finite one. A run's curve is
    sorted by step, one row each (read_run), so a binary search finds the rows without a pandas index per run."""
    rows = finite_rows(run)
    known_steps, known = run.curve["step"].to_numpy()[:rows], run.curve[column].to_numpy(dtype=float)[:rows]
    position = np.minimum(np.searchsorted(known_steps, steps), rows - 1)
    fill = known[0] if rule == "untrained" else known[-1]
    return np.where(known_steps[position] == steps, known[position], fill)


def normalised_scores(
    task: str, runs: list[RunFile], steps: list[int], returns: np.ndarray, offline: bool, references: dict[str, Reference],
    rule: Diverged,
) -> np.ndarray | None:
    """The fixed-reference scale (never the data being plotted); None for a task without a reference."""
    if offline:
        return aligned(runs, steps, OFFLINE_SCORE, rule) / 100.0
    if task.startswith(DMC_PREFIX):
        return returns / DMC_MAX_RETURN
    reference = references.get(task)
    if reference is None:
        return None
    return (returns - reference.random) / (reference.expert - reference.random)


def reference_meaning(group: Group) -> tuple[str, str]:
    """Which reference a group's normalised score uses, and what its values mean (for axis labels):
    DeepMind Control has no random or expert reference, only its maximum return."""
    if group.offline:
        return "offline", "D4RL normalised score / 100"
    if group.task.startswith(DMC_PREFIX):
        return "DeepMind Control", f"return / {DMC_MAX_RETURN:g}"
    return "Gymnasium", "0 = random, 1 = expert"


def final_steps(groups: list[Group]) -> dict[str, int]:
    """Per task, the last evaluation step that every algorithm reached: final scores compare equal budgets.
    A group evaluated at step 0 only (a run just started) has no final score and does not shorten the others."""
    steps: dict[str, int] = {}
    for group in groups:
        last = int(group.steps[-1])
        if last > 0:
            steps[group.task] = min(steps.get(group.task, last), last)
    return steps


def scored_window(steps: np.ndarray, final_step: int) -> np.ndarray:
    """Indices of the evaluations a run's score may use: after step 0 (the untrained policy says nothing about what
    an algorithm learned) and at or before `final_step` (equal budgets)."""
    return np.flatnonzero((steps > 0) & (steps <= final_step))


def final_evaluations(steps: np.ndarray, final_step: int, last_evals: int) -> np.ndarray:
    """Indices of the evaluations a final score averages: the last `last_evals` of the scored window."""
    return scored_window(steps, final_step)[-last_evals:]


def run_scores(values: np.ndarray, steps: np.ndarray, final_step: int, settings: PlotSettings) -> np.ndarray:
    """Each run's score by `settings.score`: [runs]. `final`: the mean over its final evaluations
    (final_evaluations); `best`: its highest evaluation in the scored window (scored_window), the papers'
    "best during training", biased upward by the noise of the evaluations it picks from."""
    if settings.score == "best":
        return values[:, scored_window(steps, final_step)].max(axis=1)
    return values[:, final_evaluations(steps, final_step, settings.last_evals)].mean(axis=1)


def scored_groups(groups: list[Group], final_at: dict[str, int], settings: PlotSettings) -> tuple[list[Group], list[str]]:
    """The groups that have a score, and a warning for each group with none or (`final` scores) with fewer
    evaluations in it than `last_evals`."""
    scored: list[Group] = []
    warnings: list[str] = []
    last_evals = settings.last_evals
    for group in groups:
        count = len(scored_window(group.steps, final_at[group.task])) if group.task in final_at else 0
        if count == 0:
            window = f"after step 0 up to step {final_at[group.task]}, the task's final step" if group.steps[-1] > 0 else "after step 0"
            warnings.append(
                f"{group.name}: no evaluation {window}, so no {score_words(settings.score, 'score')}; "
                "shown as a learning curve only"
            )
            continue
        scored.append(group)
        if settings.score == "final" and count < last_evals:
            warnings.append(
                f"{group.name}: its final score averages {count} evaluation{'s' * (count != 1)}, fewer than "
                f"--last-evals {last_evals} (step 0, the untrained policy, never counts)"
            )
    return scored, warnings
