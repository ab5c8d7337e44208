"""Offline Minari datasets (qsmbench.envs.datasets): transitions, action scale, sampling, scores, errors.

Datasets are built locally by the fixtures in conftest.py; no test reaches the network.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch
from minari.data_collector import EpisodeBuffer
from support import run_cli

from qsmbench.core.errors import ConfigError
from qsmbench.envs.datasets import OfflineDataset, load_offline_dataset

CPU = torch.device("cpu")


def raw_episodes(dataset_id: str) -> list[minari.EpisodeData]:
    return list(minari.load_dataset(dataset_id).iterate_episodes())


def test_transitions_follow_the_episodes(minari_dataset: str) -> None:
    """Row by row, each episode's steps appear in order: obs[t] -> obs[t+1], its reward and its termination."""
    data = load_offline_dataset(minari_dataset, CPU)
    episodes = raw_episodes(minari_dataset)
    steps = sum(len(episode) for episode in episodes)
    assert data.size == steps and (data.obs_dim, data.act_dim) == (3, 1)
    assert data.obs.shape == (steps, 3) and data.next_obs.shape == (steps, 3)
    assert data.action.shape == (steps, 1) and data.reward.shape == (steps,) and data.terminated.shape == (steps,)
    for field in (data.obs, data.action, data.reward, data.next_obs, data.terminated):
        assert field.dtype == torch.float32 and field.device == CPU
    start = 0
    for episode in episodes:
        rows = slice(start, start + len(episode))
        np.testing.assert_array_equal(data.obs[rows].numpy(), episode.observations[:-1])
        np.testing.assert_array_equal(data.next_obs[rows].numpy(), episode.observations[1:])
        np.testing.assert_array_equal(data.next_obs[rows][:-1].numpy(), data.obs[rows][1:].numpy())
        np.testing.assert_allclose(data.reward[rows].numpy(), episode.rewards, rtol=1e-6)
        np.testing.assert_array_equal(data.terminated[rows].numpy(), episode.terminations.astype(np.float32))
        start += len(episode)


def test_only_terminations_are_terminal(minari_dataset: str) -> None:
    """Episodes cut by the time limit stay non-terminal, so targets bootstrap through them."""
    data = load_offline_dataset(minari_dataset, CPU)
    episodes = raw_episodes(minari_dataset)
    truncated = sum(bool(episode.truncations[-1]) for episode in episodes)
    terminated = sum(bool(episode.terminations[-1]) for episode in episodes)
    assert truncated > 0 and terminated > 0, "the fixture should hold both kinds of episode end"
    assert data.terminated.sum().item() == terminated
    assert set(data.terminated.unique().tolist()) == {0.0, 1.0}


def test_actions_are_rescaled_to_unit_bounds(minari_dataset: str) -> None:
    """Pendulum acts in [-2, 2]; agents see the same actions divided by 2, as online under RescaleAction."""
    data = load_offline_dataset(minari_dataset, CPU)
    raw = np.concatenate([episode.actions for episode in raw_episodes(minari_dataset)])
    assert np.abs(raw).max() > 1.0, "raw actions should leave [-1, 1], or rescaling goes untested"
    np.testing.assert_allclose(data.action.numpy(), raw / 2.0, rtol=1e-6, atol=1e-7)
    assert data.action.abs().max().item() <= 1.0


def test_metadata_names_the_eval_env_and_reference_scores(minari_dataset: str) -> None:
    data = load_offline_dataset(minari_dataset, CPU)
    assert data.dataset_id == minari_dataset and data.env_id == "Pendulum-v1"
    assert (data.ref_min_score, data.ref_max_score) == (-1500.0, -150.0)  # conftest.PENDULUM_REF_SCORES


def test_sample_draws_real_rows_independently_per_seed(minari_dataset: str) -> None:
    seeds, batch_size = 4, 256
    data = load_offline_dataset(minari_dataset, CPU, seeds)
    torch.manual_seed(0)
    batch = data.sample(batch_size)
    assert batch.obs.shape == (seeds, batch_size, 3) and batch.next_obs.shape == (seeds, batch_size, 3)
    assert batch.action.shape == (seeds, batch_size, 1)
    assert batch.reward.shape == batch.terminated.shape == (seeds, batch_size)
    row = row_index(data, batch.obs)
    assert torch.equal(batch.action, data.action[row])
    assert torch.equal(batch.reward, data.reward[row])
    assert torch.equal(batch.next_obs, data.next_obs[row])
    assert torch.equal(batch.terminated, data.terminated[row])
    for k in range(1, seeds):
        assert not torch.equal(row[0], row[k]), "two seeds drew the same indices"
    torch.manual_seed(0)
    assert torch.equal(data.sample(batch_size).obs, batch.obs), "sampling should follow torch's global seed"


