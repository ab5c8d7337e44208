"""DIPO's and QVPO's official updates written out on one seed, for their tests to compare with.

Everything here follows the official code line by line (BellmanTimeHut/DIPO@c6d8d1b agent/DiPo.py,
agent/diffusion.py, agent/model.py, agent/helpers.py; wadx2019/qvpo@40a1974 agent/qvpo.py,
agent/diffusion.py, agent/q_transform.py) with torch's own layers: nn.Linear, nn.Mish, torch.optim.Adam,
clip_grad_norm_. The networks start from seed 0's weights of a qsmbench agent. Random draws are made in the
order qsmbench makes them, so both sides see the same numbers: the official sampler also draws (and masks)
a noise at its last step, and its memories draw indices with numpy; both are left out here. (np.sqrt of
the schedule tensors in the official code is torch.sqrt here: the same values.)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from support import assert_same_weights as same_weights
from torch import Tensor, nn


def linear(batched: nn.Module, member: int | None = None) -> nn.Linear:
    """An nn.Linear holding seed 0's (and ensemble member's) weights of a qsmbench BatchedLinear."""
    weight, bias = batched.weight[0], batched.bias[0]
    if member is not None:
        weight, bias = weight[member], bias[member]
    layer = nn.Linear(weight.shape[0], weight.shape[1])
    with torch.no_grad():
        layer.weight.copy_(weight.T)
        layer.bias.copy_(bias.reshape(-1))
    return layer


def assert_same_weights(ours: nn.Module, official: nn.Module) -> None:
    """Our batched network (seed 0) holds the official network's weights, layer by layer."""
    same_weights(Model(ours) if hasattr(ours, "time_mlp") else Critic(ours), official)


def sequential(batched_mlp: nn.Module, member: int | None = None, activation: type[nn.Module] = nn.Mish) -> nn.Sequential:
    """Linear, Mish, ..., Linear: agent/model.py's layer stacks (and, with another `activation`, relax's), from seed 0
    (and ensemble `member`) of a qsmbench BatchedMLP."""
    layers: list[nn.Module] = []
    for index, batched in enumerate(batched_mlp.layers):
        if index:
            layers.append(activation())
        layers.append(linear(batched, member))
    return nn.Sequential(*layers)


class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        half_dim = self.dim // 2
        emb = math.log(10000) / (half_dim - 1)
        emb = torch.exp(torch.arange(half_dim) * -emb)
        emb = x[:, None] * emb[None, :]
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


class Model(nn.Module):
    """agent/model.py: Model, eps(x, time, state) with input [x, t, state]."""

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        self.time_mlp = nn.Sequential(SinusoidalPosEmb(denoiser.time_features), *sequential(denoiser.time_mlp))
        self.layer = sequential(denoiser.mlp)

    def forward(self, x: Tensor, time: Tensor, state: Tensor) -> Tensor:
        return self.layer(torch.cat([x, self.time_mlp(time), state], dim=-1))


