"""relax QSM's update rule against the source's update written out (official_relax_qsm.py), and its parts."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from official_relax_qsm import Net, OfficialRelaxQSM, relu_mlp
from support import CPU, assert_same_weights, make_batch, run_cli, update_side_by_side

from qsmbench.algorithms.blocks.updates import optimizer_step
from qsmbench.algorithms.qsm_relax import QSMRelax, QSMRelaxConfig, best_of, langevin
from qsmbench.algorithms.state import load_state, training_state

OBS_DIM, ACT_DIM, BATCH = 3, 2, 3
TINY = QSMRelaxConfig(
    hidden_sizes=(8,), actor_hidden_sizes=(8,), langevin_steps=3, particles=4, eval_particles=3, eval_restarts=2,
    critic_lr=3e-2, score_lr=3e-2, tau=0.3,
)


class ScriptedNoise:
    """Hands out the given tensors in order, as a Noise's normal draws."""

    def __init__(self, draws: Sequence[torch.Tensor]):
        self.draws = list(draws)

    def normal(self, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        draw = self.draws.pop(0)
        assert tuple(draw.shape) == tuple(shape)
        return draw.to(device)

    def uniform(self, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        raise AssertionError("Langevin draws no uniforms")


def test_three_updates_match_the_source_update_written_out() -> None:
    """B = 3, d = 2, one hidden layer, learning rates and tau that show: both critics, their targets and the
    score field after 3 updates drawing the same random numbers."""
    agent = QSMRelax(OBS_DIM, ACT_DIM, [0], CPU, TINY)
    official = OfficialRelaxQSM(agent, TINY, ACT_DIM)
    update_side_by_side(agent, official, 3, OBS_DIM, ACT_DIM, BATCH)
    for member, (q, target) in enumerate([(official.q1, official.target_q1), (official.q2, official.target_q2)]):
        assert_same_weights(Net(relu_mlp(agent.critic.mlp, member), True), q)
        assert_same_weights(Net(relu_mlp(agent.critic_target.mlp, member), True), target)
    assert_same_weights(Net(relu_mlp(agent.score), False), official.q_score)
    moved = Net(relu_mlp(QSMRelax(OBS_DIM, ACT_DIM, [0], CPU, TINY).score), False)  # the check is not vacuous
    assert any(not torch.allclose(a, b) for a, b in zip(moved.parameters(), official.q_score.parameters(), strict=True))


def test_training_action_is_the_sources_get_action() -> None:
    """After 2 updates: the training action is get_action with N = particles, the same draws."""
    agent = QSMRelax(OBS_DIM, ACT_DIM, [0], CPU, TINY)
    official = OfficialRelaxQSM(agent, TINY, ACT_DIM)
    update_side_by_side(agent, official, 2, OBS_DIM, ACT_DIM, BATCH)
    obs = torch.randn(1, 5, OBS_DIM)
    torch.manual_seed(7)
    ours = agent.act(obs, explore=True)
    torch.manual_seed(7)
    torch.testing.assert_close(ours[0], official.get_action(obs[0], TINY.particles), atol=1e-5, rtol=1e-4)


def linear_critics(agent: QSMRelax, state_weights: Sequence[Sequence[float]], action_grads: Sequence[Sequence[float]]) -> None:
    """Make critic i exactly Q_i(s, a) = c_i . s + u_i . a: one hidden layer relu(x + 10) = x + 10 on the box."""
    first, last = agent.critic.mlp.layers
    width = OBS_DIM + ACT_DIM
    assert first.weight.shape[-1] == width
    with torch.no_grad():
        first.weight.copy_(torch.eye(width).expand_as(first.weight))
        first.bias.fill_(10.0)
        for i, (c, u) in enumerate(zip(state_weights, action_grads, strict=True)):
            w = torch.tensor([*c, *u])
            last.weight[0, i, :, 0] = w
            last.bias[0, i, 0, 0] = -10.0 * w.sum()


def test_the_score_target_is_the_gradient_of_the_smaller_critic_and_ties_take_critic_2() -> None:
    """Rows with q1 < q2, q1 > q2 and q1 == q2 (exactly): g* = u1, u2, u2; L_S and its gradient are those of
    mean over the B d elements of (S - g*)^2."""
    config = dataclasses.replace(TINY, hidden_sizes=(OBS_DIM + ACT_DIM,))
    agent = QSMRelax(OBS_DIM, ACT_DIM, [0], CPU, config)
    u1, u2 = [1.0, 2.0], [-3.0, 0.5]
    linear_critics(agent, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [u1, u2])
    obs = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]])
    action = torch.zeros(1, 3, ACT_DIM)
    q, grad = agent.critic_values_and_gradients(obs, action)
    assert q[0, 0].tolist() == [0.0, 1.0, 1.0] and q[0, 1].tolist() == [1.0, 0.0, 1.0]
    torch.testing.assert_close(grad[0], torch.tensor([[u1] * 3, [u2] * 3]))
    loss, _ = agent.score_loss(obs, action)
    wanted_target = torch.tensor([[u1, u2, u2]])
    wanted = ((agent.score_field(obs, action) - wanted_target) ** 2).mean()
    torch.testing.assert_close(loss[0], wanted)
    ours = torch.autograd.grad(loss.sum(), list(agent.score.parameters()))
    theirs = torch.autograd.grad(wanted, list(agent.score.parameters()))
    for mine, hand in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, hand)


