"""QSM as FlowRL runs it (qsm_flowrl): its update against FlowRL's policy loss written out by hand
(typoverflow/flow-rl@bae22f4 flowrl/agent/online/qsm.py:86-119, 218-223), its evaluation, and that the
settings it adds leave the official QSM as it was."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from support import CPU, make_batch, run_cli
from torch import Tensor, nn

from qsmbench.algorithms import ALGORITHMS
from qsmbench.algorithms.blocks.diffusion import SamplerOptions, reverse_chain
from qsmbench.algorithms.qsm import QSM, QSMConfig
from qsmbench.algorithms.qsm_flowrl import FLOWRL, QSMFlowRLConfig
from qsmbench.core.errors import ConfigError

OBS_DIM, ACT_DIM, BATCH = 3, 2, 3
TINY = dataclasses.replace(
    QSMFlowRLConfig(), hidden_sizes=(8, 8), actor_hidden_sizes=(8, 8), time_hidden_sizes=(4, 4), time_features=4,
    diffusion_steps=4, tau=0.5, critic_lr=1e-2, actor_lr=1e-2,
)  # a tau and a critic step that show: online, updated target and old target critics all differ


def flowrl_alpha(t: Tensor) -> Tensor:
    """CD:26-31: cosine_noise_schedule's alpha at continuous time t, s = 0.008."""
    s = 0.008
    return torch.cos(math.pi / 2.0 * (t.clamp(0.0, 0.9946) + s) / (1 + s)) / math.cos(math.pi / 2.0 * s / (1 + s))


def flowrl_policy_loss(agent: QSM, critic: nn.Module, obs: Tensor, action: Tensor, t: Tensor, xi: Tensor) -> Tensor:
    """FlowRL's policy loss of one seed (F:94-111, CD:107-115) at continuous times `t`, `critic` the ensemble g is
    taken from."""
    alpha = flowrl_alpha(t).unsqueeze(-1)
    sigma = (1.0 - alpha**2).sqrt()
    noisy = alpha * action + sigma * xi
    at = noisy.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(obs, at).mean(dim=1).sum(), at)  # grad_a of the mean over the ensemble
    temp = 0.1
    eps_target = -sigma * g / temp / (g.abs().mean() + 1e-6)
    eps = agent.denoiser(obs, noisy, t)
    return ((eps - eps_target) ** 2).mean()


def test_update_matches_flowrls_policy_loss_written_out() -> None:
    """One full update: the actor loss and the denoiser after its Adam step equal FlowRL's, with g from the mean of
    the target critics after this update's soft update; the online or pre-update targets give another loss."""
    agent = QSM(OBS_DIM, ACT_DIM, [0], CPU, TINY)
    hand = copy.deepcopy(agent)
    batch = make_batch(1, OBS_DIM, ACT_DIM, BATCH)
    torch.manual_seed(0)
    diagnostics = agent.update(batch)

    torch.manual_seed(0)
    hand.update_critic(batch)  # the same critic step (tested in test_qsm.py), drawing the same chain noise
    old_target = copy.deepcopy(hand.critic_target)
    with torch.no_grad():
        for target, online in zip(hand.critic_target.parameters(), hand.critic.parameters(), strict=True):
            target.copy_(TINY.tau * online + (1 - TINY.tau) * target)  # F:83, before the actor (F:218-223)
    t = torch.rand(1, BATCH) * (0.9946 - 0.001) + 0.001  # CD:110: uniform(minval=0.001, maxval=0.9946)
    xi = torch.randn_like(batch.action)
    loss = flowrl_policy_loss(hand, hand.critic_target, batch.obs, batch.action, t, xi)
    torch.testing.assert_close(diagnostics["actor_loss"][0], loss.detach())
    for other in (hand.critic, old_target):
        assert not torch.allclose(flowrl_policy_loss(hand, other, batch.obs, batch.action, t, xi), loss, rtol=1e-3)

    hand.actor_optimizer.zero_grad()
    loss.backward()
    hand.actor_optimizer.step()
    for mine, theirs in zip(agent.denoiser.parameters(), hand.denoiser.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs)
    assert agent.actor_optimizer.param_groups[0]["lr"] == TINY.actor_lr  # constant, no cosine decay


