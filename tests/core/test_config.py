"""`--set key=value` overrides and run-configuration validation (qsmbench.core.config)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from qsmbench.algorithms import ALGORITHMS
from qsmbench.algorithms.qsm import QSMConfig
from qsmbench.algorithms.sac import SACConfig
from qsmbench.algorithms.td3 import TD3Config
from qsmbench.core.config import (
    BUDGET,
    NUMERICS,
    SEEDS,
    TASK,
    Execution,
    OffPolicyConfig,
    Protocol,
    apply_overrides,
    explain,
    from_table,
)
from qsmbench.core.errors import ConfigError
from qsmbench.grid.files import load_grid
from qsmbench.grid.plan import jsonable, mismatch, spec_settings_key
from qsmbench.runs.format import LEGACY_RUN_SETTINGS, RunHeader
from qsmbench.runs.spec import make_spec


@dataclass(frozen=True)
class FlagsConfig:
    """A config with the field types the algorithm configs lack (bool, str), to pin their parsing."""

    deterministic: bool = False
    label: str = "base"
    width: int = 1


def test_int_override_parses_plain_and_scientific_notation() -> None:
    """An int field accepts "64" and "1e4" (a common way to write step counts) as exact ints."""
    config = apply_overrides(SACConfig(), ["batch_size=64", "warmup_steps=1e4"])
    assert config.batch_size == 64 and type(config.batch_size) is int
    assert config.warmup_steps == 10_000 and type(config.warmup_steps) is int


def test_int_override_rejects_a_fraction() -> None:
    """"1.5" is not silently truncated to an int."""
    with pytest.raises(ConfigError, match="batch_size"):
        apply_overrides(SACConfig(), ["batch_size=1.5"])


def test_float_override() -> None:
    """A float field takes decimal and scientific forms; untouched fields keep their defaults."""
    config = apply_overrides(TD3Config(), ["actor_lr=1e-3", "gamma=0.95", "tau = 0.01"])
    assert config.actor_lr == pytest.approx(1e-3)
    assert config.gamma == pytest.approx(0.95)
    assert config.tau == pytest.approx(0.01)
    assert config.critic_lr == TD3Config().critic_lr
    assert config.policy_delay == TD3Config().policy_delay


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_float_override_rejects_non_finite(text: str) -> None:
    """NaN and infinities are not valid hyperparameters."""
    with pytest.raises(ConfigError, match="critic_lr"):
        apply_overrides(TD3Config(), [f"critic_lr={text}"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("True", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("NO", False)],
)
def test_bool_override(text: str, expected: bool) -> None:
    """A bool field accepts true/false, 1/0 and yes/no in any case."""
    config = apply_overrides(FlagsConfig(deterministic=not expected), [f"deterministic={text}"])
    assert config.deterministic is expected


def test_bool_override_rejects_other_words() -> None:
    """Anything else for a bool is an error naming the key, not a silent truthy string."""
    with pytest.raises(ConfigError, match="deterministic"):
        apply_overrides(FlagsConfig(), ["deterministic=maybe"])


def test_str_override_keeps_text_after_first_equals() -> None:
    """Only the first '=' separates key and value."""
    assert apply_overrides(FlagsConfig(), ["label=a=b"]).label == "a=b"


def test_tuple_override_hidden_sizes() -> None:
    """hidden_sizes "64,64" (spaces allowed) becomes a tuple of ints."""
    assert apply_overrides(SACConfig(), ["hidden_sizes=64,64"]).hidden_sizes == (64, 64)
    assert apply_overrides(TD3Config(), ["hidden_sizes=128, 32, 16"]).hidden_sizes == (128, 32, 16)
    assert apply_overrides(TD3Config(), ["hidden_sizes=400"]).hidden_sizes == (400,)


@pytest.mark.parametrize("text", ["(256, 256)", "[256, 256]", "(256,256)", " [ 256 , 256 ] "])
def test_tuple_override_takes_the_form_qsmbench_list_prints(text: str) -> None:
    """`qsmbench list` shows hidden_sizes as (256, 256), TOML writes [256, 256]: both are taken as they are shown."""
    assert apply_overrides(TD3Config(hidden_sizes=(32,)), [f"hidden_sizes={text}"]).hidden_sizes == (256, 256)


@pytest.mark.parametrize("text", ["", "64,abc", "32 32", "64,,64", "64,", "()", "(32 32)", "(64, 64]", "[64,"])
def test_tuple_override_rejects_bad_lists(text: str) -> None:
    """An empty list, a non-integer width, widths without a comma ("32 32" once read as 3232) or unmatched
    brackets are refused."""
    with pytest.raises(ConfigError, match="hidden_sizes"):
        apply_overrides(SACConfig(), [f"hidden_sizes={text}"])


def test_optional_float_override_none_and_value() -> None:
    """target_entropy (float | None) accepts "none" in any case and a number."""
    assert apply_overrides(SACConfig(target_entropy=-3.0), ["target_entropy=none"]).target_entropy is None
    assert apply_overrides(SACConfig(target_entropy=-3.0), ["target_entropy=None"]).target_entropy is None
    assert apply_overrides(SACConfig(), ["target_entropy=-2"]).target_entropy == pytest.approx(-2.0)


def test_none_is_rejected_for_a_non_optional_field() -> None:
    """"none" only means None where the annotation allows it."""
    with pytest.raises(ConfigError, match="batch_size"):
        apply_overrides(SACConfig(), ["batch_size=none"])


def test_override_returns_a_new_config_and_keeps_the_original() -> None:
    """The frozen input config is not modified; the result is the same config class."""
    original = TD3Config()
    updated = apply_overrides(original, ["policy_delay=3"])
    assert original.policy_delay == 2
    assert updated.policy_delay == 3
    assert type(updated) is TD3Config


def test_later_assignment_of_the_same_key_wins() -> None:
    """Repeating a key keeps the last value, as with repeated command-line flags."""
    assert apply_overrides(SACConfig(), ["batch_size=32", "batch_size=128"]).batch_size == 128


def test_no_assignments_returns_equal_config() -> None:
    """An empty override list changes nothing."""
    assert apply_overrides(SACConfig(), []) == SACConfig()


def test_unknown_key_suggests_a_close_match() -> None:
    """A typo names the key, suggests the real field and lists the valid keys."""
    with pytest.raises(ConfigError) as info:
        apply_overrides(SACConfig(), ["batch_sise=64"])
    message = str(info.value)
    assert "'batch_sise'" in message
    assert "did you mean 'batch_size'" in message
    assert "valid keys:" in message and "target_entropy" in message


def test_unknown_key_of_the_other_algorithm_is_rejected() -> None:
    """A TD3-only key is unknown to SAC (and vice versa): configs are per algorithm."""
    with pytest.raises(ConfigError, match="policy_delay"):
        apply_overrides(SACConfig(), ["policy_delay=2"])
    with pytest.raises(ConfigError, match="target_entropy"):
        apply_overrides(TD3Config(), ["target_entropy=none"])


@pytest.mark.parametrize("assignment", ["lr", "batch_size", "=64", " =64"])
def test_malformed_assignment(assignment: str) -> None:
    """An assignment without '=' or without a key says key=value is expected."""
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(SACConfig(), [assignment])


def test_bad_int_value() -> None:
    """A non-numeric value for an int field is an error naming the key and the value."""
    with pytest.raises(ConfigError) as info:
        apply_overrides(SACConfig(), ["batch_size=abc"])
    assert "batch_size" in str(info.value) and "'abc'" in str(info.value)


def test_bad_float_value() -> None:
    """A non-numeric value for a float field is a ConfigError, not a bare ValueError traceback."""
    with pytest.raises(ConfigError, match="gamma"):
        apply_overrides(TD3Config(), ["gamma=high"])


@pytest.mark.parametrize(
    ("config", "assignment", "fragment"),
    [
        (SACConfig(), "batch_size=0", "batch_size"),
        (TD3Config(), "gamma=1.5", "gamma"),
        (SACConfig(), "gamma=-0.1", "gamma"),
        (TD3Config(), "tau=0", "tau"),
        (TD3Config(), "policy_delay=0", "policy_delay"),
        (SACConfig(), "hidden_sizes=64,0", "hidden_sizes"),
        (SACConfig(), "replay_capacity=0", "replay_capacity"),
        (SACConfig(), "warmup_steps=-1", "warmup_steps"),
        (SACConfig(), "actor_lr=0", "learning rates"),
        (SACConfig(), "init_temperature=0", "init_temperature"),
        (SACConfig(), "log_std_min=3", "log_std_min"),
        (TD3Config(), "target_noise_clip=-1", "target_noise_clip"),
    ],
)
def test_override_runs_validation(config: object, assignment: str, fragment: str) -> None:
    """Parsed values still go through the config's __post_init__ checks."""
    with pytest.raises(ConfigError, match=fragment):
        apply_overrides(config, [assignment])


