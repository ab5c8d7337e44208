"""Saved policies: each seed's final networks beside its run file, read back without unpickling.

A run that completes writes `<run dir>/_policies/seed_<k>.pt` for every seed that did not diverge (the
leading underscore keeps pyarrow's dataset discovery, and so `pd.read_parquet(results_dir)`, off it).
A file holds `{"format", "document", "tensors"}`:

- `document`: JSON text of the run header (algorithm, task, environment, variant, run and algorithm
  settings, provenance), the seed, the step it was saved at and the environment's dimensions: all it
  takes to rebuild the agent from the algorithm's registry entry;
- `tensors`: every network of the agent (target and EMA copies included: Diffusion-QL's evaluation
  ranks its candidates with the target critics) and its free tensors, as this seed's slice of the
  seed-batched parameters (a leading axis of 1), but no optimiser state.

`read_policy` loads with `torch.load(weights_only=True)`: tensors and plain containers only, and refuses a
file whose name says another seed than its document (a copied policy must not count as another seed).
`load_agent` stacks the policies of several seeds of one run into one seed-batched agent again. Every
refusal is a one-line PolicyError naming the file, so `qsmbench eval` can skip it and go on.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qsmbench.algorithms import Agent, lookup
from qsmbench.algorithms.contract import EnvDims
from qsmbench.algorithms.state import AgentStateError, load_state, network_state, seed_slice, stack_seeds
from qsmbench.core.config import from_table
from qsmbench.core.errors import ConfigError, PolicyError
from qsmbench.runs.format import RunHeader, check_types
from qsmbench.runs.layout import policy_path, policy_seed
from qsmbench.runs.write import replace_atomically

POLICY_FORMAT = 1


@dataclass(frozen=True)
class SavedPolicy:
    """One seed's policy as read back: where it came from, how to rebuild it, and its tensors."""

    path: Path
    header: RunHeader
    seed: int
    step: int
    dims: EnvDims
    tensors: Mapping[str, Any]


def save_policies(
    agent: object, header: RunHeader, run_files: Sequence[Path], live: np.ndarray, step: int, dims: EnvDims
) -> None:
    """Write the policy of every live seed of `agent` beside its run file (atomically, each on its own)."""
    state = network_state(agent)
    for index, run_file in enumerate(run_files):
        if not live[index]:
            continue
        seed = int(run_file.stem.removeprefix("seed_"))
        document = {
            "header": dataclasses.asdict(header), "seed": seed, "step": step, "dims": dataclasses.asdict(dims),
        }
        policy = {"format": POLICY_FORMAT, "document": json.dumps(document, default=str), "tensors": seed_slice(state, index)}
        path = policy_path(run_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, lambda handle, policy=policy: torch.save(policy, handle))


def remove_policies(run_files: Sequence[Path]) -> None:
    """Delete the saved policies of these run files (a run starting over must not leave the old ones)."""
    for run_file in run_files:
        policy_path(run_file).unlink(missing_ok=True)


def read_policy(path: Path) -> SavedPolicy:
    """The policy file at `path`; PolicyError (one line) when it is damaged, of another format, or holds
    anything but tensors and plain containers."""
    try:
        policy = torch.load(path, map_location="cpu", weights_only=True)
        version = policy.get("format") if isinstance(policy, dict) else None
        if version != POLICY_FORMAT:
            raise PolicyError(f"{path} is policy format {version!r}; this qsmbench reads format {POLICY_FORMAT}")
        document = json.loads(policy["document"])
        header = dict(document["header"])
        check_types({**header, "seed": document["seed"]})  # as a run file's metadata is: one line, where it is read
        if header.get("ref_scores") is not None:
            header["ref_scores"] = tuple(header["ref_scores"])
        saved = SavedPolicy(
            path, RunHeader(**header), int(document["seed"]), int(document["step"]), EnvDims(**document["dims"]),
            policy["tensors"],
        )
    except PolicyError:
        raise
    except Exception as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise PolicyError(f"{path} is not a readable qsmbench policy ({reason})") from None
    check_seed(saved)
    return saved


def check_seed(policy: SavedPolicy) -> None:
    """The file name and the document must name one seed: `cp seed_0.pt seed_7.pt` must not count seed 0 twice
    (run files have the same check, qsmbench.runs.read.check_seed)."""
    named = policy_seed(policy.path)
    if named is not None and named != policy.seed:
        raise PolicyError(f"{policy.path} holds seed {policy.seed}, but its name says seed {named}")


def load_agent(policies: Sequence[SavedPolicy], device: torch.device) -> Agent:
    """One seed-batched agent acting as the given seeds' saved policies, in their order.

    They must come from one run (algorithm, task, variant and settings) and their settings must be the
    algorithm's: PolicyError naming a file otherwise.
    """
    first = policies[0]
    for other in policies[1:]:
        if (other.header.algo, other.header.task, other.header.algo_config, other.dims) != (
            first.header.algo, first.header.task, first.header.algo_config, first.dims,
        ):
            raise PolicyError(f"{other.path} and {first.path} are policies of different runs")
    try:
        algorithm = lookup(first.header.algo)
        config = from_table(algorithm.config_cls, first.header.algo_config)
    except ConfigError as error:
        raise PolicyError(f"{first.path}: its settings are not those of a {first.header.algo} agent ({str(error)[:200]})") from None
    seeds = [policy.seed for policy in policies]
    agent = algorithm.make_agent(first.dims.obs_dim, first.dims.act_dim, seeds, device, config)
    try:
        load_state(agent, {name: stack_seeds([policy.tensors[name] for policy in policies]) for name in network_state(agent)})
    except (AgentStateError, KeyError, TypeError) as error:
        raise PolicyError(f"{first.path} does not fit a {first.header.algo} agent ({error})") from None
    return agent