class Critic(nn.Module):
    """agent/model.py: Critic, q1_model and q2_model on [state, action]."""

    def __init__(self, critic: nn.Module):
        super().__init__()
        self.q1_model, self.q2_model = sequential(critic.mlp, 0), sequential(critic.mlp, 1)

    def forward(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([state, action], dim=-1)
        return self.q1_model(x), self.q2_model(x)


def cosine_beta_schedule(timesteps: int, s: float = 0.008) -> Tensor:
    steps = timesteps + 1
    x = np.linspace(0, steps, steps)
    alphas_cumprod = np.cos(((x / steps) + s) / (1 + s) * np.pi * 0.5) ** 2
    alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
    betas = 1 - (alphas_cumprod[1:] / alphas_cumprod[:-1])
    return torch.tensor(np.clip(betas, a_min=0, a_max=0.999), dtype=torch.float32)


class Diffusion:
    """agent/diffusion.py: Diffusion's sampler and loss, clip_denoised and predict_epsilon on."""

    def __init__(self, model: Model, n_timesteps: int, noise_ratio: float):
        self.model, self.n_timesteps, self.noise_ratio = model, n_timesteps, noise_ratio
        betas = cosine_beta_schedule(n_timesteps)
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, axis=0)
        alphas_cumprod_prev = torch.cat([torch.ones(1), alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = torch.sqrt(alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = torch.sqrt(1.0 - alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = torch.sqrt(1.0 / alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = torch.sqrt(1.0 / alphas_cumprod - 1)
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        self.posterior_log_variance_clipped = torch.log(torch.clamp(posterior_variance, min=1e-20))
        self.posterior_mean_coef1 = betas * torch.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - alphas_cumprod_prev) * torch.sqrt(alphas) / (1.0 - alphas_cumprod)

    @torch.no_grad()
    def sample(self, state: Tensor, noise_ratio: float | None = None) -> Tensor:
        ratio = self.noise_ratio if noise_ratio is None else noise_ratio
        x = torch.randn(state.shape[0], self.model.layer[-1].out_features)
        for i in reversed(range(self.n_timesteps)):
            t = torch.full((state.shape[0],), i, dtype=torch.long)
            eps = self.model(x, t, state)
            x_recon = (self.sqrt_recip_alphas_cumprod[i] * x - self.sqrt_recipm1_alphas_cumprod[i] * eps).clamp_(-1.0, 1.0)
            mean = self.posterior_mean_coef1[i] * x_recon + self.posterior_mean_coef2[i] * x
            std = (0.5 * self.posterior_log_variance_clipped[i]).exp()
            x = mean + std * torch.randn_like(x) * ratio if i > 0 else mean  # no draw at t = 0 (see above)
        return x.clamp_(-1.0, 1.0)

    def loss(self, x_start: Tensor, state: Tensor, weights: Tensor | float = 1.0) -> Tensor:
        t = torch.randint(0, self.n_timesteps, (len(x_start),)).long()
        noise = torch.randn_like(x_start)
        x_noisy = self.sqrt_alphas_cumprod[t][:, None] * x_start + self.sqrt_one_minus_alphas_cumprod[t][:, None] * noise
        return (F.mse_loss(self.model(x_noisy, t, state), noise, reduction="none") * weights).mean()


@dataclass
class Transitions:
    """One seed's minibatch, as the official ReplayMemory returns it (masks = gamma, or 0 at a terminal)."""

    states: Tensor
    actions: Tensor
    rewards: Tensor
    next_states: Tensor
    masks: Tensor


class OfficialAgent:
    """The parts DiPo and QVPO share: model, critic, their targets and Adam(eps=1e-5) optimisers."""

    def __init__(self, agent: object, lr: float, critic_lr: float, n_timesteps: int, tau: float, grad_norm: float):
        self.actor = Diffusion(Model(agent.denoiser), n_timesteps, 1.0)
        self.actor_target = Diffusion(copy.deepcopy(self.actor.model), n_timesteps, 1.0)
        self.critic = Critic(agent.critic)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor_optimizer = torch.optim.Adam(self.actor.model.parameters(), lr=lr, eps=1e-5)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=critic_lr, eps=1e-5)
        self.tau, self.grad_norm, self.step = tau, grad_norm, 0

    def critic_update(self, batch: Transitions, next_actions: Tensor) -> None:
        current_q1, current_q2 = self.critic(batch.states, batch.actions)
        target_q1, target_q2 = self.critic_target(batch.next_states, next_actions)
        target_q = (batch.rewards + batch.masks * torch.min(target_q1, target_q2)).detach()
        critic_loss = F.mse_loss(current_q1, target_q) + F.mse_loss(current_q2, target_q)
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), max_norm=self.grad_norm, norm_type=2)
        self.critic_optimizer.step()

    def actor_step(self, actor_loss: Tensor) -> None:
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.model.parameters(), max_norm=self.grad_norm, norm_type=2)
        self.actor_optimizer.step()

    def targets_step(self, actor_target_every: int = 1) -> None:
        for param, target_param in zip(self.critic.parameters(), self.critic_target.parameters()):
            target_param.data.copy_(self.tau * param.data + (1 - self.tau) * target_param.data)
        if self.step % actor_target_every == 0:
            for param, target_param in zip(self.actor.model.parameters(), self.actor_target.model.parameters()):
                target_param.data.copy_(self.tau * param.data + (1 - self.tau) * target_param.data)
        self.step += 1