def test_constructor_validation_without_overrides() -> None:
    """The checks also guard direct construction."""
    with pytest.raises(ConfigError, match="batch_size"):
        TD3Config(batch_size=0)
    with pytest.raises(ConfigError, match="gamma"):
        SACConfig(gamma=1.5)
    with pytest.raises(ConfigError, match="policy_delay"):
        TD3Config(policy_delay=0)


def test_boundary_values_are_valid() -> None:
    """gamma 0 and 1, tau 1, warm-up 0 and batch size 1 are legal settings."""
    config = apply_overrides(TD3Config(), ["gamma=1", "tau=1", "warmup_steps=0", "batch_size=1"])
    assert (config.gamma, config.tau, config.warmup_steps, config.batch_size) == (1.0, 1.0, 0, 1)
    assert apply_overrides(SACConfig(), ["gamma=0"]).gamma == 0.0


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"seeds": 0}, "--seeds"),
        ({"steps": 0}, "--steps"),
        ({"seed_start": -1}, "--seed-start"),
        ({"eval_every": 0}, "--eval-every"),
        ({"update_every": 0}, "--update-every must be at least 1"),
        ({"update_every": -3}, "--update-every must be at least 1"),
        ({"env": None, "dataset": "mujoco/hopper/medium-v0", "update_every": 2}, "--update-every applies to online runs only"),
        ({"action_repeat": 0}, "--action-repeat must be an integer from 1 to 100, got 0"),
        ({"action_repeat": 101}, "--action-repeat must be an integer from 1 to 100, got 101"),
        ({"env": None, "dataset": "mujoco/hopper/medium-v0", "action_repeat": 2}, "--action-repeat applies to online runs only"),
        ({"eval_episodes": 0}, "--eval-episodes"),
        ({"device": "tpu"}, "--device"),
        ({"env": " "}, "--env must not be empty"),
        ({"env": None, "dataset": ""}, "--dataset must not be empty"),
    ],
)
def test_run_config_validation(kwargs: dict[str, object], flag: str) -> None:
    """Each invalid protocol or execution setting raises ConfigError naming the command-line flag."""
    with pytest.raises(ConfigError, match=flag):
        make_spec("sac", **{"env": "Pendulum-v1", **kwargs})


