"""relax's QSM update written out on one seed, for test_qsm_relax.py to compare with.

It follows happy-yan/DACER-Diffusion-with-Online-RL@848c1f24a4aad44d34c66135007fa386e2d4ed05 step by step:
relax/algorithm/qsm.py:39-98 (stateless_update), relax/network/qsm.py:27-80 (get_action, get_deterministic_action,
get_q_score_from_gradient), relax/utils/langevin.py:14-35 (LangevinDynamics.sample), relax/network/blocks.py (QNet,
QScoreNet: an MLP on concat[obs, act]), with torch's own layers (nn.Linear, nn.ReLU), one torch.optim.Adam per optax
state (q1, q2, q_score; optax.adam's defaults are torch's) and optax.incremental_update written out. The per-sample
action gradient is torch.func's vmap of grad_and_value, as the source's jax.vmap(jax.value_and_grad).

The networks start from seed 0's weights of a qsmbench agent. Random draws come from torch's global generator in
the order qsmbench makes them, where the JAX code splits keys: the chains' x_0 (particle-major, as the vmap over
particle keys stacks them), then each step's noise z_k.
"""

from __future__ import annotations

import copy

import torch
from official_dipo import sequential
from torch import Tensor, nn
from torch.func import grad_and_value, vmap


def relu_mlp(batched_mlp: nn.Module, member: int | None = None) -> nn.Sequential:
    """relax/network/blocks.py mlp with relu: Linear, ReLU, ..., Linear."""
    return sequential(batched_mlp, member, nn.ReLU)


class Net(nn.Module):
    """QNet (squeezed) or QScoreNet: the MLP on concat[obs, act]."""

    def __init__(self, mlp: nn.Sequential, squeeze: bool):
        super().__init__()
        self.mlp, self.squeeze = mlp, squeeze

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        out = self.mlp(torch.cat((obs, act), dim=-1))
        return out.squeeze(-1) if self.squeeze else out


def incremental_update(new: nn.Module, old: nn.Module, step_size: float) -> None:
    """optax.incremental_update(new, old, step_size) into `old`: step_size new + (1 - step_size) old."""
    with torch.no_grad():
        for n, o in zip(new.parameters(), old.parameters(), strict=True):
            o.copy_(step_size * n + (1 - step_size) * o)


class OfficialRelaxQSM:
    """relax/algorithm/qsm.py QSM with relax/network/qsm.py QSMNet, on seed 0 of a qsmbench QSMRelax agent."""

    def __init__(self, agent: object, config: object, act_dim: int):
        self.config, self.act_dim = config, act_dim
        self.q1, self.q2 = Net(relu_mlp(agent.critic.mlp, 0), True), Net(relu_mlp(agent.critic.mlp, 1), True)
        self.target_q1, self.target_q2 = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.q_score = Net(relu_mlp(agent.score), False)
        self.optims = {"q1": torch.optim.Adam(self.q1.parameters(), lr=config.critic_lr),
                       "q2": torch.optim.Adam(self.q2.parameters(), lr=config.critic_lr),
                       "q_score": torch.optim.Adam(self.q_score.parameters(), lr=config.score_lr)}

    def langevin(self, obs: Tensor) -> Tensor:
        """langevin.py:14-35 with model(x) = q_score(obs, x)."""
        steps = self.config.langevin_steps
        x = torch.randn(obs.shape[0], self.act_dim)
        for t in range(steps):
            delta = 1 - t / steps
            noise = torch.randn(obs.shape[0], self.act_dim)
            x = x + delta / 2 * self.q_score(obs, x) + delta**0.5 * noise
            x = torch.clip(x, -1.0, 1.0)
        return x

    def get_action(self, obs: Tensor, num_particles: int) -> Tensor:
        """qsm.py:27-49: vmap over particle keys of (Langevin sample, min(q1, q2)), then argmax over particles."""
        n = obs.shape[0]
        with torch.no_grad():
            acts = self.langevin(obs.repeat(num_particles, 1)).view(num_particles, n, self.act_dim)
            qs = torch.minimum(self.q1(obs.expand(num_particles, n, -1), acts), self.q2(obs.expand(num_particles, n, -1), acts))
            best = torch.argmax(qs, dim=0, keepdim=True)
            return torch.take_along_dim(acts, best[..., None], dim=0).squeeze(0)

    def get_q_score_from_gradient(self, q: nn.Module, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor]:
        """qsm.py:75-80: jax.vmap(jax.value_and_grad(inner))(act, obs), inner(act, obs) = q(obs, act) unbatched."""
        grad, value = vmap(grad_and_value(lambda a, o: q(o, a)))(act, obs)
        return value.detach(), grad.detach()

    def update(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, done: Tensor) -> None:
        """stateless_update, qsm.py:43-85, in its order."""
        next_action = self.get_action(next_obs, self.config.particles)  # pre-update q1, q2
        with torch.no_grad():
            q_target = torch.minimum(self.target_q1(next_obs, next_action), self.target_q2(next_obs, next_action))
            q_backup = reward + (1 - done) * self.config.gamma * q_target
        for name, q in (("q1", self.q1), ("q2", self.q2)):
            self.optims[name].zero_grad()
            torch.mean((q(obs, action) - q_backup) ** 2).backward()
            self.optims[name].step()
        q1, q1_score = self.get_q_score_from_gradient(self.q1, obs, action)  # the updated critics
        q2, q2_score = self.get_q_score_from_gradient(self.q2, obs, action)
        q_minimum_score = torch.where(q1.reshape(-1, 1) < q2.reshape(-1, 1), q1_score, q2_score)
        self.optims["q_score"].zero_grad()
        torch.mean((self.q_score(obs, action) - q_minimum_score) ** 2).backward()
        self.optims["q_score"].step()
        incremental_update(self.q1, self.target_q1, self.config.tau)
        incremental_update(self.q2, self.target_q2, self.config.tau)
