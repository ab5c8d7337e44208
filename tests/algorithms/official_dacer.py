"""DACER's official update written out on one seed, for its test to compare with.

It follows the official JAX code step by step (happy-yan/DACER-Diffusion-with-Online-RL@848c1f2
relax/algorithm/dacer.py: stateless_update; relax/network/dacer.py: get_action, q_evaluate;
relax/network/blocks.py: DistributionalQNet2, DACERPolicyNet, scaled_sinusoidal_encoding, mlp;
relax/utils/diffusion.py: vp_beta_schedule, from_beta, p_sample) with torch's own layers: nn.Linear, nn.Mish,
softplus, and one torch.optim.Adam per optax state (optax.adam's defaults are torch's). Like the JAX code it
computes every gradient first, from the parameters the update started with, and then applies them.

The networks start from seed 0's weights of a qsmbench agent. Random draws are made from torch's global
generator in the order qsmbench makes them, so both sides see the same numbers, where the JAX code splits keys:
the reverse chain draws x_T and then each step's noise (none for the last step, whose noise the JAX code draws
and masks), the alpha noise follows the chain, both critics' z come as one (2, batch) draw, and the policy loss's
chain is sampled only on the updates that apply its gradient (the JAX code computes it every update and drops it
on the others, which draws nothing from the other keys). scikit-learn is not a dependency: the entropy loop calls
qsmbench's mixture fit one state at a time (its own test checks it against known mixtures).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from official_dipo import linear, sequential
from torch import Tensor, nn

from qsmbench.algorithms.dacer import mixture_entropy


def scaled_sinusoidal_encoding(t: Tensor, dim: int, theta: int = 10000) -> Tensor:
    scale = 1 / dim**0.5
    half_dim = dim // 2
    freq_seq = torch.arange(half_dim, dtype=torch.float32) / half_dim
    inv_freq = theta**-freq_seq
    emb = torch.einsum("...,j->...j", t.float(), inv_freq)
    return torch.cat((torch.sin(emb), torch.cos(emb)), dim=-1) * scale


class DistributionalQNet2(nn.Module):
    def __init__(self, critic: nn.Module, member: int):
        super().__init__()
        self.mlp = sequential(critic.mlp, member)

    def forward(self, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor]:
        output = self.mlp(torch.cat((obs, act), dim=-1))
        return output[..., 0], F.softplus(output[..., 1])


class DACERPolicyNet(nn.Module):
    """blocks.py DACERPolicyNet (SDAC's and DPMD's policy too) with one integer t for the batch (sampling) or
    one per sample (training)."""

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        self.time_dim = denoiser.time_features
        self.te1, self.te2 = linear(denoiser.time_mlp.layers[0]), linear(denoiser.time_mlp.layers[1])
        self.mlp = sequential(denoiser.mlp)

    def forward(self, obs: Tensor, act: Tensor, t: int | Tensor) -> Tensor:
        te = scaled_sinusoidal_encoding(torch.as_tensor(t).expand(obs.shape[:-1]), self.time_dim)
        te = self.te2(F.mish(self.te1(te)))
        return self.mlp(torch.cat((obs, act, te), dim=-1))


def vp_betas(T: int) -> np.ndarray:
    """relax/utils/diffusion.py vp_beta_schedule (DACER's): b_min 0.1, b_max 10, in float64."""
    t = np.arange(1, T + 1)
    b_max, b_min = 10.0, 0.1
    return 1 - np.exp(-b_min / T - 0.5 * (b_max - b_min) * (2 * t - 1) / T**2)


class GaussianDiffusion:
    """relax/utils/diffusion.py GaussianDiffusion: the coefficients of `betas` in float64 numpy, used as float32;
    the chain starts from `start_scale` N(0, I) (1 in DACER's copy of the file, 0.5 in SDAC's and DPMD's)."""

    def __init__(self, betas: np.ndarray, start_scale: float = 1.0):
        self.num_timesteps, self.start_scale = len(betas), start_scale
        alphas = 1.0 - betas
        alphas_cumprod = np.cumprod(alphas, axis=0)
        alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
        f32 = lambda a: torch.tensor(a, dtype=torch.float32)
        self.betas, self.alphas_cumprod = f32(betas), f32(alphas_cumprod)
        self.sqrt_alphas_cumprod = f32(np.sqrt(alphas_cumprod))
        self.sqrt_one_minus_alphas_cumprod = f32(np.sqrt(1.0 - alphas_cumprod))
        self.sqrt_recip_alphas_cumprod = f32(np.sqrt(1.0 / alphas_cumprod))
        self.sqrt_recipm1_alphas_cumprod = f32(np.sqrt(1.0 / alphas_cumprod - 1))
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        self.posterior_log_variance_clipped = f32(np.log(np.maximum(posterior_variance, 1e-20)))
        self.posterior_mean_coef1 = f32(betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod))
        self.posterior_mean_coef2 = f32((1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod))

    def p_sample(self, model, shape: tuple[int, ...]) -> Tensor:
        x = self.start_scale * torch.randn(shape)
        for t in reversed(range(self.num_timesteps)):
            noise_pred = model(t, x)
            x_recon = x * self.sqrt_recip_alphas_cumprod[t] - noise_pred * self.sqrt_recipm1_alphas_cumprod[t]
            x_recon = torch.clip(x_recon, -1, 1)
            model_mean = x_recon * self.posterior_mean_coef1[t] + x * self.posterior_mean_coef2[t]
            std = torch.exp(0.5 * self.posterior_log_variance_clipped[t])
            x = model_mean + std * torch.randn(shape) if t > 0 else model_mean  # (t > 0) masks the last noise
        return x

    def q_sample(self, t: Tensor, x_start: Tensor, noise: Tensor) -> Tensor:
        return self.sqrt_alphas_cumprod[t][:, None] * x_start + self.sqrt_one_minus_alphas_cumprod[t][:, None] * noise

    def get_recon(self, t: Tensor, x: Tensor, noise: Tensor) -> Tensor:
        return x * self.sqrt_recip_alphas_cumprod[t][:, None] - noise * self.sqrt_recipm1_alphas_cumprod[t][:, None]

    def reverse_samping_weighted_p_loss(self, noise: Tensor, weights: Tensor, model, t: Tensor, x_t: Tensor) -> Tensor:
        noise_pred = model(t, x_t)
        return torch.mean(weights[:, None] * (noise_pred - noise) ** 2)