@pytest.mark.parametrize(
    ("algo", "assignment", "fragment"),
    [
        ("qsm", "time_hidden_sizes=0", "time_hidden_sizes must be positive"),
        ("qsm", "actor_hidden_sizes=64,0", "actor_hidden_sizes must be positive"),
        ("qsm", "alpha=0", "alpha"),
        ("qsm", "sampler_temperature=-1", "sampler_temperature must be positive"),
        ("qsm", "time_feature_std=-0.1", "time_feature_std must be positive"),
        ("qsm", "diffusion_steps=100000000", "diffusion_steps must lie in"),
        ("dql", "time_hidden=0", "time_hidden must lie in"),
        ("sac", "log_std_min=-1e300", "log_std_min must lie within float32"),
        ("sac", "log_std_min=-30", "log_std_min < log_std_max must both lie in"),
    ],
)
def test_meaningless_hyperparameters_are_refused(algo: str, assignment: str, fragment: str) -> None:
    """Values that used to be accepted and then crashed (exit 1) or trained nonsense."""
    from qsmbench.algorithms import resolve

    with pytest.raises(ConfigError, match=fragment):
        resolve(algo, [assignment])


@pytest.mark.parametrize(
    ("algo", "assignment", "fragment"),
    [
        ("td3", "target_noise_clip=1e300", "target_noise_clip must lie within float32"),  # crashed in clamp, exit 1
        ("sac", "init_temperature=1e300", "init_temperature must lie within float32"),  # inf temperature at step 1
        ("qsm", "time_feature_std=1e300", "time_feature_std must lie within float32"),  # inf weights at init
        ("dql", "eta=1e300", "eta must lie within float32"),
    ],
)
def test_settings_beyond_float32_are_refused(algo: str, assignment: str, fragment: str) -> None:
    """Every setting ends up in float32 tensors; a value float32 cannot hold is inf from the first step."""
    from qsmbench.algorithms import resolve

    with pytest.raises(ConfigError, match=fragment):
        resolve(algo, [assignment])


def test_a_huge_learning_rate_is_a_divergence_not_bad_input() -> None:
    """1e30 fits in float32: such a run is allowed, and its seeds are reported as diverged."""
    assert TD3Config(critic_lr=1e30).critic_lr == 1e30


