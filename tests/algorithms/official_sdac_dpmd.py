"""SDAC's and DPMD's official updates written out on one seed, for their tests to compare with.

It follows the official JAX code step by step (mahaitongdae/diffusion_policy_online_rl@a50cf41
relax/algorithm/sdac.py and dpmd.py: stateless_update; relax/network/diffv2.py: get_action, get_deterministic_action;
relax/network/blocks.py: QNet, DACERPolicyNet, scaled_sinusoidal_encoding, mlp; relax/utils/diffusion.py:
linear_beta_schedule, from_beta, p_sample, q_sample, get_recon, reverse_samping_weighted_p_loss) with torch's own
layers: nn.Linear, nn.Mish, and one torch.optim.Adam per optax state (optax.adam's defaults are torch's); the
policy's optax.linear_schedule is written out on its own count. Like the JAX code it computes every gradient
first, from the parameters the update started with, and then applies them.

The networks start from seed 0's weights of a qsmbench agent. Random draws are made from torch's global
generator in the order qsmbench makes them, so both sides see the same numbers, where the JAX code splits keys:
get_action draws all candidates' x_T (sample-major, as qsmbench's best-of), then each step's noise (none for the
last step, whose noise the JAX code draws and masks), then the alpha noise; the policy loss's draws (SDAC: proposal,
t, noise1, noise2; DPMD: t, noise) are made only on the updates that apply its gradient (the JAX code computes it every update
and drops it on the others, which draws nothing from the other keys).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from official_dacer import DACERPolicyNet, GaussianDiffusion
from official_dipo import sequential
from torch import Tensor, nn


class QNet(nn.Module):
    def __init__(self, critic: nn.Module, member: int):
        super().__init__()
        self.mlp = sequential(critic.mlp, member)

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        return self.mlp(torch.cat((obs, act), dim=-1)).squeeze(-1)


def sdac_diffusion(num_timesteps: int, scale: float = 0.8) -> GaussianDiffusion:
    """relax/utils/diffusion.py as SDAC and DPMD use it: betas = scale linspace(1e-4, 0.999, T), x_T ~ 0.5 N(0, I)."""
    return GaussianDiffusion(scale * np.linspace(1e-4, 0.999, num_timesteps, dtype=np.float64), start_scale=0.5)


def linear_schedule(init: float, end: float, transition_steps: int, transition_begin: int, count: int) -> float:
    """optax.linear_schedule at `count`."""
    count = min(max(count - transition_begin, 0), transition_steps)
    frac = 1 - count / transition_steps
    return (init - end) * frac + end


class OfficialSDAC:
    """relax/algorithm/sdac.py SDAC with relax/network/diffv2.py Diffv2Net, on seed 0 of a qsmbench agent."""

    def __init__(self, agent: object, config: object, act_dim: int):
        self.config, self.act_dim = config, act_dim
        self.q1, self.q2 = QNet(agent.critic, 0), QNet(agent.critic, 1)
        self.target_q1, self.target_q2 = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.policy = DACERPolicyNet(agent.denoiser)
        self.target_policy = copy.deepcopy(self.policy)
        self.log_alpha = torch.tensor(math.log(config.init_temperature), requires_grad=True)
        self.diffusion = sdac_diffusion(config.diffusion_steps)
        self.target_entropy = -0.9 * act_dim
        self.optims = {"q1": torch.optim.Adam(self.q1.parameters(), lr=config.critic_lr),
                       "q2": torch.optim.Adam(self.q2.parameters(), lr=config.critic_lr),
                       "policy": torch.optim.Adam(self.policy.parameters(), lr=config.actor_lr)}
        self.alpha_optim = torch.optim.Adam([self.log_alpha], lr=config.temperature_lr)
        self.policy_count = 0  # the policy optimiser's optax count
        self.step = 0

    def get_action(self, policy: nn.Module, log_alpha: Tensor, obs: Tensor, noise: bool = True) -> Tensor:
        """diffv2.py get_action with (policy, log_alpha, q1, q2); noise=False is get_deterministic_action."""
        n, particles = obs.shape[0], self.config.candidates
        wide_obs = obs.repeat(particles, 1)  # particle-major: the vmap over particle keys, stacked
        with torch.no_grad():
            acts = self.diffusion.p_sample(lambda t, x: policy(wide_obs, x, t), (particles * n, self.act_dim))
            qs = torch.minimum(self.q1(wide_obs, acts), self.q2(wide_obs, acts))
            acts, qs = acts.clip(-1, 1).view(particles, n, -1), qs.view(particles, n)
            best = torch.argmax(qs, dim=0, keepdim=True)
            act = torch.take_along_dim(acts, best[..., None], dim=0).squeeze(0)
        if not noise:
            return act
        return act + torch.randn(act.shape) * torch.exp(log_alpha) * self.config.noise_scale

    def critic_grads(
        self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, done: Tensor
    ) -> tuple[dict[str, tuple[Tensor, ...]], Tensor]:
        """Both critics' gradients of their mean squared TD error, and the target's next action."""
        config = self.config
        next_action = self.get_action(self.policy, self.log_alpha.detach(), next_obs)
        with torch.no_grad():
            q_target = torch.minimum(self.target_q1(next_obs, next_action), self.target_q2(next_obs, next_action))
            q_backup = reward * config.reward_scale + (1 - done) * config.gamma * q_target
        grads = {}
        for name, q in [("q1", self.q1), ("q2", self.q2)]:
            q_loss = torch.mean((q(obs, action) - q_backup) ** 2)
            grads[name] = torch.autograd.grad(q_loss, list(q.parameters()))
        return grads, next_action

    def apply(self, grads: dict[str, tuple[Tensor, ...]], step: int) -> None:
        """The Adam steps of the gradients computed (the policy's at its decayed rate), alpha's every
        `temperature_every` updates, and the targets every `policy_delay`."""
        config, log_alpha = self.config, self.log_alpha.detach()
        approx_entropy = 0.5 * self.act_dim * torch.log(2 * torch.pi * math.e * (0.1 * torch.exp(log_alpha)) ** 2)
        log_alpha_loss = -1 * self.log_alpha * (-1 * approx_entropy + self.target_entropy)
        (alpha_grad,) = torch.autograd.grad(log_alpha_loss, [self.log_alpha])
        for name, module in [("q1", self.q1), ("q2", self.q2), ("policy", self.policy)]:
            if name in grads:
                if name == "policy":
                    lr = linear_schedule(config.actor_lr, config.actor_lr_end, config.actor_lr_decay_steps,
                                         config.actor_lr_decay_start, self.policy_count)
                    self.optims[name].param_groups[0]["lr"] = lr
                    self.policy_count += 1
                for param, grad in zip(module.parameters(), grads[name]):
                    param.grad = grad
                self.optims[name].step()
        if step % config.temperature_every == 0:
            self.log_alpha.grad = alpha_grad
            self.alpha_optim.step()
        if step % config.policy_delay == 0:
            with torch.no_grad():
                for online, target in [(self.q1, self.target_q1), (self.q2, self.target_q2), (self.policy, self.target_policy)]:
                    for param, target_param in zip(online.parameters(), target.parameters()):
                        target_param.copy_(config.tau * param + (1 - config.tau) * target_param)

    def update(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, done: Tensor) -> None:
        config, step = self.config, self.step
        log_alpha = self.log_alpha.detach()
        grads, _ = self.critic_grads(obs, action, reward, next_obs, done)

        if step % config.policy_delay == 0:
            new_action = self.get_action(self.policy, log_alpha, obs)
            t = torch.randint(0, self.diffusion.num_timesteps, (obs.shape[0],))
            noise1 = torch.randn(action.shape)
            tilde_at = self.diffusion.q_sample(t, new_action, noise1)
            mc = config.reverse_samples  # sdac.py hard-codes reverse_mc_num = 64; the test shrinks it
            tilde_at = torch.repeat_interleave(tilde_at, mc, dim=0)
            t = torch.repeat_interleave(t, mc, dim=0)
            wide_obs = torch.repeat_interleave(obs, mc, dim=0)
            noise2 = torch.randn(action.shape[0] * mc, action.shape[1])
            with torch.no_grad():
                recon = self.diffusion.get_recon(t, tilde_at, noise2).clip(-1, 1)
                q_min = torch.minimum(self.q1(wide_obs, recon), self.q2(wide_obs, recon)) * 5.0 / torch.exp(log_alpha)
                q_reshape = q_min.reshape(-1, mc)
                z = torch.logsumexp(q_reshape, dim=1, keepdim=True)
                q_weights = torch.exp(q_reshape - z).flatten()
            loss = self.diffusion.reverse_samping_weighted_p_loss(
                noise2, q_weights, lambda t, x: self.policy(wide_obs, x, t), t, tilde_at
            )
            grads["policy"] = torch.autograd.grad(loss, list(self.policy.parameters()))

        self.apply(grads, step)  # sdac.py: the critics, the policy (when computed), alpha, the targets
        self.step += 1


class OfficialDPMD(OfficialSDAC):
    """relax/algorithm/dpmd.py DPMD with relax/network/diffv2.py Diffv2Net, on seed 0 of a qsmbench agent."""

    def __init__(self, agent: object, config: object, act_dim: int):
        super().__init__(agent, config, act_dim)
        self.running_mean, self.running_std = torch.tensor(0.0), torch.tensor(1.0)

    def update(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, done: Tensor) -> None:
        config, step = self.config, self.step
        log_alpha = self.log_alpha.detach()
        grads, next_action = self.critic_grads(obs, action, reward, next_obs, done)
        for name, q in [("q1", self.q1), ("q2", self.q2)]:  # the first critic step (dpmd.py:123-126)
            for param, grad in zip(q.parameters(), grads[name]):
                param.grad = grad
            self.optims[name].step()

        with torch.no_grad():
            q_min = torch.minimum(self.q1(next_obs, next_action), self.q2(next_obs, next_action))
            q_mean, q_std = q_min.mean(), q_min.std(correction=0)
            norm_q = q_min - self.running_mean / self.running_std
            scaled_q = norm_q.clip(-3.0, 3.0) / torch.exp(log_alpha)
            q_weights = torch.exp(scaled_q)
        if step % config.policy_delay == 0:
            t = torch.randint(0, self.diffusion.num_timesteps, (next_obs.shape[0],))
            noise = torch.randn(next_action.shape)
            x_noisy = self.diffusion.q_sample(t, next_action, noise)
            loss = torch.mean(q_weights.reshape(-1, 1) * (self.policy(next_obs, x_noisy, t) - noise) ** 2)
            grads["policy"] = torch.autograd.grad(loss, list(self.policy.parameters()))

        self.apply(grads, step)  # dpmd.py:182-185
        self.running_mean = self.running_mean + 0.001 * (q_mean - self.running_mean)
        self.running_std = self.running_std + 0.001 * (q_std - self.running_std)
        self.step += 1
