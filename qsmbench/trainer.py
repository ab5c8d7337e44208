"""The seed-batched off-policy training loop, online (from env steps) or offline (from a dataset).

One step of the run, for all seeds at once, online:

    act (random during warm-up, else agent.act)  ->  EnvBatch.step  ->  SeedBatchedReplay.add
    ->  agent.update(replay.sample())  ->  on the evaluation grid: Evaluator, then RunFiles.write

and offline (`--dataset`), where a step is one gradient step:

    agent.update(OfflineDataset.sample())  ->  on the evaluation grid: Evaluator, then RunFiles.write

The update and its diagnostics stay on the training device; diagnostics are averaged there and
read back only at evaluation time, so the per-step path has no host sync besides the action the
CPU simulator needs.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from algorithms import ALGORITHMS
from algorithms.base import Agent
from qsmbench.config import ConfigError, OffPolicyConfig, RunConfig
from qsmbench.datasets import OfflineDataset, load_offline_dataset
from qsmbench.envs import EnvBatch, EnvSpec, env_spec
from qsmbench.evaluation import Evaluator
from qsmbench.progress import Reporter
from qsmbench.provenance import provenance
from qsmbench.replay import Batch, SeedBatchedReplay
from qsmbench.storage import RunFiles, check_can_write, run_path


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


@dataclass(frozen=True)
class PreparedRun:
    """A validated run: everything checked before the first file is touched."""

    run: RunConfig
    config: OffPolicyConfig
    device: torch.device
    env_id: str  # the environment evaluated in (the dataset's, offline)
    spec: EnvSpec
    paths: list[Path]
    dataset: OfflineDataset | None = None


def prepare(run: RunConfig, config: OffPolicyConfig, overwrite: bool) -> PreparedRun:
    """Validate device, environment or dataset, and output files; raises ConfigError on bad input."""
    if Path(run.out).exists() and not Path(run.out).is_dir():
        raise ConfigError(f"--out {run.out} exists and is not a directory")
    device = resolve_device(run.device)
    dataset = load_dataset_for(run, device) if run.dataset else None
    env_id = dataset.env_id if dataset else str(run.env)
    spec = env_spec(env_id)
    if dataset and (dataset.obs_dim, dataset.act_dim) != (spec.obs_dim, spec.act_dim):
        raise ConfigError(
            f"dataset {run.dataset} has obs/action dims {dataset.obs_dim}/{dataset.act_dim}, "
            f"but its environment {env_id} has {spec.obs_dim}/{spec.act_dim}"
        )
    paths = [run_path(run.out, run.task, run.algo, seed) for seed in run.seed_values]
    check_can_write(paths, overwrite)
    return PreparedRun(run, config, device, env_id, spec, paths, dataset)


def load_dataset_for(run: RunConfig, device: torch.device) -> OfflineDataset:
    if not ALGORITHMS[run.algo].offline:
        offline = ", ".join(name for name, algorithm in ALGORITHMS.items() if algorithm.offline)
        raise ConfigError(f"{run.algo} has no offline formulation, so it cannot train from --dataset (offline: {offline})")
    return load_offline_dataset(str(run.dataset), device)


class OnlineSource:
    """Transitions from acting: one env step per seed per run step, into the seed-batched replay."""

    def __init__(self, prepared: PreparedRun, agent: Agent):
        run, config = prepared.run, prepared.config
        self.agent, self.config, self.device, self.act_dim = agent, config, prepared.device, prepared.spec.act_dim
        self.warmup_rng = np.random.default_rng(np.random.SeedSequence([*run.seed_values, 1]))
        self.envs = EnvBatch(prepared.env_id, run.seed_values)
        capacity = min(config.replay_capacity, run.steps)
        self.replay = SeedBatchedReplay(len(run.seed_values), capacity, prepared.spec.obs_dim, self.act_dim, self.device)
        self.finished_returns: list[list[float]] = [[] for _ in run.seed_values]

    def next_batch(self, step: int) -> Batch | None:
        """Step the envs; a replay batch once the warm-up is over."""
        obs = self.envs.obs
        if step < self.config.warmup_steps:
            action = self.warmup_rng.uniform(-1.0, 1.0, (len(self.envs), self.act_dim)).astype(np.float32)
        else:
            obs_t = torch.as_tensor(obs, device=self.device).unsqueeze(1)
            action = self.agent.act(obs_t, explore=True).squeeze(1).cpu().numpy()
        result = self.envs.step(action)
        self.replay.add(obs, action, result.reward, result.next_obs, result.terminated)
        for seed_index in np.flatnonzero(~np.isnan(result.finished_returns)):
            self.finished_returns[seed_index].append(float(result.finished_returns[seed_index]))
        return self.replay.sample(self.config.batch_size) if step >= self.config.warmup_steps else None

    def pop_train_returns(self) -> list[list[float]]:
        """Returns of the training episodes finished since the last call, per seed."""
        returns, self.finished_returns = self.finished_returns, [[] for _ in self.finished_returns]
        return returns

    def close(self) -> None:
        self.envs.close()


class OfflineSource:
    """Transitions from a fixed dataset: every run step is a gradient step, with no env interaction."""

    def __init__(self, dataset: OfflineDataset, seeds: int, batch_size: int):
        self.dataset, self.seeds, self.batch_size = dataset, seeds, batch_size

    def next_batch(self, step: int) -> Batch:
        return self.dataset.sample(self.seeds, self.batch_size)

    def pop_train_returns(self) -> list[list[float]]:
        return [[] for _ in range(self.seeds)]

    def close(self) -> None:
        pass


class DiagnosticsMean:
    """Running per-seed means of the update diagnostics, accumulated on the training device."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, diagnostics: dict[str, Tensor]) -> None:
        for name, value in diagnostics.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + 1

    def pop(self) -> dict[str, np.ndarray]:
        means = {name: (total / self.counts[name]).cpu().numpy() for name, total in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means


class Trainer:
    def __init__(self, prepared: PreparedRun, reporter: Reporter):
        run, config, device = prepared.run, prepared.config, prepared.device
        self.run, self.config, self.device, self.reporter = run, config, device, reporter
        seeds = run.seed_values
        torch.manual_seed(int(np.random.SeedSequence(seeds).generate_state(1)[0]))
        self.agent: Agent = ALGORITHMS[run.algo].make_agent(
            prepared.spec.obs_dim, prepared.spec.act_dim, seeds, device, config
        )
        self.dataset = prepared.dataset
        self.source = (
            OfflineSource(self.dataset, len(seeds), config.batch_size) if self.dataset else OnlineSource(prepared, self.agent)
        )
        self.evaluator = Evaluator(prepared.env_id, seeds, run.eval_episodes, device)
        metadata = {
            "algo": run.algo,
            "env": prepared.env_id,
            "task": run.task,
            "dataset": run.dataset,
            "ref_scores": [self.dataset.ref_min_score, self.dataset.ref_max_score] if self.dataset else None,
            "run_config": dataclasses.asdict(run),
            "algo_config": dataclasses.asdict(config),
            **provenance(device),
        }
        self.files = RunFiles(prepared.paths, seeds, metadata)
        self.diagnostics = DiagnosticsMean()
        self.started = self.interval_start = time.perf_counter()

    def train(self) -> None:
        """Run to the step budget; the files always hold every completed evaluation and a status."""
        try:
            self._loop()
        except KeyboardInterrupt:
            self.files.write("interrupted")
            raise
        except Exception as error:
            self.files.write("failed", error="".join(traceback.format_exception(error)))
            raise
        finally:
            self.source.close()
            self.evaluator.close()
            self.reporter.close()
        self.files.write("complete")

    def _loop(self) -> None:
        eval_steps = set(self.run.eval_steps())
        self._evaluate(0)
        for step in range(self.run.steps):
            batch = self.source.next_batch(step)
            if batch is not None:
                self.diagnostics.add(self.agent.update(batch))
            self.reporter.advance(step + 1)
            if step + 1 in eval_steps:
                self._evaluate(step + 1)

    def _evaluate(self, step: int) -> None:
        """Evaluate all seeds, append one row per seed, rewrite the files (timing excludes evaluation)."""
        train_seconds = time.perf_counter() - self.interval_start
        interval_steps = step - (self.files.rows[0][-1]["step"] if self.files.rows[0] else 0)
        eval_start = time.perf_counter()
        returns = self.evaluator.evaluate(self.agent)
        diagnostics = self.diagnostics.pop()
        normalized = self.dataset.normalized_score(returns.mean(axis=1)) if self.dataset else None
        train_returns = self.source.pop_train_returns()
        rows = []
        for k, seed in enumerate(self.run.seed_values):
            train = train_returns[k]
            rows.append(
                {
                    "algo": self.run.algo,
                    "env": self.run.task,
                    "seed": seed,
                    "step": step,
                    "eval_return": float(returns[k].mean()),
                    "eval_return_std": float(returns[k].std()),
                    **({"eval_normalized_score": float(normalized[k])} if normalized is not None else {}),
                    "train_return": float(np.mean(train)) if train else float("nan"),
                    "train_episodes": len(train),
                    "wall_time_s": eval_start - self.started,
                    "sps": interval_steps / train_seconds if interval_steps else float("nan"),
                    **{name: float(values[k]) for name, values in diagnostics.items()},
                }
            )
        self.files.append(rows)
        self.files.write("running")
        self.reporter.evaluated(step, returns.mean(axis=1))
        self.interval_start = time.perf_counter()
