"""Offline datasets from Minari, flattened into transitions on the training device.

Offline algorithms sample `Batch`es exactly like online ones, so a dataset is turned into flat
`[n, ...]` tensors once: actions are rescaled to [-1, 1] (the scale agents act in online), and
`terminated` comes from Minari's terminations only, so targets bootstrap through time-limit
truncations. All seeds of a run share the one copy of the data and draw their own indices.

Minari is imported inside the functions that need it: every run imports this module, while
only offline runs read datasets.

A dataset directory is data from elsewhere (the error for a missing dataset tells users to copy one
in by hand), so nothing in it may run code. Minari's reader builds the stored environment spec with
`gym.make` -- importing and calling whatever entry point the file names -- when the metadata lacks
the observation or action space. `_checked_metadata` therefore reads the metadata as plain JSON
first and refuses such datasets, and the evaluation environment is the stored spec's *id* only,
which must be registered here and is built from the registry like any `--env`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from qsmbench.algorithms.contract import Batch
from qsmbench.core.errors import ConfigError
from qsmbench.envs.environments import check_env_id

if TYPE_CHECKING:
    from minari import MinariDataset


@dataclass(frozen=True)
class OfflineDataset:
    """All transitions of one dataset as flat float32 tensors on one device.

    `env_id` is the Gymnasium id to evaluate in. The reference scores are the random and expert
    returns that D4RL-style normalized scores are measured against; None when the dataset has none.
    `seeds` is how many seeds of a run train on it: each draws its own minibatches from the one copy.
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor
    dataset_id: str
    env_id: str
    ref_min_score: float | None
    ref_max_score: float | None
    seeds: int = 1

    @property
    def obs_dim(self) -> int:
        return int(self.obs.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.action.shape[1])

    @property
    def size(self) -> int:
        return int(self.obs.shape[0])

    def sample(self, batch_size: int) -> Batch:
        """`batch_size` transitions per seed, uniform with replacement, independently per seed.

        One `randint` on torch's global generator, like `SeedBatchedReplay.sample`, so seeding torch
        makes a run reproducible; nothing here waits on the device.
        """
        index = torch.randint(0, self.size, (self.seeds, batch_size), device=self.obs.device)
        return Batch(self.obs[index], self.action[index], self.reward[index], self.next_obs[index], self.terminated[index])

    @property
    def ref_scores(self) -> tuple[float, float] | None:
        """(random, expert) returns, or None when the dataset records none."""
        if self.ref_min_score is None or self.ref_max_score is None:
            return None
        return self.ref_min_score, self.ref_max_score

    def normalized_score(self, returns: np.ndarray) -> np.ndarray | None:
        """Returns on the D4RL scale papers report: 0 is the random policy, 100 the expert."""
        if self.ref_scores is None:
            return None
        low, high = self.ref_scores
        return 100.0 * (np.asarray(returns, dtype=np.float64) - low) / (high - low)


def load_offline_dataset(dataset_id: str, device: torch.device, seeds: int = 1) -> OfflineDataset:
    """Read every episode of a Minari dataset (downloading it when missing) onto `device`, for `seeds` seeds."""
    dataset = _open_dataset(dataset_id)
    env_id = _checked_env_id(dataset)
    try:
        obs, action, reward, next_obs, terminated = _transitions(dataset)
    except (OSError, ValueError, KeyError, TypeError) as error:  # HDF5 read lazily: damage shows up here
        path = dataset.storage.data_path
        raise ConfigError(f"cannot read Minari dataset {dataset_id!r} at {path}: {_first_line(error)}") from None
    for name, values in (("observations", obs), ("actions", action), ("rewards", reward)):
        if not np.all(np.isfinite(values)):
            raise ConfigError(f"{dataset_id} has non-finite {name} (NaN or inf); qsmbench trains only on finite data")
    ref_min, ref_max = _reference_scores(dataset)

    def tensor(array: np.ndarray) -> Tensor:
        return torch.as_tensor(array, dtype=torch.float32, device=device)

    return OfflineDataset(
        obs=tensor(obs),
        action=tensor(_rescale_actions(action, dataset.action_space)),
        reward=tensor(reward),
        next_obs=tensor(next_obs),
        terminated=tensor(terminated),
        dataset_id=dataset_id,
        env_id=env_id,
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        seeds=seeds,
    )


def _open_dataset(dataset_id: str) -> MinariDataset:
    """The Minari dataset from local storage, downloaded first when it is not there."""
    try:
        import minari
        from minari.dataset.minari_dataset import parse_dataset_id
        from minari.storage.datasets_root_dir import get_dataset_path
    except ImportError as error:
        raise ConfigError(f"offline datasets need Minari: pip install 'minari[hdf5]' ({error})") from None
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):  # TypeError: Minari's parser fails that way on a missing -vN
        raise ConfigError(
            f"invalid Minari dataset id {dataset_id!r}: expected namespace/name-vN, e.g. mujoco/hopper/medium-v0"
        ) from None
    path = get_dataset_path(dataset_id)
    if not (path / "data").exists():
        _download(dataset_id, root=get_dataset_path())
    _checked_metadata(dataset_id, path / "data" / "metadata.json")
    try:
        return minari.load_dataset(dataset_id)
    except Exception as error:
        raise ConfigError(f"cannot read Minari dataset {dataset_id!r} at {path}: {_first_line(error)}") from None


