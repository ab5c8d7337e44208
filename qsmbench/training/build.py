"""A prepared run built into its parts: the agent, where its transitions come from, the evaluator, the
divergence watch, the diagnostics' sums and the recorder of its files. Nothing here runs a step."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from qsmbench.algorithms import Agent
from qsmbench.algorithms.blocks.nets import compile_networks
from qsmbench.algorithms.contract import Transitions
from qsmbench.runs.format import RunHeader
from qsmbench.runs.write import RunFiles
from qsmbench.training.collector import Collector
from qsmbench.training.diagnostics import DiagnosticsMean
from qsmbench.training.divergence import DivergenceWatch
from qsmbench.training.evaluation import Evaluator
from qsmbench.training.prepare import PreparedRun
from qsmbench.training.progress import Reporter
from qsmbench.training.provenance import provenance
from qsmbench.training.recording import Recorder
from qsmbench.training.replay import SeedBatchedReplay, make_replay


@dataclass
class RunParts:
    """Everything one seed-batched run is made of. Online, `collector` fills `replay`, which is the
    `transitions`; offline, `transitions` is the dataset and there is no collector or replay."""

    agent: Agent
    watch: DivergenceWatch
    transitions: Transitions
    learning_starts: int  # steps before the first update (online: the warm-up; offline: 0); Protocol.is_update_step
    replay: SeedBatchedReplay | None
    collector: Collector | None
    evaluator: Evaluator
    diagnostics: DiagnosticsMean  # summed until each evaluation
    tracked_diagnostics: DiagnosticsMean | None  # with --track: summed until each track_every step
    recorder: Recorder


def build(prepared: PreparedRun, reporter: Reporter) -> RunParts:
    """The parts of `prepared`, in an order that fixes every random stream: the same run, the same numbers."""
    spec, device, dims = prepared.spec, prepared.device, prepared.dims
    protocol, execution, config, seeds = spec.protocol, spec.execution, spec.config, spec.protocol.seed_values
    if device.type == "cuda":  # process-wide: set for every run, so one run's choice never leaks into the next
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = execution.tf32
    torch.manual_seed(int(np.random.SeedSequence(seeds).generate_state(1)[0]))
    agent: Agent = spec.algorithm.make_agent(dims.obs_dim, dims.act_dim, seeds, device, config)
    if execution.compile:
        compile_networks(agent)
    watch = DivergenceWatch(len(seeds))
    replay, collector = None, None
    transitions: Transitions
    if prepared.dataset is not None:
        transitions, learning_starts = prepared.dataset, 0
    else:
        capacity = min(config.replay_capacity, protocol.steps)
        replay = make_replay(spec.algorithm, agent, len(seeds), capacity, dims.obs_dim, dims.act_dim, device)
        collector = Collector(
            prepared.env_id, seeds, agent, replay, config.warmup_steps, watch, execution.env_workers, protocol.action_repeat
        )
        transitions, learning_starts = replay, config.warmup_steps
    evaluator = Evaluator(
        prepared.env_id, seeds, protocol.eval_episodes, device, execution.eval_workers, action_repeat=protocol.action_repeat
    )
    header = RunHeader(
        algo=spec.algo,
        task=protocol.task,
        env_id=prepared.env_id,
        dataset=protocol.dataset,
        ref_scores=prepared.dataset.ref_scores if prepared.dataset else None,
        run_config=spec.run_settings(),
        algo_config=dataclasses.asdict(config),
        variant=execution.variant,
        provenance=provenance(device),
    )
    recorder = Recorder(spec, RunFiles(prepared.paths, seeds, header), reporter, prepared.dataset)
    tracked = DiagnosticsMean(device) if execution.track else None
    return RunParts(
        agent, watch, transitions, learning_starts, replay, collector, evaluator, DiagnosticsMean(device), tracked, recorder
    )
