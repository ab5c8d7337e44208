"""The names figures show: algorithms by their registry display name, tasks by a short rule, variants in
brackets, each overridable with `qsmbench plot --label NAME=TEXT`.

Apart from the figures (which import matplotlib) so that the command line can check the labels it was
given against the results before anything is written.
"""

from __future__ import annotations

import re

from qsmbench.algorithms import ALGORITHMS
from qsmbench.analysis.scores import DMC_PREFIX, Method
from qsmbench.analysis.settings import FigureStyle
from qsmbench.core.errors import ConfigError
from qsmbench.runs.format import RunFile

VERSION_SUFFIX = re.compile(r"-v\d+$")


def task_title(task: str) -> str:
    """`dm_control/cheetah-run-v0` -> `Cheetah Run`, `Hopper-v4` -> `Hopper`, `mujoco/hopper/medium-v0` ->
    `Mujoco Hopper Medium`: no suite prefix or version, words split at - _ / and capitalised (a name that
    is already one capitalised word, such as HalfCheetah, keeps its spelling)."""
    name = VERSION_SUFFIX.sub("", task.removeprefix(DMC_PREFIX))
    return " ".join(word[:1].upper() + word[1:] for word in re.split(r"[-_/]+", name) if word)


def algo_title(algo: str) -> str:
    return ALGORITHMS[algo].display_name if algo in ALGORITHMS else algo


def task_label(task: str, style: FigureStyle) -> str:
    return style.labels.get(task, task_title(task))


def method_label(method: Method, style: FigureStyle) -> str:
    """`QSM`, or `QSM [alpha=120]` for a variant; `--label qsm=...` renames the algorithm in both, and
    `--label "qsm[alpha=120]=..."` names that variant alone, whole."""
    if method.variant and str(method) in style.labels:
        return style.labels[str(method)]
    name = style.labels.get(method.algo, algo_title(method.algo))
    return f"{name} [{method.variant}]" if method.variant else name


def check_labels(style: FigureStyle, runs: list[RunFile]) -> None:
    """Refuse a `--label` for a name that no run has (a typo would otherwise be silently ignored), and two
    methods that would show the same label (their curves could not be told apart). Checked on the runs
    read, before any bootstrap."""
    known = {run.algo for run in runs} | {run.task for run in runs} | {str(Method(run.algo, run.variant)) for run in runs}
    unknown = sorted(set(style.labels) - known)
    if unknown:
        raise ConfigError(
            f"--label {unknown[0]}: no algorithm, variant or task of that name in the results; "
            f"choose from {', '.join(sorted(known))}"
        )
    shown: dict[str, Method] = {}
    for method in sorted({Method(run.algo, run.variant) for run in runs}, key=str):
        label = method_label(method, style)
        if label in shown:
            raise ConfigError(f"--label: {shown[label]} and {method} would both be shown as {label!r}")
        shown[label] = method
