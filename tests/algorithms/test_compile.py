"""Compiled networks (`run --compile`) give the eager updates and actions; on CUDA, updates and acting
never synchronise with the host.

On the CPU the networks are compiled with the `aot_eager` backend: the graphs dynamo and AOTAutograd
capture, run as ATen ops, which is what a compiled update must agree with, at a few seconds per
algorithm (inductor's C++ code generation takes about 30 s per algorithm here). The CUDA tests compile
with inductor and run where a GPU is present.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch
from support import make_agent, make_batch, quick_overrides

from qsmbench.algorithms import ALGORITHMS
from qsmbench.algorithms.blocks.nets import compile_networks
from qsmbench.runs.spec import make_spec

ALGOS = tuple(ALGORITHMS)
OBS_DIM, ACT_DIM, SEEDS, UPDATES = 3, 2, [0, 1], 7


def agent_config(algo: str):
    """Small networks and short chains; Diffusion-QL's EMA starts at update 3 and moves every 2, so the run crosses it."""
    config = dataclasses.replace(make_spec(algo, quick_overrides(algo), env="Pendulum-v1").config, batch_size=16)
    if algo == "dql":
        config = dataclasses.replace(config, ema_start=3, ema_every=2, eval_candidates=4)
    return config


class CountingBackend:
    """`aot_eager`, counting the graphs it is handed: a compiled run that captured nothing would prove nothing."""

    def __init__(self) -> None:
        self.graphs = 0
        self.inner = torch._dynamo.lookup_backend("aot_eager")

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Callable[..., Any]:
        self.graphs += 1
        return self.inner(graph, example_inputs)


def trajectory(algo: str, device: torch.device, backend: str | CountingBackend | None) -> list[torch.Tensor]:
    """Act before any update (the end of the warm-up), then update and act, UPDATES times (crossing TD3's
    policy delay and Diffusion-QL's EMA start); every action, diagnostic and final parameter, on the CPU."""
    torch.manual_seed(0)
    agent = make_agent(algo, SEEDS, OBS_DIM, ACT_DIM, agent_config(algo), device)
    if backend is not None:
        compile_networks(agent, backend)
    obs = torch.randn(len(SEEDS), 4, OBS_DIM, generator=torch.Generator().manual_seed(1)).to(device)
    seen = [agent.act(obs, explore=True)]
    for step in range(UPDATES):
        batch = make_batch(len(SEEDS), OBS_DIM, ACT_DIM, batch=16, generator_seed=step)
        batch = type(batch)(**{name: value.to(device) for name, value in vars(batch).items()})
        seen += list(agent.update(batch).values())
        seen += [agent.act(obs, explore=True), agent.act(obs, explore=False)]
    seen += [value for module in vars(agent).values() if isinstance(module, torch.nn.Module) for value in module.state_dict().values()]
    return [value.detach().cpu() for value in seen]


def assert_same(compiled: list[torch.Tensor], eager: list[torch.Tensor], atol: float) -> None:
    assert len(compiled) == len(eager)
    for index, (got, want) in enumerate(zip(compiled, eager)):
        torch.testing.assert_close(got, want, atol=atol, rtol=1e-4, msg=lambda m, i=index: f"value {i}: {m}")


@pytest.mark.parametrize("algo", ALGOS)
def test_compiled_networks_give_the_eager_updates_on_cpu(algo: str) -> None:
    cpu, backend = torch.device("cpu"), CountingBackend()
    torch._dynamo.reset()
    assert_same(trajectory(algo, cpu, backend), trajectory(algo, cpu, None), atol=1e-5)
    assert backend.graphs >= 2  # at least the actor's and the critic's forward


def test_compiled_networks_keep_their_parameter_names() -> None:
    """Checkpoints and evaluation workers address parameters by name: compiling in place keeps them."""
    agent = ALGORITHMS["qsm"].make_agent(OBS_DIM, ACT_DIM, SEEDS, torch.device("cpu"), agent_config("qsm"))
    before = list(agent.denoiser.state_dict())
    compile_networks(agent, "aot_eager")
    assert list(agent.denoiser.state_dict()) == before


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("algo", ALGOS)
def test_compiled_networks_give_the_eager_updates_on_cuda(algo: str) -> None:
    gpu = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    assert_same(trajectory(algo, gpu, "inductor"), trajectory(algo, gpu, None), atol=1e-4)


@cuda
@pytest.mark.parametrize("algo", ALGOS)
def test_updates_and_acting_never_wait_for_the_gpu(algo: str) -> None:
    """No `.item()`, no host copy, no data-dependent shape in `update` or the training `act`: under
    sync-debug mode "error" any of them raises."""
    gpu = torch.device("cuda")
    agent = make_agent(algo, SEEDS, OBS_DIM, ACT_DIM, agent_config(algo), gpu)
    batch = make_batch(len(SEEDS), OBS_DIM, ACT_DIM, batch=16)
    batch = type(batch)(**{name: value.to(gpu) for name, value in vars(batch).items()})
    obs = torch.randn(len(SEEDS), 4, OBS_DIM, device=gpu)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(UPDATES):
            agent.update(batch)
            agent.act(obs, explore=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