def test_score_normalisation_is_per_seed() -> None:
    """Changing seed 1's batch leaves seed 0's actor loss exactly as it was."""
    agent = QSM(OBS_DIM, ACT_DIM, [0, 1], CPU, TINY)
    batch = make_batch(2, OBS_DIM, ACT_DIM, BATCH)
    changed = dataclasses.replace(
        batch,
        obs=torch.stack([batch.obs[0], 5 * batch.obs[1] + 1]),
        action=torch.stack([batch.action[0], -batch.action[1]]),
    )
    losses = []
    for drawn in (batch, changed):
        torch.manual_seed(0)
        losses.append(copy.deepcopy(agent).update_actor(drawn)[0])
    assert torch.equal(losses[0][0], losses[1][0])
    assert not torch.allclose(losses[0][1], losses[1][1])


class TwoOptimaCritic(nn.Module):
    """`Q_j(s, a) = -||a - a*_j||^2` with a different optimum per critic, shaped `[seeds, 2, n]`."""

    def __init__(self) -> None:
        super().__init__()
        self.optima = nn.Parameter(torch.tensor([[0.5, -0.5], [0.3, 0.2]]))

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        return -((action.unsqueeze(1) - self.optima.view(1, 2, 1, 2)) ** 2).sum(-1)


def test_evaluation_keeps_the_best_of_n_chains_by_min_q_of_the_online_critics() -> None:
    candidates, states = 6, 8
    agent = QSM(OBS_DIM, ACT_DIM, [0], CPU, dataclasses.replace(TINY, eval_candidates=candidates))
    agent.critic = TwoOptimaCritic()
    obs = torch.randn(1, states, OBS_DIM)
    torch.manual_seed(1)
    action = agent.act(obs, explore=False)
    torch.manual_seed(1)
    samples = reverse_chain(agent.denoiser, agent.schedule, obs.repeat(1, candidates, 1), ACT_DIM, agent.sampler)
    q = TwoOptimaCritic()(None, samples).min(dim=1).values.view(candidates, states)
    best = q.argmax(dim=0)
    torch.testing.assert_close(action[0], samples.view(candidates, states, ACT_DIM)[best, torch.arange(states)])
    assert (best != 0).any()
    assert agent.sampler == SamplerOptions(clip_denoised=True, clip_every_step=False)


def test_the_schedule_is_flowrls_continuous_cosine_grid() -> None:
    """CD:35-40, 134-138: ts = 0.001 + 0.9945 linspace(0, 1, T + 1), alpha_hat_k = alpha(ts_k)^2, alpha_k =
    alpha_hat_k / alpha_hat_(k-1), beta_k = 1 - alpha_k; the chain's step k (FlowRL's i = k + 1) feeds ts_(k+1)."""
    agent = QSM(OBS_DIM, ACT_DIM, [0], CPU, dataclasses.replace(TINY, diffusion_steps=20))
    ts = 0.001 + (0.9946 - 0.001) * torch.linspace(0, 1, 21, dtype=torch.float64)
    alpha_hats = flowrl_alpha(ts) ** 2
    schedule = agent.schedule
    torch.testing.assert_close(schedule.step_times, ts[1:].float())
    torch.testing.assert_close(schedule.alpha_hats, alpha_hats[1:].float())
    torch.testing.assert_close(schedule.alpha_hats_prev, alpha_hats[:-1].float())
    torch.testing.assert_close(schedule.betas, (1 - alpha_hats[1:] / alpha_hats[:-1]).float())
    assert schedule.alpha_hats_prev[0] < 1, "the chain ends at ts_0 = 0.001, not at a noise-free step"