@pytest.mark.parametrize(
    ("algo", "assignment", "fragment"),
    [
        ("sac", "hidden_sizes=64,1e30", "hidden_sizes must be positive layer widths of at most"),
        ("qsm", "time_hidden_sizes=1e30", "time_hidden_sizes must be positive layer widths of at most"),
        ("qsm", "time_features=1e30", "time_features must be even"),
        ("dql", "time_features=1e30", "time_features must be even"),
        ("dql", "time_hidden=1e30", "time_hidden must lie in"),
    ],
)
def test_widths_too_large_to_count_are_refused(algo: str, assignment: str, fragment: str) -> None:
    """A 10^30-unit layer used to pass the config and crash (exit 1, a torch stack dump) in the memory check."""
    from qsmbench.algorithms import resolve

    with pytest.raises(ConfigError, match=fragment):
        resolve(algo, [assignment])


@pytest.mark.parametrize(("seed_start", "seeds"), [(2**63, 1), (2**63 - 2, 3), (10**22, 2)])
def test_seeds_beyond_64_bits_are_refused(seed_start: int, seeds: int) -> None:
    """Run files store seeds as int64: a larger seed used to fail at the first write (exit 1, a lock left behind)."""
    with pytest.raises(ConfigError, match="--seed-start"):
        Protocol(env="Pendulum-v1", seed_start=seed_start, seeds=seeds)
    assert Protocol(env="Pendulum-v1", seed_start=2**63 - 2, seeds=2).seed_values[-1] == 2**63 - 1


def test_run_config_seed_values() -> None:
    """seed_values runs from seed_start for `seeds` seeds."""
    assert Protocol(env="Pendulum-v1", seeds=3, seed_start=5).seed_values == [5, 6, 7]


@pytest.mark.parametrize(
    ("steps", "eval_every", "grid"),
    [
        (2500, 1000, [0, 1000, 2000, 2500]),
        (2000, 1000, [0, 1000, 2000]),
        (300, 100, [0, 100, 200, 300]),
        (50, 100, [0, 50]),
        (1, 1, [0, 1]),
        (3, 1, [0, 1, 2, 3]),
    ],
)
def test_eval_steps_grid(steps: int, eval_every: int, grid: list[int]) -> None:
    """Evaluations at step 0, every eval_every steps and at the last step, each exactly once."""
    run = Protocol(env="Pendulum-v1", steps=steps, eval_every=eval_every)
    assert [step for step in range(steps + 2) if run.is_eval_step(step)] == grid
    assert run.evaluations == len(grid)


def test_a_huge_step_budget_needs_no_grid_in_memory() -> None:
    """--steps 10**15 used to die building the evaluation grid as a list."""
    run = Protocol(env="Pendulum-v1", steps=10**15, eval_every=10_000)
    assert run.evaluations == 10**11 + 1 and run.is_eval_step(10**15) and not run.is_eval_step(10**15 - 1)


def test_from_table_refuses_non_finite_floats() -> None:
    """TOML can spell inf and nan; a config float must be finite, as on the command line."""
    with pytest.raises(ConfigError, match="gamma must be a finite number"):
        from_table(SACConfig, {"gamma": float("nan")})


def test_from_table_checks_toml_types_like_overrides_do() -> None:
    """Grid files build configs through the same annotations: typed values pass, others are one-line errors."""
    run = from_table(Protocol, {"env": "Pendulum-v1", "seeds": 3, "steps": 10})
    assert (run.env, run.seeds, run.steps, run.eval_every) == ("Pendulum-v1", 3, 10, Protocol.eval_every)
    assert from_table(SACConfig, {"hidden_sizes": [64, 64], "gamma": 1}).hidden_sizes == (64, 64)
    for table, fragment in [
        ({"env": "Pendulum-v1", "seeds": "3"}, "seeds must be an integer, got '3'"),
        ({"env": "Pendulum-v1", "seeds": True}, "seeds must be an integer"),
        ({"env": "Pendulum-v1", "seeds": 0}, "--seeds must be at least 1"),
        ({"env": "Pendulum-v1", "sedes": 3}, "unknown key 'sedes' (did you mean 'seeds'"),
        ({"env": 3}, "env must be a string"),
    ]:
        with pytest.raises(ConfigError) as error:
            from_table(Protocol, table)
        assert fragment in str(error.value) and "\n" not in str(error.value)


def test_literal_fields_accept_only_their_values() -> None:
    from qsmbench.algorithms.qsm import QSMConfig

    assert apply_overrides(QSMConfig(), ["schedule=cosine"]).schedule == "cosine"
    with pytest.raises(ConfigError, match="schedule must be one of vp, linear, cosine, scaled_linear, cosine_continuous, got 'cosin'"):
        apply_overrides(QSMConfig(), ["schedule=cosin"])


