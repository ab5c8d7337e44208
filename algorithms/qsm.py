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
seeds. Settings whose defaults are this official update reproduce the re-implementations in the literature
(`score_critic`, `score_normalization`, `score_sigma_weight`, `eval_candidates`, `sampler_clip`,
`actor_lr_schedule`; see qsm_flowrl.py and docs/algorithms.md, "Literature variants"):

    g    = mean_j grad_a Q~_j(s, a_t),  Q~ the online critics or (score_critic="target") the targets
    g    = g / (mean_{b,k} |g_{b,k}| + 1e-6)                      score_normalization="batch_mean_abs", per seed
    L_pi = E[ || eps_theta(s, a_t, t) + alpha w_t g ||^2 ],  w_t = sqrt(1 - alpha_hat_t) if score_sigma_weight else 1
 Defaults follow the official code, Alescontrela/score_matching_rl@2e77893
(jaxrl5/agents/score_matching/score_matching_learner.py, jaxrl5/networks/diffusion.py,
examples/states/configs/score_matching_config.py).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from qsmbench.algorithms.blocks.diffusion import (
    DiffusionPolicyConfig,
    FourierDenoiser,
    SamplerOptions,
    best_of_chain,
    reverse_chain,
)
from qsmbench.algorithms.blocks.nets import QEnsemble, frozen, seed_generators, soft_update_
from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise
from qsmbench.algorithms.blocks.schedules import DiffusionSchedule
from qsmbench.algorithms.blocks.updates import critic_step, optimizer_step, perturb, td_target
from qsmbench.algorithms.contract import Algorithm, Batch
from qsmbench.core.config import MAX_WIDTH, QSM_CODE, QSM_CONFIG, QSM_LEARNER, require, require_widths, setting

ScoreCritic = Literal["online", "target"]
ScoreNormalization = Literal["none", "batch_mean_abs"]
SamplerClip = Literal["every_step", "denoised"]
ActorLRSchedule = Literal["cosine", "constant"]
NetworkInit = Literal["xavier", "orthogonal"]
SCORE_CRITICS: tuple[ScoreCritic, ...] = ("online", "target")
SCORE_NORMALIZATIONS: tuple[ScoreNormalization, ...] = ("none", "batch_mean_abs")
SAMPLER_CLIPS: tuple[SamplerClip, ...] = ("every_step", "denoised")
ACTOR_LR_SCHEDULES: tuple[ActorLRSchedule, ...] = ("cosine", "constant")
NETWORK_INITS: tuple[NetworkInit, ...] = ("xavier", "orthogonal")
SCORE_NORMALIZATION_EPS = 1e-6  # FlowRL's, typoverflow/flow-rl@bae22f4 flowrl/agent/online/qsm.py:100