def row_index(data: OfflineDataset, obs: torch.Tensor) -> torch.Tensor:
    """The dataset row of every sampled observation; fails if one is not a dataset row."""
    matches = (obs.unsqueeze(-2) == data.obs).all(dim=-1)
    assert torch.all(matches.any(dim=-1)), "a sampled observation is not in the dataset"
    return matches.float().argmax(dim=-1)


def test_normalized_score_is_the_d4rl_scale(minari_dataset: str) -> None:
    """100 * (R - ref_min) / (ref_max - ref_min) with refs -1500 and -150."""
    data = load_offline_dataset(minari_dataset, CPU)
    returns = np.array([-1500.0, -150.0, -825.0, -1635.0, 0.0])
    expected = np.array([0.0, 100.0, 50.0, -10.0, 100.0 * 1500.0 / 1350.0])
    np.testing.assert_allclose(data.normalized_score(returns), expected)


def test_normalized_score_is_none_without_reference_scores(make_pendulum_dataset: Callable[..., str]) -> None:
    dataset_id = make_pendulum_dataset("qsmbench/pendulum/norefs-v0", ref_scores=None)
    data = load_offline_dataset(dataset_id, CPU)
    assert data.ref_min_score is None and data.ref_max_score is None
    assert data.normalized_score(np.array([-300.0])) is None


def test_missing_dataset_without_network_is_one_line_config_error(minari_root: Path) -> None:
    """The message names the id, where it was looked for, and how to fetch it by hand; no hang."""
    start = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        load_offline_dataset("mujoco/hopper/medium-v0", CPU)
    assert time.perf_counter() - start < 20.0
    message = str(error.value)
    assert "\n" not in message
    assert "mujoco/hopper/medium-v0" in message and str(minari_root) in message
    assert "minari download mujoco/hopper/medium-v0" in message and "MINARI_DATASETS_PATH" in message


@pytest.mark.parametrize("dataset_id", ["hopper", "hopper-medium", "mujoco/hopper/medium v0", "../escape-v0", ""])
def test_invalid_dataset_id_is_one_line_config_error(minari_root: Path, dataset_id: str) -> None:
    with pytest.raises(ConfigError, match="invalid Minari dataset id") as error:
        load_offline_dataset(dataset_id, CPU)
    assert "\n" not in str(error.value)


def test_dict_observations_are_refused(minari_root: Path) -> None:
    """Goal-style dict observations have no flat vector to feed an agent; refuse them up front."""
    steps = 3
    observation_space = gym.spaces.Dict({"position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)})
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    episode = EpisodeBuffer(
        observations={"position": np.zeros((steps + 1, 2), np.float32)},
        actions=np.zeros((steps, 1), np.float32),
        rewards=np.zeros(steps),
        terminations=np.zeros(steps, bool),
        truncations=np.zeros(steps, bool),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            "qsmbench/dict/obs-v0", [episode], observation_space=observation_space, action_space=action_space
        )
    with pytest.raises(ConfigError, match="Dict observations") as error:
        load_offline_dataset("qsmbench/dict/obs-v0", CPU)
    assert "\n" not in str(error.value)


def rewrite_metadata(dataset_id: str, change: Callable[[dict], None]) -> Path:
    """Edit a built dataset's data/metadata.json in place, as a hand-copied or hostile dataset could be."""
    from minari.storage.datasets_root_dir import get_dataset_path

    path = get_dataset_path(dataset_id) / "data" / "metadata.json"
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))
    return path