def test_which_settings_must_match_is_defined_once() -> None:
    """The protocol is exactly the task, the seeds and the budget; the settings that change numbers are execution
    settings; and each half validates only its own fields (a device is not a protocol setting)."""
    assert (*TASK, *SEEDS, *BUDGET) == tuple(field.name for field in dataclasses.fields(Protocol))
    assert set(NUMERICS) < {field.name for field in dataclasses.fields(Execution)}
    with pytest.raises(TypeError):
        Protocol(env="Pendulum-v1", device="cpu")
    spec = make_spec("sac", env="Pendulum-v1", seeds=3, device="cpu", out="elsewhere")
    assert (spec.protocol.seeds, spec.execution.device, spec.execution.out) == (3, "cpu", "elsewhere")
    assert spec.with_settings(seeds=4, device="auto").protocol.seeds == 4


def test_every_setting_of_every_algorithm_says_what_it_means_and_where_its_default_comes_from() -> None:
    """`qsmbench list --explain` shows each field's help and source: none may be empty or missing (a field
    written as a bare default, without `setting`, has neither)."""
    for algorithm in ALGORITHMS.values():
        rows = explain(algorithm.config_cls)
        assert [row[0] for row in rows] == [f.name for f in dataclasses.fields(algorithm.config_cls)]
        for name, _, meaning, source in rows:
            assert meaning.strip(), f"{algorithm.name}.{name} has no help"
            assert source.strip(), f"{algorithm.name}.{name} has no source"


def test_explain_gives_each_default_and_the_defining_class_metadata() -> None:
    """Defaults as the config has them; an inherited field explained by its defining class, a redefined
    one (QSM's 512-wide critics) by the class that redefines it."""
    config = QSMConfig()
    rows = {name: (default, meaning, source) for name, default, meaning, source in explain(QSMConfig)}
    assert {name: row[0] for name, row in rows.items()} == dataclasses.asdict(config)
    base = {name: (default, meaning, source) for name, default, meaning, source in explain(OffPolicyConfig)}
    assert rows["batch_size"] == base["batch_size"]
    assert rows["hidden_sizes"][0] == (512, 512) and rows["hidden_sizes"][2] != base["hidden_sizes"][2]


GRID_WITH_ACTION_REPEAT = """\
out = "unused"
algorithms = ["td3", "sac"]
seeds = 2
steps = 300
action_repeat = 2
eval_every = 100
eval_episodes = 1

[overrides]
sac = ["warmup_steps=100", "batch_size=32", "hidden_sizes=32,32"]
td3 = ["warmup_steps=100", "batch_size=32", "hidden_sizes=32,32"]

[[tasks]]
env = "Pendulum-v1"
confidence = "smoke"
source = "test"

[scales.test]
"""


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", "--action-repeat must be an integer from 1 to 100, got 0"), ("2.5", "action_repeat must be an integer")],
)
def test_a_grid_file_refuses_a_bad_action_repeat_in_one_line(tmp_path: Path, value: str, expected: str) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(GRID_WITH_ACTION_REPEAT.replace("action_repeat = 2", f"action_repeat = {value}"))
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as error:
        load_grid(str(path), "test")
    assert expected in str(error.value)


def test_a_grid_sets_action_repeat_for_every_job_and_counts_only_runs_made_with_it(tmp_path: Path) -> None:
    """`action_repeat` is a grid-wide protocol key like `update_every`: every job gets it (1 without it); a complete
    run file made with another value (or before the key existed: 1) does not count for the job, and the dry-run's
    timing key tells the two apart."""
    path = tmp_path / "grid.toml"
    path.write_text(GRID_WITH_ACTION_REPEAT)
    grid = load_grid(str(path), "test")
    assert [spec.protocol.action_repeat for spec in grid.specs] == [2, 2]
    path.write_text(GRID_WITH_ACTION_REPEAT.replace("action_repeat = 2\n", ""))
    plain = load_grid(str(path), "test")
    assert {spec.protocol.action_repeat for spec in plain.specs} == {1}
    spec, old = grid.specs[0], plain.specs[0]
    config = jsonable(dataclasses.asdict(spec.config))
    legacy = {key: value for key, value in old.run_settings().items() if key != "action_repeat"}
    header = RunHeader(algo=spec.algo, task=spec.protocol.task, env_id="Pendulum-v1", run_config=legacy, algo_config=config)
    assert mismatch(header, spec.protocol, config) == "action_repeat=None (the grid asks for 2)"
    read_back = RunHeader(**{**dataclasses.asdict(header), "run_config": {**LEGACY_RUN_SETTINGS, **legacy}})
    assert mismatch(read_back, spec.protocol, config) == "action_repeat=1 (the grid asks for 2)"
    assert mismatch(read_back, old.protocol, config) is None
    assert spec_settings_key(spec) != spec_settings_key(old)