@dataclass(frozen=True)
class QSMConfig(DiffusionPolicyConfig):
    continuous_time: ClassVar[bool] = True  # its update draws levels from the schedule (FlowRL's continuous t too)
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
    score_critic: ScoreCritic = setting(
        "online", "critics whose mean action-gradient g is matched: online (after their step) or target (after "
        "the soft update that follows it)", f"{QSM_LEARNER} (online); 'target' is FlowRL's, see qsm_flowrl.py",
    )
    score_normalization: ScoreNormalization = setting(
        "none", "none, or batch_mean_abs: g / (mean over batch and action dims of |g| + 1e-6), per seed "
        "(alpha then scales a unit-free gradient)", f"{QSM_LEARNER} (none); 'batch_mean_abs' is FlowRL's, see qsm_flowrl.py",
    )
    score_sigma_weight: bool = setting(
        False, "scale the matched target by the noise level: eps_theta -> -alpha sqrt(1 - alpha_hat_t) g",
        f"{QSM_LEARNER} (no weight); True is FlowRL's, see qsm_flowrl.py",
    )
    eval_candidates: int = setting(
        1, "chain samples per evaluation action; >1 keeps the best by min_j Q_j of the online critics",
        f"{QSM_LEARNER} (one chain); 10 is FlowRL's, see qsm_flowrl.py",
    )
    sampler_clip: SamplerClip = setting(
        "every_step", "what the reverse chain clips to [-1, 1]: every_step (each a_{t-1}) or denoised (only the "
        "predicted clean action, then the posterior mean)",
        f"{QSM_CODE} diffusion.py (every_step); 'denoised' is FlowRL's, see qsm_flowrl.py",
    )
    actor_lr_schedule: ActorLRSchedule = setting(
        "cosine", "the actor's learning rate: cosine (decays to 0 over actor_lr_decay_steps) or constant",
        f"{QSM_LEARNER}: decay_steps (cosine); 'constant' is FlowRL's, see qsm_flowrl.py",
    )
    network_init: NetworkInit = setting(
        "xavier", "every layer of the denoiser and the critics: xavier (Xavier-uniform weights) or orthogonal "
        "(orthogonal weights times sqrt 2); zero biases in both",
        f"{QSM_CODE} (jaxrl5's default init, xavier); 'orthogonal' is FlowRL's, see qsm_flowrl.py",
    )
    state_encoder_sizes: tuple[int, ...] = setting(
        (), "widths of an MLP, mish after every layer, that encodes the state before the denoiser; () for none",
        f"{QSM_LEARNER} (none); (128, 128) is FlowRL's, see qsm_flowrl.py",
    )
    time_final_activation: bool = setting(
        False, "mish after the last layer of the time MLP too", f"{QSM_CODE} diffusion.py (none); True is FlowRL's",
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
        require(self.score_critic in SCORE_CRITICS, f"score_critic must be one of {', '.join(SCORE_CRITICS)}, got {self.score_critic!r}")
        require(
            self.score_normalization in SCORE_NORMALIZATIONS,
            f"score_normalization must be one of {', '.join(SCORE_NORMALIZATIONS)}, got {self.score_normalization!r}",
        )
        require(isinstance(self.score_sigma_weight, bool), f"score_sigma_weight must be true or false, got {self.score_sigma_weight!r}")
        require(self.eval_candidates >= 1, f"eval_candidates must be at least 1, got {self.eval_candidates}")
        require(self.sampler_clip in SAMPLER_CLIPS, f"sampler_clip must be one of {', '.join(SAMPLER_CLIPS)}, got {self.sampler_clip!r}")
        require(
            self.actor_lr_schedule in ACTOR_LR_SCHEDULES,
            f"actor_lr_schedule must be one of {', '.join(ACTOR_LR_SCHEDULES)}, got {self.actor_lr_schedule!r}",
        )
        require(self.network_init in NETWORK_INITS, f"network_init must be one of {', '.join(NETWORK_INITS)}, got {self.network_init!r}")
        if self.state_encoder_sizes:
            require_widths("state_encoder_sizes", self.state_encoder_sizes)


class QSM:
    def __init__(
        self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: QSMConfig
    ):
        self.config, self.act_dim = config, act_dim
        generators = seed_generators(seeds, "qsm")
        self.denoiser = FourierDenoiser(
            obs_dim, act_dim, config.actor_hidden_sizes, config.time_features, config.time_feature_std,
            config.time_hidden_sizes, generators, init=config.network_init, state_encoder_sizes=config.state_encoder_sizes,
            time_final_activation=config.time_final_activation,
        ).to(device)
        self.critic = QEnsemble(obs_dim, act_dim, config.hidden_sizes, generators, init=config.network_init).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.schedule = DiffusionSchedule.make(config.schedule, config.diffusion_steps, device)
        if config.sampler_clip == "denoised":
            self.sampler = SamplerOptions(temperature=config.sampler_temperature, clip_denoised=True, clip_every_step=False)
        else:
            self.sampler = SamplerOptions(temperature=config.sampler_temperature)
        self.actor_optimizer = torch.optim.Adam(self.denoiser.parameters(), lr=config.actor_lr)
        self.actor_updates = 0
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)

    def sample(self, obs: Tensor, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """The policy: the full reverse chain, no gradients (QSM never backpropagates through it)."""
        return reverse_chain(self.denoiser, self.schedule, obs, self.act_dim, self.sampler, noise)

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """Exploration adds N(0, 0.1^2) to the chain's sample; evaluation is the (stochastic) chain alone, or the
        best of `eval_candidates` chains by min_j Q_j of the online critics."""
        if explore:
            return perturb(self.sample(obs, noise), self.config.exploration_noise, noise)
        if self.config.eval_candidates > 1:
            return best_of_chain(
                self.denoiser, self.schedule, self.sampler, self.critic, obs, self.act_dim, self.config.eval_candidates,
                noise,
            )[0]
        return self.sample(obs, noise)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        # critic step, soft update, actor step: score_critic="target" matches the just-updated targets (FlowRL's
        # order, flowrl/agent/online/qsm.py:218-223)
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
        """`g = mean_j grad_a Q_j(s, a)` per sample, `[seeds, batch, act_dim]`, detached; Q_j the online critics
        or (`score_critic="target"`) the target critics, whose weights never require gradients."""
        target = self.config.score_critic == "target"
        critic = self.critic_target if target else self.critic
        action = action.detach().requires_grad_(True)
        with torch.enable_grad(), nullcontext() if target else frozen(self.critic):
            mean_q = critic(obs, action).mean(dim=1).sum()
            (score,) = torch.autograd.grad(mean_q, action)
        return score

    def update_actor(self, batch: Batch) -> tuple[Tensor, Tensor]:
        levels = self.schedule.draw_levels(batch.reward.shape, batch.action.device)  # a step, or FlowRL's float t
        noisy_action = levels.noise(batch.action, torch.randn_like(batch.action))
        score = self.q_score(batch.obs, noisy_action)
        eps = self.denoiser(batch.obs, noisy_action, levels.time)
        loss = ((eps + self.matched_score(score, levels.sigma)) ** 2).mean((-2, -1))
        optimizer_step(self.actor_optimizer, loss)
        self.actor_updates += 1
        self.actor_optimizer.param_groups[0]["lr"] = self.actor_lr()
        return loss, score.norm(dim=-1).mean(-1)

    def matched_score(self, score: Tensor, sigma: Tensor) -> Tensor:
        """`alpha g` (official), with g normalised by its mean |g| over each seed's batch and action dims
        (`score_normalization`) and scaled by each sample's sigma_t = sqrt(1 - alpha_hat_t) (`score_sigma_weight`):
        minus the denoiser's regression target. Branches only on the config; seeds are never coupled."""
        if self.config.score_normalization == "batch_mean_abs":
            score = score / (score.abs().mean((-2, -1), keepdim=True) + SCORE_NORMALIZATION_EPS)
        if self.config.score_sigma_weight:
            return (self.config.alpha * sigma.unsqueeze(-1)) * score
        return self.config.alpha * score

    def actor_lr(self) -> float:
        """Cosine decay from `actor_lr` to 0 over `actor_lr_decay_steps` updates (optax's schedule), or constant."""
        if self.config.actor_lr_schedule == "constant":
            return self.config.actor_lr
        progress = min(self.actor_updates, self.config.actor_lr_decay_steps) / self.config.actor_lr_decay_steps
        return self.config.actor_lr * 0.5 * (1 + math.cos(math.pi * progress))


ALGORITHM = Algorithm(
    name="qsm",
    display_name="QSM",
    summary="Q-Score Matching: diffusion policy whose denoiser matches alpha * grad_a Q (Psenka et al. 2024)",
    config_cls=QSMConfig,
    make_agent=QSM,
)