def test_a_dataset_never_runs_its_stored_entry_point(
    make_pendulum_dataset: Callable[..., str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Without stored spaces, Minari would `gym.make` the stored spec: here `os:system` creating a marker file."""
    dataset_id = make_pendulum_dataset("qsmbench/hostile/pendulum-v0")
    marker = tmp_path / "executed"

    def hostile(metadata: dict) -> None:
        del metadata["observation_space"], metadata["action_space"]
        spec = json.loads(metadata["env_spec"])
        spec.update(entry_point="os:system", kwargs={"command": f"touch {marker}"})
        metadata["env_spec"] = json.dumps(spec)

    rewrite_metadata(dataset_id, hostile)
    with pytest.raises(ConfigError) as error:
        load_offline_dataset(dataset_id, CPU)
    assert not marker.exists(), "the dataset's stored entry point was executed"
    assert "does not record its observation_space and action_space" in str(error.value)
    assert "\n" not in str(error.value)
    out = tmp_path / "results"
    result = run_cli(["run", "--algo", "dql", "--dataset", dataset_id, "--steps", "10", "--out", str(out)], capfd)
    assert not marker.exists(), "the dataset's stored entry point was executed by `qsmbench run`"
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("qsmbench: error:"), result.stderr
    assert not out.exists()


def test_a_dataset_recorded_in_an_unknown_environment_is_refused(make_pendulum_dataset: Callable[..., str]) -> None:
    dataset_id = make_pendulum_dataset("qsmbench/unknown/pendulum-v0")

    def unknown_env(metadata: dict) -> None:
        spec = json.loads(metadata["env_spec"])
        spec.update(id="evil:Pendulum-v1")
        metadata["env_spec"] = json.dumps(spec)

    rewrite_metadata(dataset_id, unknown_env)
    with pytest.raises(ConfigError, match="environment this machine does not know: unknown environment 'evil:Pendulum-v1'"):
        load_offline_dataset(dataset_id, CPU)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("ref_min_score", "abc", "ref_min_score that is not a finite number: 'abc'"),
     ("ref_max_score", 10**400, "ref_max_score that is not a finite number: '1000"),
     ("ref_max_score", None, None)],
    ids=["text", "overflows-float", "missing"],
)
def test_a_non_numeric_reference_score_is_refused_by_name(
    make_pendulum_dataset: Callable[..., str], field: str, value: object, message: str | None
) -> None:
    dataset_id = make_pendulum_dataset(f"qsmbench/refs-{field.replace('_', '')}/pendulum-v0")
    rewrite_metadata(dataset_id, lambda metadata: metadata.__setitem__(field, value))
    if message is None:  # a missing score means "no reference scores", not an error
        assert load_offline_dataset(dataset_id, CPU).ref_scores is None
        return
    with pytest.raises(ConfigError, match=message):
        load_offline_dataset(dataset_id, CPU)


@pytest.mark.parametrize(
    ("nested", "message"),
    [("metadata", r"metadata.json is not readable JSON \(RecursionError"),
     ("env_spec", "records an environment spec without an id")],
    ids=["metadata", "env_spec"],
)
def test_absurdly_nested_metadata_is_refused_by_name(
    make_pendulum_dataset: Callable[..., str], nested: str, message: str
) -> None:
    """JSON nested 100,000 deep exhausts Python's recursion limit while it is parsed: a RecursionError, not a ValueError."""
    dataset_id = make_pendulum_dataset(f"qsmbench/nested-{nested.replace('_', '')}/pendulum-v0")
    deep = "[" * 100_000
    path = rewrite_metadata(dataset_id, lambda metadata: metadata.__setitem__("env_spec", deep))
    if nested == "metadata":
        path.write_text(deep)
    with pytest.raises(ConfigError, match=message) as error:
        load_offline_dataset(dataset_id, CPU)
    assert dataset_id in str(error.value) and "\n" not in str(error.value) and len(str(error.value)) < 500


def test_non_finite_rewards_are_refused_by_name(minari_root: Path) -> None:
    steps = 4
    space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    episode = EpisodeBuffer(
        observations=np.zeros((steps + 1, 1), np.float32),
        actions=np.zeros((steps, 1), np.float32),
        rewards=np.array([0.0, np.nan, 1.0, 0.0]),
        terminations=np.zeros(steps, bool),
        truncations=np.array([False, False, False, True]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            "qsmbench/nan/rewards-v0", [episode], env="Pendulum-v1", observation_space=space, action_space=space
        )
    with pytest.raises(ConfigError, match="qsmbench/nan/rewards-v0 has non-finite rewards"):
        load_offline_dataset("qsmbench/nan/rewards-v0", CPU)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_data_file_names_the_dataset(minari_dataset: str, damage: str) -> None:
    from minari.storage.datasets_root_dir import get_dataset_path

    data_files = [path for path in (get_dataset_path(minari_dataset) / "data").iterdir() if path.name != "metadata.json"]
    assert data_files, "the fixture should store its episodes next to metadata.json"
    for path in data_files:
        content = path.read_bytes()
        path.write_bytes(os.urandom(len(content)) if damage == "garbage" else content[: len(content) // 2])
    with pytest.raises(ConfigError, match=f"cannot read Minari dataset '{minari_dataset}' at ") as error:
        load_offline_dataset(minari_dataset, CPU)
    assert "\n" not in str(error.value)