class OfficialDiPo(OfficialAgent):
    """agent/DiPo.py: train() and action_gradient()."""

    def __init__(self, agent: object, config: object, act_dim: int):
        super().__init__(agent, config.actor_lr, config.critic_lr, config.diffusion_steps, config.tau, config.max_grad_norm)
        self.config, self.action_grad_norm = config, act_dim * config.action_grad_ratio

    def action_gradient(self, states: Tensor, best_actions: Tensor) -> Tensor:
        best_actions = best_actions.clone().requires_grad_(True)
        actions_optim = torch.optim.Adam([best_actions], lr=self.config.action_lr, eps=1e-5)
        for _ in range(self.config.action_gradient_steps):
            best_actions.requires_grad_(True)
            q1, q2 = self.critic(states, best_actions)
            loss = -torch.min(q1, q2)
            actions_optim.zero_grad()
            loss.backward(torch.ones_like(loss))
            nn.utils.clip_grad_norm_([best_actions], max_norm=self.action_grad_norm, norm_type=2)
            actions_optim.step()
            best_actions.requires_grad_(False)
            best_actions.clamp_(-1.0, 1.0)
        return best_actions.detach()

    def train(self, batch: Transitions, memory_states: Tensor, memory_actions: Tensor) -> Tensor:
        """One update; the diffusion memory's draw is (memory_states, memory_actions)[idx]. Returns the improved actions."""
        self.critic_update(batch, self.actor_target.sample(batch.next_states))
        idx = torch.randint(0, len(memory_states), (len(batch.states),))
        states, best_actions = memory_states[idx], self.action_gradient(memory_states[idx], memory_actions[idx])
        self.actor_step(self.actor.loss(best_actions, states))
        self.targets_step(self.config.actor_target_every)
        return best_actions


class OfficialQVPO(OfficialAgent):
    """agent/qvpo.py: train() with --weighted --aug (q_transform qadv, chosen 1), agent/diffusion.py: sample_n."""

    def __init__(self, agent: object, config: object):
        super().__init__(agent, config.actor_lr, config.critic_lr, config.diffusion_steps, config.tau, config.max_grad_norm)
        self.config, self.entropy_alpha = config, config.entropy_weight

    def best_of(self, diffusion: Diffusion, critic: Critic, state: Tensor, times: int) -> tuple[Tensor, Tensor, Tensor]:
        raw_batch_size = state.shape[0]
        state = state.repeat(times, 1)
        action = diffusion.sample(state)
        q1, q2 = critic(state, action)
        q = torch.min(q1, q2)
        action = action.view(times, raw_batch_size, -1).transpose(0, 1)
        q = q.view(times, raw_batch_size, -1).transpose(0, 1)
        v = q.mean(dim=1, keepdim=True)
        _, q_idx = torch.max(q, dim=1, keepdim=True)
        best = action.gather(dim=1, index=q_idx.repeat(1, 1, action.shape[-1])).view(raw_batch_size, -1)
        return best, q.gather(dim=1, index=q_idx).view(raw_batch_size, 1), v

    def train(self, batch: Transitions, memory_states: Tensor, steps: int) -> None:
        """One update at environment step `steps` (main.py then sets the entropy weight from it)."""
        with torch.no_grad():
            next_actions = self.best_of(self.actor_target, self.critic_target, batch.next_states, self.config.target_samples)[0]
        self.critic_update(batch, next_actions)
        batch_size = len(batch.states)
        states = memory_states[torch.randint(0, len(memory_states), (batch_size,))]
        with torch.no_grad():
            best_actions, q, v = self.best_of(self.actor, self.critic, states, self.config.train_samples)
        q = (q.view(batch_size, 1, 1) - v).clamp_(min=0.0).view(batch_size, 1)
        copies = self.config.entropy_samples
        rand_states = states.unsqueeze(0).expand(copies, -1, -1).contiguous().view(batch_size * copies, -1)
        rand_actions = torch.empty(batch_size * copies, best_actions.shape[-1]).uniform_(-1, 1)
        rand_q = q.unsqueeze(0).expand(copies, -1, -1).contiguous().view(batch_size * copies, -1) * self.entropy_alpha
        actions = torch.cat([best_actions, rand_actions], dim=0)
        states = torch.cat([states, rand_states], dim=0)
        self.actor_step(self.actor.loss(actions, states, weights=torch.cat([q, rand_q], dim=0)))
        self.targets_step()
        alpha = self.config.entropy_weight
        self.entropy_alpha = min(alpha, max(self.config.entropy_weight_min, alpha - steps / self.config.entropy_decay_steps * alpha))
