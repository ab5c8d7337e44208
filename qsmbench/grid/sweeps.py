"""Sweeps: variants of one algorithm in a grid file, each its own job.

`[sweeps.qsm]` lists values per hyperparameter (`alpha = [25, 50, 120]`, `diffusion_steps = [5, 10]`); its
variants are the full product of the lists, or, with `zip = true`, the lists paired element by element. An
array of tables (`[[sweeps.qsm]]`, one after another) unites several sweeps, e.g. one key at a time. A task's
own `sweeps = { qsm = { alpha = [120] } }` replaces the grid's sweeps of that algorithm on that task (an empty
table: no sweep there).

A variant is the algorithm's config in the grid (its grid and task overrides) with the sweep's `key=value`
assignments applied, parsed and checked as `run --set` parses and checks them, and labelled as `run --set`
labels a run: the swept keys whose value differs from the algorithm's default, `key=value` sorted by key
(`qsmbench.core.config.variant_label`). So the variant at every default is the algorithm's unlabelled job,
trained once however many sweeps list it, and `run --set alpha=25` and a sweep's `alpha = 25` fill one
directory. Each variant is an ordinary job: `--list-jobs`, `--job`, `--shard`, `--ray`, claims, resume and
`plot`'s groups see nothing special.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from qsmbench.algorithms import Algorithm, lookup
from qsmbench.core.config import (
    OffPolicyConfig,
    apply_overrides,
    check_value,
    field_types,
    known_key,
    require,
    variant_label,
)
from qsmbench.core.errors import ConfigError

MAX_JOBS = 10_000  # a grid's jobs at most: more is a typo (a list too many), not a study anyone would launch


@dataclass(frozen=True)
class Sweep:
    """One sweep table: values per hyperparameter (in the file's order), crossed or (`zipped`) paired."""

    values: Mapping[str, tuple[Any, ...]]
    zipped: bool = False

    @property
    def size(self) -> int:
        """How many variants it lists (before labels that coincide are merged), without listing them."""
        lengths = [len(values) for values in self.values.values()]
        return lengths[0] if self.zipped and lengths else math.prod(lengths)

    def assignments(self) -> Iterator[tuple[str, ...]]:
        """Each variant's `key=value` assignments, as they would be typed after `run --set`."""
        rows = zip(*self.values.values()) if self.zipped else itertools.product(*self.values.values())
        for row in rows:
            yield tuple(f"{key}={setting_text(value)}" for key, value in zip(self.values, row))


Sweeps = Mapping[str, tuple[Sweep, ...]]  # algorithm name -> its sweeps


def setting_text(value: Any) -> str:
    """A TOML value as `--set` takes it: a list as `256,256`, a boolean as `true`/`false`."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(setting_text(item) for item in value)
    return str(value)


def parse_sweeps(table: Any, algorithms: tuple[str, ...]) -> dict[str, tuple[Sweep, ...]]:
    """A grid's or a task's `sweeps` table: algorithm -> one sweep table or an array of them, each checked
    against the algorithm's hyperparameters (values are checked when the variants are made)."""
    require(isinstance(table, dict), f"sweeps must be a table of <algorithm> = {{ key = [values] }}, got {table!r}")
    sweeps = {}
    for algo, entry in table.items():
        algorithm = lookup(algo)
        require(algo in algorithms, f"sweeps.{algo}: {algo} is not in the grid's algorithms ({', '.join(algorithms)})")
        entries = entry if isinstance(entry, list) else [entry]
        sweeps[algo] = tuple(parse_sweep(item, algorithm, f"sweeps.{algo}") for item in entries)
    return sweeps


def parse_sweep(entry: Any, algorithm: Algorithm, where: str) -> Sweep:
    require(isinstance(entry, dict), f"{where} must be a table of key = [values], got {entry!r}")
    hints = field_types(algorithm.config_cls)
    zipped = check_value(f"{where}.zip", entry.get("zip", False), bool)
    values = {}
    for key, listed in entry.items():
        if key == "zip":
            continue
        try:
            known_key(key, hints)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        require(
            isinstance(listed, list) and bool(listed),
            f"{where}.{key} must list at least one value, e.g. {key} = [1, 2], got {listed!r}",
        )
        values[key] = tuple(listed)
    lengths = {key: len(listed) for key, listed in values.items()}
    require(
        not zipped or len(set(lengths.values())) <= 1,
        f"{where}: zip = true pairs the lists element by element, so they must be as long as each other, got "
        + ", ".join(f"{key} {length}" for key, length in lengths.items()),
    )
    return Sweep(values, zipped)


def job_count(sweeps: tuple[Sweep, ...]) -> int:
    """The variants of an algorithm's sweeps, counted without making them (at most; coinciding labels merge)."""
    return sum(sweep.size for sweep in sweeps) if sweeps else 1


def check_job_count(count: int) -> None:
    require(
        count <= MAX_JOBS,
        f"the sweeps make {count:,} jobs, over {MAX_JOBS:,}: shorten a list, or pair lists with zip = true",
    )


def variants(algorithm: Algorithm, config: OffPolicyConfig, sweeps: tuple[Sweep, ...], where: str) -> list[tuple[str, OffPolicyConfig]]:
    """(label, config) of each variant of `config` (the algorithm's config in the grid) that `sweeps` make, in
    the order they list them, one per label; without sweeps, `config` itself, unlabelled. Two variants whose
    labels coincide but whose configs differ (a key swept in one table and left at the grid's value in another)
    are refused: they would share a directory."""
    if not sweeps:
        return [("", config)]
    made: dict[str, OffPolicyConfig] = {}
    for sweep in sweeps:
        for assignments in sweep.assignments():
            try:
                swept = apply_overrides(config, assignments)
                label = variant_label(assignments, swept, algorithm.config_cls())
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from None
            require(
                made.get(label, swept) == swept,
                f"{where}: two variants are both labelled {label or 'unlabelled'!r} but differ in other settings; "
                "give every sweep table of an algorithm the same keys",
            )
            made[label] = swept
    return list(made.items())
