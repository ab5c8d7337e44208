"""DPMD (Ma et al., ICML 2025, "Efficient Online Reinforcement Learning for Diffusion Policy", arXiv 2502.00361),
as the official code runs it.

Networks, acting, the critics' target and loss, alpha, the delays and the denoiser's learning-rate decay are
SDAC's (algorithms/sdac.py). Only the policy loss and the order of the critics' steps differ. Per seed, update k:

    a'   = best_of_N(eps_theta; s') + 0.1 alpha xi,  y = 0.2 r + gamma (1 - done) min_j Q'_j(s', a')
    L_Q  = sum_j mean_b (Q_j(s, a) - y)^2                      one Adam step of the critics now
    q    = min_j Q_j(s', a')                                   the updated critics, the target's a'
    w    = exp(clip(q - m / sigma, -3, 3) / alpha)             as coded: q - (m / sigma), no normalisation of w
    on every 2nd update (from update 0):
    L_pi = mean over (b, action dims) of w (eps_theta(s', a'_t, t) - eps)^2,  a'_t = sqrt(abar_t) a' + sqrt(1 - abar_t) eps
    then a second Adam step of the critics with the same gradients (as coded), alpha's step as SDAC's, and
    m <- m + 0.001 (mean_b q - m),  sigma <- sigma + 0.001 (std_b q - sigma)   (population std; from 0 and 1)

Defaults follow the official code, mahaitongdae/diffusion_policy_online_rl@a50cf41167b8d1ce89487f00684ac4d4691b090d
(relax/algorithm/dpmd.py and SDAC's files).

Kept as the code has it, though presumably not meant (docs/porting/sdac_dpmd.md): the weight's `q - m / sigma`
(operator precedence; `centred_weights=true` gives the presumably intended `(q - m) / sigma`) and the critics'
second Adam step with the same gradients, which advances Adam's count by two per update (`repeat_critic_step=false`
gives one step). Deviations are SDAC's, except that DPMD keeps its running mean and std (it uses them): they
are state, saved with checkpoints. The policy loss's draws (t, eps) are made only on the updates that apply
it; m and sigma move on every update, as in the code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from qsmbench.algorithms.blocks.updates import optimizer_step
from qsmbench.algorithms.contract import Algorithm, Batch
from qsmbench.algorithms.sdac import SDACFamilyAgent, SDACFamilyConfig
from qsmbench.core.config import SDAC_DPMD_CODE, setting

WEIGHT_CLIP = 3.0  # relax/algorithm/dpmd.py policy_loss_fn: norm_q.clip(-3, 3)
RUNNING_RATE = 0.001  # relax/algorithm/dpmd.py: running_mean + 0.001 (q_mean - running_mean)


@dataclass(frozen=True)
class DPMDConfig(SDACFamilyConfig):
    repeat_critic_step: bool = setting(
        True, "apply the critics' Adam step twice per update with the same gradients (as the official code does; "
        "presumably unintended)", f"{SDAC_DPMD_CODE} relax/algorithm/dpmd.py: q1/q2 param_update before and after the policy loss",
    )
    centred_weights: bool = setting(
        False, "weights exp(clip((q - m) / sigma, -3, 3) / alpha), presumably intended; off: the code's q - m / sigma",
        f"{SDAC_DPMD_CODE} relax/algorithm/dpmd.py: norm_q = q_min - running_mean / running_std",
    )


class DPMD(SDACFamilyAgent):
    def __init__(self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: DPMDConfig):
        super().__init__(obs_dim, act_dim, seeds, device, config, "dpmd")
        self.running_mean = torch.zeros(len(seeds), device=device)  # m and sigma of min_j Q_j(s', a')
        self.running_std = torch.ones(len(seeds), device=device)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        config, step = self.config, self.updates
        target, next_action = self.bellman_target(batch)
        critic_loss, q = self.critic_loss(batch, target)
        optimizer_step(self.critic_optimizer, critic_loss)
        diagnostics = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean((-2, -1))}
        with torch.no_grad():
            next_q = self.critic(batch.next_obs, next_action).min(dim=1).values  # the updated critics
            weight = self.weights(next_q)
        if step % config.policy_delay == 0:
            actor_loss = self.actor_loss(batch.next_obs, next_action, weight)
            self.step_actor(actor_loss)
            diagnostics["actor_loss"] = actor_loss.detach()
        if config.repeat_critic_step:
            self.critic_optimizer.step()  # the gradients of the first step are still in .grad
        self.finish_update(step)
        with torch.no_grad():
            self.running_mean += RUNNING_RATE * (next_q.mean(-1) - self.running_mean)
            self.running_std += RUNNING_RATE * (next_q.std(-1, correction=0) - self.running_std)
        return {**diagnostics, "alpha": self.log_alpha.detach().exp(), "weight_mean": weight.mean(-1)}

    def weights(self, q: Tensor) -> Tensor:
        """`exp(clip(q - m / sigma, -3, 3) / alpha)` `[seeds, batch]` (or `(q - m) / sigma` with centred_weights)."""
        mean, std = self.running_mean.unsqueeze(-1), self.running_std.unsqueeze(-1)
        normalised = (q - mean) / std if self.config.centred_weights else q - mean / std
        return (normalised.clamp(-WEIGHT_CLIP, WEIGHT_CLIP) / self.log_alpha.detach().exp().unsqueeze(-1)).exp()

    def actor_loss(self, next_obs: Tensor, next_action: Tensor, weight: Tensor) -> Tensor:
        """relax/utils/diffusion.py weighted_p_loss on the critics' target action a' at s', per seed."""
        seeds, n = weight.shape
        t = torch.randint(0, self.schedule.steps, (seeds, n), device=next_obs.device)
        eps = torch.randn_like(next_action)
        predicted = self.denoiser(next_obs, self.schedule.noise(next_action, t, eps), t)
        return (weight.unsqueeze(-1) * (predicted - eps) ** 2).mean((-2, -1))


ALGORITHM = Algorithm(
    name="dpmd",
    display_name="DPMD",
    summary="DPMD: diffusion policy trained by exp(Q / alpha)-weighted denoising of its own best-of-32 actions "
    "(policy mirror descent; Ma et al. 2025)",
    config_cls=DPMDConfig,
    make_agent=DPMD,
)
