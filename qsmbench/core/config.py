"""Run and algorithm configuration: typed dataclasses, `--set key=value` overrides, TOML tables.

Every setting lives in a dataclass field with a type annotation. Command-line overrides
(`apply_overrides`) and tables of grid files (`from_table`) are both checked against those
annotations and then run the dataclass's own validation, so a typo or a malformed value fails the
same way, with one line, before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from qsmbench.core.errors import ConfigError


def setting(default: Any, help: str, source: str = "") -> Any:
    """A hyperparameter field that documents itself: its default, what it means (`help`) and where the
    default comes from (`source`: the paper, the official code file, or "qsmbench's choice, because ...").
    `qsmbench list --explain ALGO` prints them (`explain`); defaults are immutable (tuples, not lists)."""
    return dataclasses.field(default=default, metadata={"help": help, "source": source})


def explain(config_cls: type) -> list[tuple[str, Any, str, str]]:
    """(name, default, help, source) of every field of a config dataclass, in field order. An inherited
    field carries the metadata of the class that defines it (or last redefines its default)."""
    return [
        (f.name, f.default, f.metadata.get("help", ""), f.metadata.get("source", ""))
        for f in dataclasses.fields(config_cls)
    ]


# Official code that defaults come from, as `setting` sources name it (repo@commit file; the module
# docstrings of qsmbench.algorithms give owners and full paths).
QSM_CODE = "score_matching_rl@2e77893"
QSM_CONFIG = f"{QSM_CODE} score_matching_config.py"
QSM_TRAIN = f"{QSM_CODE} train_score_matching_online.py"
QSM_LEARNER = f"{QSM_CODE} score_matching_learner.py"
DQL_CODE = "Diffusion-Policies-for-Offline-RL@d871f5c"
TD3_CODE = "sfujim/TD3@34770cc"
DIPO_CODE = "BellmanTimeHut/DIPO@c6d8d1b"
QVPO_CODE = "wadx2019/qvpo@40a1974"
DACER_CODE = "happy-yan/DACER-Diffusion-with-Online-RL@848c1f2"
SDAC_DPMD_CODE = "mahaitongdae/diffusion_policy_online_rl@a50cf41"


ConfigT = TypeVar("ConfigT")

MAX_SEED = 2**63 - 1  # run files store seeds as int64
MAX_WIDTH = 10**8  # units per layer: 10^16 weights for a square layer already; far wider ones overflow int64 when counted
DEFAULT_CHECKPOINT_EVERY = 100_000  # writes cost under 2% of a fast GPU run at this interval (docs/benchmarks.md)
MAX_VARIANT = 120  # characters of a variant label, which also names a directory
FLOAT32_MAX = 3.4028234663852886e38  # every float setting ends up in float32 tensors; beyond this it is inf
MAX_ACTION_REPEAT = 100  # --action-repeat's bound: DeepMind Control's usual values are 1 to 8
TRACKERS = ("tensorboard", "wandb")  # the choices of --track, each implemented in qsmbench.training.tracking
DEFAULT_TRACK_EVERY = 1_000  # steps between the tracked means of the update diagnostics: one host read each


@dataclass(frozen=True)
class Protocol:
    """What a run measures: the task, the seeds, the budget and the evaluation grid (the algorithm is separate).

    These settings decide a seed's learning curve: runs compared in one figure, a checkpoint and the run
    it continues, and a grid's finished seeds must agree on them (which ones each needs: TASK, SEEDS,
    BUDGET below). How a run executes is `Execution`.
    """

    env: str | None = None  # online: the Gymnasium id to train in
    dataset: str | None = None  # offline: the Minari dataset id to train from (evaluation uses its env)
    seeds: int = 5
    seed_start: int = 0
    steps: int = 1_000_000
    update_every: int = 1  # online: environment steps per gradient update after the warm-up (`is_update_step`)
    action_repeat: int = 1  # online: simulator steps per agent step, the action repeated (qsmbench.envs.ActionRepeat)
    eval_every: int = 10_000
    eval_episodes: int = 10

    def __post_init__(self) -> None:
        require((self.env is None) != (self.dataset is None), "give either --env (online) or --dataset (offline)")
        flag, value = ("--env", self.env) if self.env is not None else ("--dataset", self.dataset)
        require(str(value).strip() != "", f"{flag} must not be empty")
        require(self.seeds >= 1, f"--seeds must be at least 1, got {self.seeds}")
        require(self.seed_start >= 0, f"--seed-start must be non-negative, got {self.seed_start}")
        last_seed = self.seed_start + self.seeds - 1
        require(last_seed <= MAX_SEED, "--seed-start + --seeds - 1 must be below 2^63 (run files store seeds as int64)")
        require(self.steps >= 1, f"--steps must be at least 1, got {self.steps}")
        require(self.update_every >= 1, f"--update-every must be at least 1, got {self.update_every}")
        require(
            self.dataset is None or self.update_every == 1,
            f"--update-every applies to online runs only (offline, a step is one gradient step), got {self.update_every}",
        )
        require(
            1 <= self.action_repeat <= MAX_ACTION_REPEAT,
            f"--action-repeat must be an integer from 1 to {MAX_ACTION_REPEAT}, got {self.action_repeat}",
        )
        require(
            self.dataset is None or self.action_repeat == 1,
            f"--action-repeat applies to online runs only (a dataset's transitions are single env steps), "
            f"got {self.action_repeat}",
        )
        require(self.eval_every >= 1, f"--eval-every must be at least 1, got {self.eval_every}")
        require(self.eval_episodes >= 1, f"--eval-episodes must be at least 1, got {self.eval_episodes}")

    @property
    def task(self) -> str:
        """What the run learns: the env id online, the dataset id offline (results are filed under it)."""
        return str(self.dataset or self.env)

    @property
    def seed_values(self) -> list[int]:
        return list(range(self.seed_start, self.seed_start + self.seeds))

    def is_eval_step(self, step: int) -> bool:
        """Whether `step` is on the fixed evaluation grid: step 0, every `eval_every` steps, and the last step.

        A test rather than a list: the grid of a huge `--steps` must not be built in memory.
        """
        return step == self.steps or (0 <= step < self.steps and step % self.eval_every == 0)

    def is_update_step(self, step: int, learning_starts: int) -> bool:
        """Whether the loop makes one gradient update after run step `step` (0-based; its transition is in the
        replay buffer by then). After the warm-up (`learning_starts` steps), one update after every `update_every`-th
        environment step: steps learning_starts + update_every - 1, + 2 * update_every - 1, ..., so a run makes
        (steps - learning_starts) // update_every updates. update_every 1 is one update per step from
        `learning_starts` on, qsmbench's protocol."""
        return step >= learning_starts and (step + 1 - learning_starts) % self.update_every == 0

    @property
    def evaluations(self) -> int:
        """How many points the evaluation grid has."""
        return -(-self.steps // self.eval_every) + 1


# Which protocol settings each comparison needs, defined once. A run file holds one seed, so it is compared
# on BUDGET (a grid's finished seed, runs grouped in one figure); a checkpoint holds a whole batch of seeds,
# so it is compared on every protocol setting and on NUMERICS; a grid file sets SEEDS and BUDGET for all its
# tasks; a run's cost per step depends on its seed count, its EVALUATION load, its update_every and its
# action_repeat. update_every decides how many updates a seed's curve had at each step, and action_repeat how
# many simulator steps (and which episodes) a step is, so both are part of BUDGET like steps.
TASK = ("env", "dataset")
SEEDS = ("seeds", "seed_start")
EVALUATION = ("eval_every", "eval_episodes")
BUDGET = ("steps", "update_every", "action_repeat", *EVALUATION)


@dataclass(frozen=True)
class Execution:
    """How and where a run executes: none of these settings changes what a seed learns, except NUMERICS
    (`tf32` and `compile` round floats differently), so a run may resume with others (another device,
    more workers, another checkpoint interval)."""

    device: str = "auto"
    out: str = "results"
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY  # steps between checkpoints; one is also written on a stop signal
    tf32: bool = False  # CUDA float32 matmuls and convolutions in TF32 (10-bit mantissa): faster, and other numbers
    compile: bool = False  # the agent's networks compiled with torch.compile (CUDA only)
    env_workers: int = 0  # processes stepping the training envs (0: in the training process); results are the same
    eval_workers: int = 0  # processes stepping the evaluation envs (0: in the training process); results are the same
    variant: str = ""  # the run's label among runs of one algorithm on one task: --name, or its --set values
    track: str | None = None  # an experiment tracker (one of TRACKERS) that also gets what the run files get
    track_every: int = DEFAULT_TRACK_EVERY  # with `track`: steps between the logged means of the update diagnostics

    def __post_init__(self) -> None:
        require(self.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda, got {self.device!r}")
        require(self.checkpoint_every >= 1, f"--checkpoint-every must be at least 1, got {self.checkpoint_every}")
        require(self.env_workers >= 0, f"--env-workers must be non-negative, got {self.env_workers}")
        require(self.eval_workers >= 0, f"--eval-workers must be non-negative, got {self.eval_workers}")
        require(
            len(self.variant) <= MAX_VARIANT and self.variant.isprintable() and self.variant == self.variant.strip(),
            f"--name must be printable, without leading or trailing spaces, and at most {MAX_VARIANT} characters",
        )
        require(self.track in (None, *TRACKERS), f"--track must be {' or '.join(TRACKERS)}, got {self.track!r}")
        require(self.track_every >= 1, f"--track-every must be at least 1, got {self.track_every}")


NUMERICS = ("tf32", "compile")  # execution settings that change a run's numbers: compared on resume


def run_settings(protocol: Protocol, execution: Execution) -> dict[str, Any]:
    """Both halves as one flat dict, in field order: a run file's `run_config`."""
    return {**dataclasses.asdict(protocol), **dataclasses.asdict(execution)}


RUN_SETTING_NAMES = tuple(f.name for cls in (Protocol, Execution) for f in dataclasses.fields(cls))


@dataclass(frozen=True)
class OffPolicyConfig:
    """Settings shared by every replay-based algorithm (the QSM paper's protocol)."""

    batch_size: int = setting(
        256, "transitions per gradient update, per seed",
        f"QSM paper protocol ({QSM_TRAIN}: batch_size); SAC's paper and {TD3_CODE} main.py use 256 too",
    )
    gamma: float = setting(0.99, "discount factor of future rewards", f"{QSM_CONFIG}: discount; the same in SAC and TD3")
    tau: float = setting(
        0.005, "Polyak rate of the target critics: each update moves them this fraction toward the critics",
        f"{QSM_CONFIG}; the same in SAC and TD3",
    )
    warmup_steps: int = setting(
        10_000, "uniform-random environment steps before the first update (online only; offline has none)",
        f"QSM paper protocol, for every algorithm ({QSM_TRAIN}: start_training; TD3's main.py waits 25e3)",
    )
    replay_capacity: int = setting(
        1_000_000, "transitions the replay buffer keeps per seed; the oldest are overwritten first",
        f"QSM paper protocol ({QSM_TRAIN}: a buffer of max_steps); {TD3_CODE} utils.py: 1e6 too",
    )
    hidden_sizes: tuple[int, ...] = setting(
        (256, 256), "hidden layer widths of the actor and of each critic",
        f"SAC paper (Haarnoja et al. 2018: 2 layers of 256); {TD3_CODE} TD3.py",
    )

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        require(0.0 <= self.gamma <= 1.0, f"gamma must lie in [0, 1], got {self.gamma}")
        require(0.0 < self.tau <= 1.0, f"tau must lie in (0, 1], got {self.tau}")
        require(self.warmup_steps >= 0, f"warmup_steps must be non-negative, got {self.warmup_steps}")
        require(self.replay_capacity >= 1, f"replay_capacity must be at least 1, got {self.replay_capacity}")
        require_widths("hidden_sizes", self.hidden_sizes)
        require_float32(self)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def require_widths(name: str, widths: tuple[int, ...]) -> None:
    """A network's hidden layers: at least one, each at least one and at most MAX_WIDTH units wide."""
    require(
        len(widths) >= 1 and all(1 <= width <= MAX_WIDTH for width in widths),
        f"{name} must be positive layer widths of at most {MAX_WIDTH:.0e}, got {widths}",
    )


def require_float32(config: object) -> None:
    """Every float setting of a config within float32's range: a larger one is inf from the first step
    (or crashes the op that receives it); a merely huge one, such as a learning rate of 1e30, is allowed
    and shows up as a diverged run."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, float):
            within = abs(value) <= FLOAT32_MAX
            require(within, f"{field.name} must lie within float32's range (|x| <= 3.4e38), got {value:.3g}")


def apply_overrides(config: ConfigT, assignments: Sequence[str]) -> ConfigT:
    """Return `config` with each `key=value` assignment parsed against the field's type."""
    hints = field_types(type(config))
    changes: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {assignment!r}")
        changes[key] = parse_value(key, text.strip(), hints[known_key(key, hints)])
    return dataclasses.replace(config, **changes)


def variant_label(assignments: Sequence[str], config: object, defaults: object) -> str:
    """The label of a run whose `--set` assignments made `config` from `defaults`: `key=value` as typed (no
    spaces, the last of a repeated key), sorted by key, for the keys whose value differs from the default;
    "" when none does. The same changes give the same label in any order. A label that would be too long
    to name a directory is refused, naming --name, which the user did not give."""
    typed = {key.strip(): "".join(text.split()) for key, _, text in (a.partition("=") for a in assignments)}
    changed = sorted(key for key in typed if getattr(config, key) != getattr(defaults, key))
    label = " ".join(f"{key}={typed[key]}" for key in changed)
    require(
        len(label) <= MAX_VARIANT,
        f"the --set changes make a run label of {len(label)} characters, over {MAX_VARIANT}: give the run a --name",
    )
    return label


def from_table(cls: type[ConfigT], table: Mapping[str, Any]) -> ConfigT:
    """Build the dataclass `cls` from a TOML table, checking keys and value types like `--set` does.

    TOML values arrive typed, so they are checked rather than parsed: an int is no float's problem,
    but a string where a number belongs, or a bool where an int belongs, is refused.
    """
    hints = field_types(cls)
    values = {known_key(key, hints): check_value(key, value, hints[key]) for key, value in table.items()}
    for field in dataclasses.fields(cls):
        has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        require(has_default or field.name in values or not field.init, f"missing key {field.name!r}")
    return cls(**values)


def field_types(cls: type) -> dict[str, Any]:
    """The settable fields of a config dataclass and their resolved annotations."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def known_key(key: str, hints: Mapping[str, Any]) -> str:
    if key not in hints:
        raise ConfigError(f"unknown key {key!r}{did_you_mean(key, hints)}; valid keys: {', '.join(hints)}")
    return key


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def parse_value(key: str, text: str, annotation: Any) -> Any:
    """Parse `text` as `annotation`: int, float, bool, str, a Literal of strings, tuple[X, ...] or `X | None`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return check_value(key, text, annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if text.lower() == "none":
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return parse_value(key, text, inner)
    if origin is tuple:
        inner = unbracketed(text)
        items = [item.strip() for item in inner.split(",")]
        if not inner.strip() or any(not item or " " in item for item in items):
            raise ConfigError(
                f"bad value for {key}: expected a comma-separated list such as 256,256 or (256, 256), got {text!r}"
            )
        return tuple(parse_value(key, item, args[0]) for item in items)
    parsers = {int: _parse_int, float: _parse_float, bool: _parse_bool, str: str}
    try:
        return parsers[annotation](text)
    except (ValueError, KeyError):
        name = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"bad value for {key}: {text!r} is not a valid {name}") from None


BRACKETS = {"(": ")", "[": "]"}


def unbracketed(text: str) -> str:
    """`(256, 256)` (as `qsmbench list` prints a tuple) or `[256, 256]` (as TOML and JSON write it) -> `256, 256`."""
    if len(text) >= 2 and BRACKETS.get(text[0]) == text[-1]:
        return text[1:-1]
    return text


KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def check_value(key: str, value: Any, annotation: Any) -> Any:
    """`value`, already typed (e.g. by TOML), checked against `annotation`; tuples arrive as lists."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return None if value is None else check_value(key, value, inner)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(check_value(key, item, args[0]) for item in value)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if isinstance(value, bool) != (annotation is bool) or not isinstance(value, annotation):
        raise ConfigError(f"{key} must be {KIND_NAMES.get(annotation, annotation)}, got {value!r}")
    return value


def _parse_int(text: str) -> int:
    """Accepts `256` and also `1e6`-style integers."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _parse_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return value


def _parse_bool(text: str) -> bool:
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text.lower()]