def test_the_score_step_uses_the_critics_after_their_step() -> None:
    """The score field after an update is one Adam step on L_S from the UPDATED critics; from the critics the
    update started with (an equally plausible order) it would differ, since critic_lr is not 0."""
    agent = QSMRelax(OBS_DIM, ACT_DIM, [0, 1], CPU, TINY)
    before = copy.deepcopy(agent)
    batch = make_batch(2, OBS_DIM, ACT_DIM, BATCH)
    agent.update(batch)
    results = {}
    for critics in ("updated", "old"):
        replay = copy.deepcopy(before)
        if critics == "updated":
            replay.critic.load_state_dict(agent.critic.state_dict())
        optimizer_step(replay.score_optimizer, replay.score_loss(batch.obs, batch.action)[0])
        results[critics] = list(replay.score.parameters())
    for mine, wanted in zip(agent.score.parameters(), results["updated"], strict=True):
        torch.testing.assert_close(mine, wanted, atol=0, rtol=0)
    assert any(not torch.equal(a, b) for a, b in zip(agent.score.parameters(), results["old"], strict=True))


def test_langevin_follows_the_formula_with_clipping() -> None:
    """K = 3 steps with injected x0 and z against x <- clip(x + delta/2 S(s, x) + sqrt(delta) z, -1, 1),
    delta = 1, 2/3, 1/3; one coordinate leaves the box and is clipped."""
    def score(obs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return obs[..., :2] - 2.0 * x

    obs = torch.tensor([[[0.5, -1.0, 3.0], [2.0, 0.0, 1.0]]])
    x0 = torch.tensor([[[0.1, -0.2], [0.9, 0.3]]])
    z = [torch.tensor([[[0.2, 0.0], [0.5, -0.1]]]), torch.tensor([[[-0.3, 0.4], [0.1, 0.2]]]),
         torch.tensor([[[0.05, -0.6], [-0.2, 0.0]]])]
    got = langevin(score, obs, ACT_DIM, 3, ScriptedNoise([x0, *z]))
    x, clipped = x0.clone(), False
    for k, delta in enumerate([1.0, 2.0 / 3.0, 1.0 / 3.0]):
        free = x + delta / 2 * (obs[..., :2] - 2.0 * x) + delta**0.5 * z[k]
        clipped |= bool((free.abs() > 1).any())
        x = free.clamp(-1, 1)
    assert clipped
    torch.testing.assert_close(got, x)


def test_best_of_takes_the_largest_and_the_first_on_a_tie() -> None:
    """torch.argmax returns the first maximum; best_of keeps it (sample-major rows, 3 samples, 2 states)."""
    assert torch.argmax(torch.tensor([1.0, 3.0, 3.0, 2.0])).item() == 1
    actions = torch.arange(12.0).view(1, 6, 2)  # sample s, state i at row s * 2 + i
    q = torch.tensor([[0.0, 5.0, 2.0, 5.0, 2.0, 1.0]])  # state 0: 0, 2, 2 -> sample 1 (tie with 2); state 1: 5, 5, 1 -> 0
    torch.testing.assert_close(best_of(q, actions, 3), torch.stack([actions[0, 2], actions[0, 1]]).unsqueeze(0))
    q = torch.tensor([[0.0, 1.0, 2.0, 0.0, 3.0, 4.0]])  # no ties: the best are samples 2 and 2
    torch.testing.assert_close(best_of(q, actions, 3), torch.stack([actions[0, 4], actions[0, 5]]).unsqueeze(0))


def test_evaluation_is_the_best_of_all_restarts() -> None:
    """The evaluation action has the largest min Q over eval_restarts x eval_particles chains drawn alike."""
    agent = QSMRelax(OBS_DIM, ACT_DIM, [0, 1], CPU, TINY)
    obs = torch.randn(2, 4, OBS_DIM)
    torch.manual_seed(0)
    action = agent.act(obs, explore=False)
    torch.manual_seed(0)
    chains = langevin(agent.score_field, obs.repeat(1, 6, 1), ACT_DIM, TINY.langevin_steps)
    q = agent.critic(obs.repeat(1, 6, 1), chains).min(dim=1).values.view(2, 6, 4)
    chosen = agent.critic(obs, action).min(dim=1).values
    torch.testing.assert_close(chosen, q.max(dim=1).values)


def test_seeds_are_independent() -> None:
    """Changing seed 1's batch leaves every tensor of seed 0 bit-identical after 2 updates."""
    agent = QSMRelax(OBS_DIM, ACT_DIM, [0, 1], CPU, TINY)
    twin = copy.deepcopy(agent)
    batch, other = make_batch(2, OBS_DIM, ACT_DIM, BATCH), make_batch(2, OBS_DIM, ACT_DIM, BATCH, generator_seed=9)
    perturbed = type(batch)(**{name: torch.stack([getattr(batch, name)[0], getattr(other, name)[1]]) for name in vars(batch)})
    for update in range(2):
        torch.manual_seed(update)
        agent.update(batch)
        torch.manual_seed(update)
        twin.update(perturbed)
    for module in ("critic", "critic_target", "score"):
        for a, b in zip(getattr(agent, module).parameters(), getattr(twin, module).parameters(), strict=True):
            assert torch.equal(a[0], b[0])
    assert not torch.equal(agent.score.layers[0].weight[1], twin.score.layers[0].weight[1])


def test_defaults_follow_the_dacer_script() -> None:
    config = QSMRelaxConfig()
    assert config.hidden_sizes == config.actor_hidden_sizes == (256, 256, 256)
    assert (config.langevin_steps, config.particles, config.eval_particles, config.eval_restarts) == (20, 64, 64, 16)
    assert (config.critic_lr, config.score_lr, config.score_lr_end, config.exploration_noise) == (1e-4, 1e-4, None, 0.0)
    assert (config.batch_size, config.gamma, config.tau) == (256, 0.99, 0.005)


def score_rates(agent: QSMRelax, updates: int) -> list[float]:
    """The score field's learning rate at each of `updates` updates (the rate each Adam step used)."""
    rates = []
    for update in range(updates):
        rates.append(agent.score_optimizer.param_groups[0]["lr"])
        torch.manual_seed(update)
        agent.update(make_batch(1, OBS_DIM, ACT_DIM, BATCH))
    return rates


def test_the_sdac_copys_score_rate_decays_as_optax_linear_schedule_and_resumes() -> None:
    """relax/algorithm/qsm.py:29-35 of the SDAC copy: optax.linear_schedule(3e-2 -> 3e-3, transition_begin 2,
    transition_steps 2) counted in score steps: 3e-2 for steps 0-2, 1.65e-2 at 3, 3e-3 from 4 on. The count is
    training state, so an agent loaded from a checkpoint goes on where it was; the default stays constant."""
    decaying = dataclasses.replace(TINY, score_lr_end=3e-3, score_lr_decay_start=2, score_lr_decay_steps=2)
    agent = QSMRelax(OBS_DIM, ACT_DIM, [0], CPU, decaying)
    assert score_rates(agent, 6) == pytest.approx([3e-2, 3e-2, 3e-2, 1.65e-2, 3e-3, 3e-3], rel=1e-12)
    saved = QSMRelax(OBS_DIM, ACT_DIM, [0], CPU, decaying)
    score_rates(saved, 3)
    resumed = QSMRelax(OBS_DIM, ACT_DIM, [0], CPU, decaying)
    load_state(resumed, training_state(saved))
    assert score_rates(resumed, 3) == pytest.approx([1.65e-2, 3e-3, 3e-3], rel=1e-12)
    assert score_rates(QSMRelax(OBS_DIM, ACT_DIM, [0], CPU, TINY), 5) == [3e-2] * 5


def test_list_shows_qsm_relax(capfd: pytest.CaptureFixture[str]) -> None:
    result = run_cli(["list"], capfd)
    assert result.returncode == 0, result.stderr
    assert "qsm_relax" in result.stdout and "langevin_steps" in result.stdout


def test_a_short_run_writes_its_files(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """qsmbench run with 2 seeds on Pendulum-v1: small networks and chains, a few updates after the warm-up."""
    sets = ["warmup_steps=200", "batch_size=16", "hidden_sizes=32,32", "actor_hidden_sizes=32,32", "langevin_steps=3",
            "particles=4", "eval_particles=2", "eval_restarts=2"]
    args = ["run", "--algo", "qsm_relax", "--env", "Pendulum-v1", "--seeds", "2", "--steps", "300", "--eval-every", "150",
            "--eval-episodes", "1", "--device", "cpu", "--out", str(tmp_path), "--name", "", "--quiet"]
    result = run_cli([*args, *[item for s in sets for item in ("--set", s)]], capfd)
    assert result.returncode == 0, result.stderr
    written = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*.parquet"))
    assert written == ["Pendulum-v1/qsm_relax/seed_0.parquet", "Pendulum-v1/qsm_relax/seed_1.parquet"], written
