"""Q-Score Matching (Psenka, Escontrela, Abbeel, Ma, ICML 2024), as the official code runs it.

The policy is a DDPM over actions with noise model eps_theta(s, a_t, t); acting runs the reverse
chain. Per seed, with twin critics Q_1, Q_2 and their targets Q' (no target policy):

    a'   = clip(chain(s') + N(0, sigma_target^2), -1, 1)           current policy's full chain
    y    = r + gamma (1 - done) min_j Q'_j(s', a')
    L_Q  = sum_j E[(Q_j(s, a) - y)^2]
    then, on the same batch with the just-updated critics (the Q-score-matching step):
    t ~ U{0..T-1},  a_t = sqrt(alpha_hat_t) a + sqrt(1 - alpha_hat_t) xi,   a from replay
    g    = mean_j grad_a Q_j(s, a)|_{a = a_t}                      no gradient through g
    L_pi = E[ || eps_theta(s, a_t, t) + alpha g ||^2 ]             alpha = M_q = 50

so the denoiser's implied score follows alpha grad_a Q uphill. Losses are batch means summed over
seeds. Defaults follow the official code, Alescontrela/score_matching_rl@2e77893
(jaxrl5/agents/score_matching/score_matching_learner.py, jaxrl5/networks/diffusion.py,
examples/states/configs/score_matching_config.py).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from qsmbench.algorithms.blocks.diffusion import (
    DiffusionPolicyConfig,
    DiffusionSchedule,
    FourierDenoiser,
    SamplerOptions,
    reverse_chain,
)
from qsmbench.algorithms.blocks.nets import QEnsemble, frozen, seed_generators, soft_update_
from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise
from qsmbench.algorithms.blocks.updates import critic_step, optimizer_step, perturb, td_target
from qsmbench.algorithms.contract import Algorithm, Batch
from qsmbench.core.config import MAX_WIDTH, QSM_CODE, QSM_CONFIG, QSM_LEARNER, require, require_widths, setting


@dataclass(frozen=True)
class QSMConfig(DiffusionPolicyConfig):
    hidden_sizes: tuple[int, ...] = setting(
        (512, 512), "hidden layer widths of each critic", f"{QSM_CONFIG}: critic_hidden_dims"
    )
    actor_hidden_sizes: tuple[int, ...] = setting(
        (512, 512), "hidden layer widths of the denoiser eps_theta(s, a_t, t)", f"{QSM_CONFIG}: actor_hidden_dims"
    )
    time_features: int = setting(
        64, "learnable Fourier features of the diffusion step t (even: cos and sin halves)", f"{QSM_LEARNER}: time_dim"
    )
    time_feature_std: float = setting(
        0.2, "std of the initial frequencies of those Fourier features", f"{QSM_CODE} diffusion.py: normal(0.2)"
    )
    time_hidden_sizes: tuple[int, ...] = setting(
        (128, 128), "hidden layer widths of the MLP that encodes the time features", f"{QSM_LEARNER}: cond_model_cls"
    )
    sampler_temperature: float = setting(
        1.0, "scale of the noise of each reverse step (1: the DDPM sampler)", f"{QSM_LEARNER}: ddpm_temperature"
    )
    alpha: float = setting(
        50.0, "M_q: scale of the matched Q-score, eps_theta -> -alpha grad_a Q; higher is greedier, lower keeps "
        "more entropy", f"QSM paper and {QSM_CONFIG}: M_q (its note suggests 120 for quadruped-walk, humanoid-walk)",
    )
    actor_lr_decay_steps: int = setting(
        2_000_000, "actor updates over which the actor's learning rate decays to 0 (cosine)",
        f"{QSM_LEARNER}: decay_steps",
    )
    target_noise: float = setting(
        0.1, "std of the Gaussian noise added to the next action in the critics' target (clipped to [-1, 1])",
        f"{QSM_LEARNER}: update_q",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            2 <= self.time_features <= MAX_WIDTH and self.time_features % 2 == 0,
            f"time_features must be even, positive and at most {MAX_WIDTH:.0e}",
        )
        require_widths("time_hidden_sizes", self.time_hidden_sizes)
        require(self.time_feature_std > 0, f"time_feature_std must be positive, got {self.time_feature_std}")
        require(self.sampler_temperature > 0, f"sampler_temperature must be positive, got {self.sampler_temperature}")
        require(self.alpha > 0, f"alpha (the scale of the matched Q-score) must be positive, got {self.alpha}")
        require(self.actor_lr_decay_steps >= 1, "actor_lr_decay_steps must be at least 1")
        require(self.target_noise >= 0, "target_noise must be non-negative")


class QSM:
    def __init__(
        self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: QSMConfig
    ):
        self.config, self.act_dim = config, act_dim
        generators = seed_generators(seeds, "qsm")
        self.denoiser = FourierDenoiser(
            obs_dim, act_dim, config.actor_hidden_sizes, config.time_features, config.time_feature_std,
            config.time_hidden_sizes, generators,
        ).to(device)
        self.critic = QEnsemble(obs_dim, act_dim, config.hidden_sizes, generators, init="xavier").to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.schedule = DiffusionSchedule.make(config.schedule, config.diffusion_steps, device)
        self.sampler = SamplerOptions(temperature=config.sampler_temperature)
        self.actor_optimizer = torch.optim.Adam(self.denoiser.parameters(), lr=config.actor_lr)
        self.actor_updates = 0
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)

    def sample(self, obs: Tensor, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """The policy: the full reverse chain, no gradients (QSM never backpropagates through it)."""
        return reverse_chain(self.denoiser, self.schedule, obs, self.act_dim, self.sampler, noise)

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """Exploration adds N(0, 0.1^2) to the chain's sample; evaluation is the (stochastic) chain alone."""
        action = self.sample(obs, noise)
        return perturb(action, self.config.exploration_noise, noise) if explore else action

    def update(self, batch: Batch) -> dict[str, Tensor]:
        critic_loss, q = self.update_critic(batch)
        soft_update_(self.critic_target, self.critic, self.config.tau)
        actor_loss, score_norm = self.update_actor(batch)
        return {
            "critic_loss": critic_loss.detach(),
            "q_mean": q.detach().mean((-2, -1)),
            "actor_loss": actor_loss.detach(),
            "q_score_norm": score_norm,
        }

    @torch.no_grad()
    def bellman_target(self, batch: Batch) -> Tensor:
        """`y = r + gamma (1 - done) min_j Q'_j(s', a')`, a' from the current chain plus target noise."""
        next_action = perturb(self.sample(batch.next_obs), self.config.target_noise)
        next_q = self.critic_target(batch.next_obs, next_action).min(dim=1).values
        return td_target(batch, self.config.gamma, next_q)

    def update_critic(self, batch: Batch) -> tuple[Tensor, Tensor]:
        return critic_step(self.critic, self.critic_optimizer, batch, self.bellman_target(batch))

    def q_score(self, obs: Tensor, action: Tensor) -> Tensor:
        """`g = mean_j grad_a Q_j(s, a)` per sample, `[seeds, batch, act_dim]`, detached."""
        action = action.detach().requires_grad_(True)
        with torch.enable_grad(), frozen(self.critic):
            mean_q = self.critic(obs, action).mean(dim=1).sum()
            (score,) = torch.autograd.grad(mean_q, action)
        return score

    def update_actor(self, batch: Batch) -> tuple[Tensor, Tensor]:
        seeds, batch_size = batch.reward.shape
        t = torch.randint(0, self.schedule.steps, (seeds, batch_size), device=batch.action.device)
        noisy_action = self.schedule.noise(batch.action, t, torch.randn_like(batch.action))
        score = self.q_score(batch.obs, noisy_action)
        eps = self.denoiser(batch.obs, noisy_action, t)
        loss = ((eps + self.config.alpha * score) ** 2).mean((-2, -1))
        optimizer_step(self.actor_optimizer, loss)
        self.actor_updates += 1
        self.actor_optimizer.param_groups[0]["lr"] = self.actor_lr()
        return loss, score.norm(dim=-1).mean(-1)

    def actor_lr(self) -> float:
        """Cosine decay from `actor_lr` to 0 over `actor_lr_decay_steps` updates (optax's schedule)."""
        progress = min(self.actor_updates, self.config.actor_lr_decay_steps) / self.config.actor_lr_decay_steps
        return self.config.actor_lr * 0.5 * (1 + math.cos(math.pi * progress))


ALGORITHM = Algorithm(
    name="qsm",
    display_name="QSM",
    summary="Q-Score Matching: diffusion policy whose denoiser matches alpha * grad_a Q (Psenka et al. 2024)",
    config_cls=QSMConfig,
    make_agent=QSM,
)