def estimate_entropy(actions: Tensor, num_components: int, iterations: int) -> Tensor:
    """relax/algorithm/dacer.py estimate_entropy: a mixture per state (batch, sample, dim), the mean entropy."""
    total_entropy = [mixture_entropy(action.unsqueeze(0), num_components, iterations)[0] for action in actions]
    return sum(total_entropy) / len(total_entropy)


class OfficialDACER:
    """relax/algorithm/dacer.py DACER with relax/network/dacer.py DACERNet, on seed 0 of a qsmbench agent."""

    def __init__(self, agent: object, config: object, act_dim: int):
        self.config, self.act_dim = config, act_dim
        self.q1, self.q2 = DistributionalQNet2(agent.critic, 0), DistributionalQNet2(agent.critic, 1)
        self.target_q1, self.target_q2 = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.policy = DACERPolicyNet(agent.denoiser)
        self.log_alpha = torch.tensor(math.log(config.init_temperature), requires_grad=True)
        self.diffusion = GaussianDiffusion(vp_betas(config.diffusion_steps))
        self.target_entropy = config.target_entropy_per_dim * act_dim
        self.optims = {
            name: torch.optim.Adam(params, lr=config.critic_lr if name != "policy" else config.actor_lr)
            for name, params in [("q1", self.q1.parameters()), ("q2", self.q2.parameters()), ("policy", self.policy.parameters())]
        }
        self.alpha_optim = torch.optim.Adam([self.log_alpha], lr=config.temperature_lr)
        self.step, self.mean_q1_std, self.mean_q2_std, self.entropy = 0, -1.0, -1.0, 0.0

    def get_action(self, log_alpha: Tensor, obs: Tensor) -> Tensor:
        action = self.diffusion.p_sample(lambda t, x: self.policy(obs, x, t), (*obs.shape[:-1], self.act_dim))
        action = action + torch.randn(action.shape) * torch.exp(log_alpha) * self.config.noise_scale
        return action.clip(-1, 1)

    def get_deterministic_action(self, obs: Tensor) -> Tensor:
        """log_alpha = -inf: the chain alone (its noise from qsmbench's generator, not an observation hash)."""
        return self.diffusion.p_sample(lambda t, x: self.policy(obs, x, t), (*obs.shape[:-1], self.act_dim)).clip(-1, 1)

    def q_loss_fn(self, q: nn.Module, mean_q_std: float | Tensor, obs, action, q_backup, q_backup_sample):
        q_mean, q_std = q(obs, action)
        new_mean_q_std = torch.mean(q_std)
        tau = self.config.tau
        mean_q_std = (new_mean_q_std if mean_q_std == -1.0 else tau * new_mean_q_std + (1 - tau) * mean_q_std).detach()
        q_backup_bounded = (q_mean + torch.clip(q_backup_sample - q_mean, -3 * mean_q_std, 3 * mean_q_std)).detach()
        q_std_detach = torch.maximum(q_std, torch.tensor(0.0)).detach()
        epsilon = 0.1
        q_loss = -(mean_q_std**2 + epsilon) * torch.mean(
            q_mean * (q_backup - q_mean).detach() / (q_std_detach**2 + epsilon)
            + q_std * ((q_mean.detach() - q_backup_bounded) ** 2 - q_std_detach**2) / (q_std_detach**3 + epsilon)
        )
        return q_loss, mean_q_std

    def update(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, done: Tensor) -> None:
        config, step = self.config, self.step
        log_alpha = self.log_alpha.detach()
        reward = reward * config.reward_scale
        with torch.no_grad():
            next_action = self.get_action(log_alpha, next_obs)
            z = torch.randn(2, obs.shape[0]).clip(-3.0, 3.0)  # q_evaluate's z of target q1 and of target q2
            next_q1_mean, next_q1_std = self.target_q1(next_obs, next_action)
            next_q2_mean, next_q2_std = self.target_q2(next_obs, next_action)
            next_q1_sample, next_q2_sample = next_q1_mean + next_q1_std * z[0], next_q2_mean + next_q2_std * z[1]
            next_q_mean = torch.minimum(next_q1_mean, next_q2_mean)
            next_q_sample = torch.where(next_q1_mean < next_q2_mean, next_q1_sample, next_q2_sample)
            q_backup = reward + (1 - done) * config.gamma * next_q_mean
            q_backup_sample = reward + (1 - done) * config.gamma * next_q_sample

        grads = {}
        for name, q in [("q1", self.q1), ("q2", self.q2)]:
            old = self.mean_q1_std if name == "q1" else self.mean_q2_std
            q_loss, new = self.q_loss_fn(q, old, obs, action, q_backup, q_backup_sample)
            grads[name] = torch.autograd.grad(q_loss, list(q.parameters()))
            if name == "q1":
                self.mean_q1_std = new
            else:
                self.mean_q2_std = new

        if step % config.entropy_every == 0:
            with torch.no_grad():
                n = config.entropy_samples
                actions = self.get_action(log_alpha, obs.repeat_interleave(n, dim=0)).view(obs.shape[0], n, -1)
                self.entropy = estimate_entropy(actions, config.mixture_components, config.em_iterations).float()

        if step % config.policy_delay == 0:
            new_action = self.get_action(log_alpha, obs)
            q1_mean, _ = self.q1(obs, new_action)
            q2_mean, _ = self.q2(obs, new_action)
            policy_loss = torch.mean(-torch.minimum(q1_mean, q2_mean))
            grads["policy"] = torch.autograd.grad(policy_loss, list(self.policy.parameters()))

        log_alpha_loss = -torch.mean(self.log_alpha * (-self.entropy + self.target_entropy))
        (alpha_grad,) = torch.autograd.grad(log_alpha_loss, [self.log_alpha])

        for name, module in [("q1", self.q1), ("q2", self.q2), ("policy", self.policy)]:
            if name in grads:
                for param, grad in zip(module.parameters(), grads[name]):
                    param.grad = grad
                self.optims[name].step()
        if step % config.entropy_every == 0:
            self.log_alpha.grad = alpha_grad
            self.alpha_optim.step()
        if step % config.policy_delay == 0:
            with torch.no_grad():
                for q, target in [(self.q1, self.target_q1), (self.q2, self.target_q2)]:
                    for param, target_param in zip(q.parameters(), target.parameters()):
                        target_param.copy_(config.tau * param + (1 - config.tau) * target_param)
        self.step += 1