def _checked_metadata(dataset_id: str, path: Path) -> None:
    """Refuse, from the plain JSON, a dataset that Minari could only open by building its stored env.

    The spaces must be stored (else Minari calls `gym.make` on the stored spec, i.e. on any entry
    point the file names), and the stored environment id must be one registered here.
    """
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:  # RecursionError: absurd nesting
        raise ConfigError(
            f"cannot read Minari dataset {dataset_id!r}: {path} is not readable JSON ({_first_line(error)})"
        ) from None
    if not isinstance(metadata, dict):
        raise ConfigError(f"cannot read Minari dataset {dataset_id!r}: {path} is not a JSON object")
    missing = [key for key in ("observation_space", "action_space") if not isinstance(metadata.get(key), str)]
    if missing:
        raise ConfigError(
            f"{dataset_id} does not record its {' and '.join(missing)}; qsmbench never builds an environment "
            "from a dataset's stored spec to find them"
        )
    if metadata.get("env_spec") is None:
        return  # no environment: `_checked_env_id` refuses it once the spaces have been checked
    try:
        env_id = json.loads(metadata["env_spec"])["id"]
    except (KeyError, TypeError, ValueError, RecursionError):
        env_id = None
    if not isinstance(env_id, str) or not env_id:
        raise ConfigError(f"{dataset_id} records an environment spec without an id, so there is none to evaluate in")
    try:
        check_env_id(env_id)
    except ConfigError as error:
        raise ConfigError(f"{dataset_id} was recorded in an environment this machine does not know: {error}") from None


def _download(dataset_id: str, root: Path) -> None:
    """Fetch a dataset from the Minari remote, or explain how to bring it here by hand.

    Training machines often cannot reach the dataset hub, so every failure (no network, no hub
    client, an id the hub does not know) becomes one line that says what to do instead.
    """
    from minari import download_dataset

    with contextlib.suppress(ImportError):  # the hub client resets its logger when its API loads: load it first
        from huggingface_hub import HfApi  # noqa: F401 - imported for its side effect on the logger
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # its retry warnings would break the one-line error
    try:
        download_dataset(dataset_id)
    except Exception as error:
        raise ConfigError(
            f"Minari dataset {dataset_id!r} is not on disk under {root} and could not be downloaded "
            f"({_first_line(error)}); on a machine with network run `minari download {dataset_id}` "
            f"and copy {dataset_id} into $MINARI_DATASETS_PATH here"
        ) from None
    finally:
        hub_logger.setLevel(level)


def _first_line(error: Exception) -> str:
    """An exception as one short line, so that the CLI can print it as the whole message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def _checked_env_id(dataset: MinariDataset) -> str:
    """Refuse datasets agents cannot consume, and name the env the data came from."""
    observation_space, action_space = dataset.observation_space, dataset.action_space
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ConfigError(f"{dataset.id} has {_describe(observation_space)} observations; flat Box vectors are needed")
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        raise ConfigError(f"{dataset.id} has {_describe(action_space)} actions; flat Box vectors are needed")
    low, high = action_space.low, action_space.high
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high > low)):
        raise ConfigError(f"{dataset.id} has unbounded or empty action bounds; they are needed to rescale to [-1, 1]")
    if dataset.env_spec is None:
        raise ConfigError(f"{dataset.id} records no environment, so there is none to evaluate in")
    return str(dataset.env_spec.id)


def _describe(space: gym.Space) -> str:
    """A space in a few words; its repr can print bound arrays over several lines."""
    return f"{type(space).__name__} {space.shape}" if space.shape is not None else type(space).__name__


def _transitions(dataset: MinariDataset) -> list[np.ndarray]:
    """Episodes concatenated into [obs, action, reward, next_obs, terminated] rows.

    An episode of T steps stores T+1 observations; step t goes from observation t to t+1.
    """
    obs, action, reward, next_obs, terminated = [], [], [], [], []
    for episode in dataset.iterate_episodes():
        steps = len(episode.rewards)
        if len(episode.observations) != steps + 1 or len(episode.actions) != steps:
            raise ConfigError(f"{dataset.id} episode {episode.id} does not hold T+1 observations for T actions")
        obs.append(episode.observations[:-1])
        action.append(episode.actions)
        reward.append(episode.rewards)
        next_obs.append(episode.observations[1:])
        terminated.append(episode.terminations)
    if sum(len(rows) for rows in reward) == 0:
        raise ConfigError(f"{dataset.id} holds no transitions")
    return [np.concatenate(rows) for rows in (obs, action, reward, next_obs, terminated)]


def _rescale_actions(action: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
    """Map the dataset's action bounds onto [-1, 1], as RescaleAction does for online envs.

    Actions past the bounds (float rounding, an unclipped behaviour policy) are clipped, so agents
    never see values outside [-1, 1].
    """
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    return np.clip(2.0 * (action.astype(np.float64) - low) / (high - low) - 1.0, -1.0, 1.0)


def _reference_scores(dataset: MinariDataset) -> tuple[float | None, float | None]:
    """The random (min) and expert (max) returns Minari stores for normalized scores, if any."""
    metadata = dataset.storage.metadata
    ref_min, ref_max = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    if ref_min is None or ref_max is None:
        return None, None
    low = _finite_score(dataset.id, "ref_min_score", ref_min)
    high = _finite_score(dataset.id, "ref_max_score", ref_max)
    if high == low:
        raise ConfigError(f"{dataset.id} has equal reference scores ({low}); normalized scores are undefined")
    return low, high


def _finite_score(dataset_id: str, name: str, value: object) -> float:
    """A stored reference score as a float; anything but a finite number is refused by name."""
    try:
        score = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # JSON integers have no size limit: 1 followed by 400 zeros is no float
        score = math.inf
    if not math.isfinite(score):
        raise ConfigError(f"{dataset_id} has a {name} that is not a finite number: {str(value)[:40]!r}")
    return score
