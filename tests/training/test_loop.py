"""The training loop on real environments: what reaches replay and what reaches the run files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import run_cli, small_overrides

from qsmbench.core.errors import ConfigError
from qsmbench.runs.read import read_run
from qsmbench.runs.spec import RunSpec, make_spec
from qsmbench.training.loop import Trainer, start
from qsmbench.training.prepare import prepare
from qsmbench.training.progress import PlainReporter

SMALL = ["warmup_steps=50", "batch_size=16", "hidden_sizes=32,32"]


def small_spec(tmp_path: Path, algo: str, env: str, steps: int, eval_every: int) -> RunSpec:
    return make_spec(algo, SMALL, env=env, seeds=2, steps=steps, eval_every=eval_every, eval_episodes=1, device="cpu",
                     out=str(tmp_path))


def small_trainer(tmp_path: Path, algo: str, env: str, steps: int, eval_every: int) -> Trainer:
    spec = small_spec(tmp_path, algo, env, steps, eval_every)
    return start(prepare(spec), PlainReporter(algo, spec.protocol.seed_values, steps))


def test_time_limit_truncations_are_stored_as_non_terminal(tmp_path: Path) -> None:
    """Pendulum-v1 never terminates, only truncates at 200 steps: replay must bootstrap through it."""
    trainer = small_trainer(tmp_path, "sac", "Pendulum-v1", steps=250, eval_every=250)
    trainer.train()
    replay = trainer.parts.transitions
    assert replay.size == 250
    stored = replay.transitions_at(torch.arange(250).expand(2, 250))
    assert torch.equal(stored.terminated, torch.zeros(2, 250))
    # the stored s' of the truncated step is the true final state, not the next episode's start
    assert not torch.equal(stored.next_obs[:, 199], stored.obs[:, 200])
    torch.testing.assert_close(stored.next_obs[:, 198], stored.obs[:, 199])
    assert read_run(trainer.recorder.files.paths[0]).curve["train_episodes"].tolist() == [0, 1]


def test_dm_control_run_writes_a_curve_per_seed(tmp_path: Path) -> None:
    """A DeepMind Control task trains end to end through shimmy with flattened observations."""
    trainer = small_trainer(tmp_path, "td3", "dm_control/cheetah-run-v0", steps=100, eval_every=50)
    trainer.train()
    assert trainer.parts.transitions.sample(5).obs.shape == (2, 5, 17)
    for seed, path in zip((0, 1), trainer.recorder.files.paths):
        assert path == tmp_path / "dm_control-cheetah-run-v0" / "td3" / f"seed_{seed}.parquet"
        run = read_run(path)
        curve = run.curve
        assert run.status == "complete" and run.seed == seed
        assert run.metadata.header.env_id == run.task == "dm_control/cheetah-run-v0"
        assert curve["step"].tolist() == [0, 50, 100]
        assert np.isfinite(curve["eval_return"]).all()
        assert np.isfinite(curve["critic_loss"].iloc[-1])


def test_seed_curves_are_the_same_run_after_run(tmp_path: Path) -> None:
    """On the CPU a run is reproducible: the same command gives the same learning curves."""
    curves = []
    for attempt in ("a", "b"):
        trainer = small_trainer(tmp_path / attempt, "td3", "Pendulum-v1", steps=120, eval_every=60)
        trainer.train()
        curves.append([read_run(path).curve["eval_return"].tolist() for path in trainer.recorder.files.paths])
    assert curves[0] == curves[1]
    assert curves[0][0] != curves[0][1], "different seeds should not produce the same curve"


def test_a_spec_refuses_a_config_of_another_algorithm(tmp_path: Path) -> None:
    """The trainer builds the agent from the spec's own entry, so a mismatched pair must not exist at all."""
    sac, td3 = small_spec(tmp_path, "sac", "Pendulum-v1", 100, 100), small_spec(tmp_path, "td3", "Pendulum-v1", 100, 100)
    with pytest.raises(ConfigError, match="td3 takes a TD3Config, not a SACConfig"):
        RunSpec(td3.protocol, td3.execution, td3.algorithm, sac.config)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("update_every", [1, 4])
def test_update_every_makes_one_update_after_every_kth_step_after_the_warm_up(tmp_path: Path, update_every: int) -> None:
    """After the 50 warm-up steps, one update after steps 50 + K - 1, 50 + 2K - 1, ...: (150 - 50) // K updates in all
    (25 with K = 4); the run files record K, which the diagnostics' steps agree with."""
    spec = make_spec("td3", SMALL, env="Pendulum-v1", seeds=2, steps=150, update_every=update_every, eval_every=75,
                     eval_episodes=1, device="cpu", out=str(tmp_path))
    trainer = start(prepare(spec), PlainReporter("td3", spec.protocol.seed_values, 150))
    update, updated_at = trainer.agent.update, []

    def counted(batch: object) -> object:
        updated_at.append(trainer.step)  # the step being run: Trainer.step becomes step + 1 after the update
        return update(batch)

    trainer.agent.update = counted  # type: ignore[method-assign]
    trainer.train()
    assert updated_at == list(range(50 + update_every - 1, 150, update_every))
    assert len(updated_at) == (150 - 50) // update_every
    for path in trainer.recorder.files.paths:
        run = read_run(path)
        assert run.metadata.header.run_config["update_every"] == update_every
        assert run.curve["step"].tolist() == [0, 75, 150]
        assert np.isfinite(run.curve["critic_loss"].iloc[1:]).all()  # both intervals after the warm-up had updates


def test_action_repeat_2_makes_dm_control_episodes_500_agent_steps(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`qsmbench run --action-repeat 2` on dm_control/cartpole-balance-v0 (1000 simulator steps an episode, a
    truncation): each seed's first training episode ends at agent step 500, inside the first evaluation interval,
    and the run files record action_repeat 2 with steps counted in agent steps."""
    sets = [*small_overrides("td3"), "warmup_steps=550", "batch_size=16"]
    result = run_cli([
        "run", "--algo", "td3", "--env", "dm_control/cartpole-balance-v0", "--seeds", "2", "--steps", "600",
        "--eval-every", "500", "--eval-episodes", "1", "--action-repeat", "2", "--device", "cpu", "--quiet", "--name", "",
        "--out", str(tmp_path), *(item for override in sets for item in ("--set", override)),
    ], capfd)
    assert result.returncode == 0, result.stderr
    for seed in (0, 1):
        run = read_run(tmp_path / "dm_control-cartpole-balance-v0" / "td3" / f"seed_{seed}.parquet")
        assert run.status == "complete" and run.metadata.header.run_config["action_repeat"] == 2
        assert run.curve["step"].tolist() == [0, 500, 600]
        assert run.curve["train_episodes"].tolist() == [0, 1, 0]  # 1000 simulator steps = 500 agent steps
        assert np.isfinite(run.curve["eval_return"]).all() and np.isfinite(run.curve["train_return"].iloc[1])