def test_the_chain_is_flowrls_ddpm_solver_written_out() -> None:
    """CD:159-174, 220: i = T .. 1, input t = ts_i, x0_hat = clip((x - sqrt(1 - ah_i) eps) / sqrt(ah_i)), x <- c1 x0_hat
    + c2 x + [i > 1] sqrt(beta_i) z; the last x (at ts_0) is FlowRL's action, which qsmbench clips to [-1, 1]."""
    steps, states = 6, 5
    agent = QSM(OBS_DIM, ACT_DIM, [0], CPU, dataclasses.replace(TINY, diffusion_steps=steps))
    obs = torch.randn(1, states, OBS_DIM)
    torch.manual_seed(3)
    ours = reverse_chain(agent.denoiser, agent.schedule, obs, ACT_DIM, agent.sampler)
    torch.manual_seed(3)
    ts = 0.001 + (0.9946 - 0.001) * torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    ah = flowrl_alpha(ts) ** 2
    alphas = torch.cat([torch.ones(1, dtype=torch.float64), ah[1:] / ah[:-1]])
    betas = 1 - alphas
    x = torch.randn(1, states, ACT_DIM)
    with torch.no_grad():
        for i in range(steps, 0, -1):
            eps = agent.denoiser(obs, x, torch.full((1, states), float(ts[i])))
            x0 = ((x - (1 - ah[i]).sqrt() * eps) / ah[i].sqrt()).clamp(-1, 1)
            mean = ah[i - 1].sqrt() * betas[i] / (1 - ah[i]) * x0 + alphas[i].sqrt() * (1 - ah[i - 1]) / (1 - ah[i]) * x
            x = (mean + betas[i].sqrt() * torch.randn_like(mean) if i > 1 else mean).float()
    torch.testing.assert_close(ours, x.clamp(-1, 1))


def test_the_denoiser_is_flowrls_backbone_written_out() -> None:
    """DD:83-95 with F:143-156: eps = trunk([a_t, mish(E2 mish(E1 s)), mish(T2 mish(T1 fourier(t)))]), every Dense layer
    orthogonal times sqrt 2 with zero biases (flowrl/module/initialization.py:9-21)."""
    agent = QSM(OBS_DIM, ACT_DIM, [0, 1], CPU, TINY)
    denoiser = agent.denoiser
    obs, action, t = torch.randn(2, 5, OBS_DIM), torch.randn(2, 5, ACT_DIM), torch.rand(2, 5)

    def layers(mlp: nn.Module, x: Tensor, last: bool) -> Tensor:
        for k, layer in enumerate(mlp.layers):
            x = torch.baddbmm(layer.bias, x, layer.weight)
            x = torch.nn.functional.mish(x) if last or k < len(mlp.layers) - 1 else x
        return x

    angles = 2 * math.pi * t.unsqueeze(-1) @ denoiser.time_features.weight
    time = layers(denoiser.time_mlp, torch.cat([angles.cos(), angles.sin()], dim=-1), last=True)
    state = layers(denoiser.state_encoder, obs, last=True)
    expected = layers(denoiser.mlp, torch.cat([action, state, time], dim=-1), last=False)
    torch.testing.assert_close(denoiser(obs, action, t), expected)
    assert state.shape[-1] == 128 and denoiser.state_encoder.layers[0].weight.shape[-2] == OBS_DIM
    for layer in [*denoiser.mlp.layers, *denoiser.state_encoder.layers, *denoiser.time_mlp.layers, *agent.critic.mlp.layers]:
        weight = layer.weight.flatten(0, -3)  # every seed's (and critic's) [in, out] matrix
        small = min(weight.shape[-2:])
        gram = weight.transpose(-1, -2) @ weight if weight.shape[-2] >= weight.shape[-1] else weight @ weight.transpose(-1, -2)
        torch.testing.assert_close(gram, 2 * torch.eye(small).expand_as(gram), atol=1e-5, rtol=0)
        assert not layer.bias.any()
        assert not torch.equal(weight[0], weight[-1])


def test_only_qsm_draws_continuous_times() -> None:
    """cosine_continuous needs an update that draws float times: the step-index updates refuse it in one line."""
    assert QSMConfig(schedule="cosine_continuous").schedule == "cosine_continuous"
    for algo in ("dql", "dipo", "qvpo", "dacer", "sdac", "dpmd"):
        with pytest.raises(ConfigError, match=r"cosine_continuous .* is QSM's only"):
            ALGORITHMS[algo].config_cls(schedule="cosine_continuous")


OFFICIAL = {
    "batch_size": 256, "gamma": 0.99, "tau": 0.005, "warmup_steps": 10000, "replay_capacity": 1000000,
    "hidden_sizes": (512, 512), "actor_hidden_sizes": (512, 512), "diffusion_steps": 5, "schedule": "vp",
    "actor_lr": 0.0003, "critic_lr": 0.0003, "exploration_noise": 0.1, "time_features": 64, "time_feature_std": 0.2,
    "time_hidden_sizes": (128, 128), "sampler_temperature": 1.0, "alpha": 50.0, "actor_lr_decay_steps": 2000000,
    "target_noise": 0.1,
}


def test_the_official_qsm_is_unchanged() -> None:
    """Its old defaults, the new settings at the official behaviour, and its actor loss bit for bit:
    mean (eps + 50 g)^2 with g from the online critics."""
    config = QSMConfig()
    assert dataclasses.asdict(config) == {
        **OFFICIAL, "score_critic": "online", "score_normalization": "none", "score_sigma_weight": False,
        "eval_candidates": 1, "sampler_clip": "every_step", "actor_lr_schedule": "cosine", "network_init": "xavier",
        "state_encoder_sizes": (), "time_final_activation": False,
    }
    small = dataclasses.replace(config, hidden_sizes=(8, 8), actor_hidden_sizes=(8, 8), time_hidden_sizes=(4, 4))
    agent = QSM(OBS_DIM, ACT_DIM, [0, 1], CPU, small)
    assert agent.sampler == SamplerOptions()
    hand = copy.deepcopy(agent)
    batch = make_batch(2, OBS_DIM, ACT_DIM, BATCH)
    torch.manual_seed(0)
    loss = agent.update_actor(batch)[0]
    torch.manual_seed(0)
    t = torch.randint(0, 5, (2, BATCH))
    noisy = hand.schedule.noise(batch.action, t, torch.randn_like(batch.action)).requires_grad_(True)
    (g,) = torch.autograd.grad(hand.critic(batch.obs, noisy).mean(dim=1).sum(), noisy)
    expected = ((hand.denoiser(batch.obs, noisy.detach(), t) + 50.0 * g) ** 2).mean((-2, -1))
    assert torch.equal(loss, expected.detach())


@pytest.mark.parametrize(
    "change",
    [{"score_critic": "both"}, {"score_normalization": "l2"}, {"eval_candidates": 0}, {"sampler_clip": "never"},
     {"actor_lr_schedule": "linear"}],
)
def test_the_new_settings_refuse_unknown_values(change: dict) -> None:
    with pytest.raises(ConfigError):
        QSMConfig(**change)


def test_every_flowrl_default_cites_flowrl() -> None:
    """Each setting whose default differs from the official QSM's says where in FlowRL's code it comes from."""
    official, flowrl = QSMConfig(), QSMFlowRLConfig()
    changed = [f for f in dataclasses.fields(QSMFlowRLConfig) if getattr(flowrl, f.name) != getattr(official, f.name)]
    assert {f.name for f in changed} >= {
        "alpha", "diffusion_steps", "schedule", "target_noise", "score_critic", "score_normalization",
        "score_sigma_weight", "eval_candidates", "sampler_clip", "hidden_sizes", "actor_hidden_sizes",
        "time_hidden_sizes", "warmup_steps", "actor_lr_schedule", "network_init", "state_encoder_sizes",
        "time_final_activation",
    }
    assert all(f.metadata["source"].startswith(FLOWRL) for f in changed)
    assert ALGORITHMS["qsm_flowrl"].make_agent is QSM


def test_list_shows_qsm_flowrl(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per row
    result = run_cli(["list"], capfd)
    assert result.returncode == 0, result.stderr
    assert "qsm_flowrl" in result.stdout
    explained = run_cli(["list", "--explain", "qsm_flowrl"], capfd)
    assert explained.returncode == 0, explained.stderr
    assert "flow-rl@bae22f4" in explained.stdout
