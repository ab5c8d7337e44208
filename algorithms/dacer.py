"""DACER (Wang et al. 2024, "Diffusion Actor-Critic with Entropy Regulator"), as the official code runs it.

The policy is a DDPM over actions (T = 20 VP steps) with noise model eps_theta(s, a_t, t), sampled with the
posterior variance and the predicted clean action clipped to [-1, 1] at every step (no noise at the last);
gradients flow through the whole chain. Its output gets isotropic noise of std lambda alpha:
a(s) = clip(chain_theta(s) + lambda alpha xi, -1, 1), xi ~ N(0, I). The critics are two distributional
critics (DSAC-T): a mean mu_j and a softplus std sigma_j head each, with Polyak targets. Per seed, update k:

    r    <- 0.2 r                                              the reward scale, inside the update only
    a'   = a(s')                                               the online policy, current alpha; no target actor
    j    = argmin_j mu'_j(s', a'),  mu' = mu'_j,  q' = mu'_j + sigma'_j clip(z, -3, 3),  z ~ N(0, 1)
    y    = r + gamma (1 - done) mu',   y_s = r + gamma (1 - done) q'
    b_j  <- mean(sigma_j) at the first update, then (1 - tau) b_j + tau mean(sigma_j)   (every update)
    L_Qj = -(b_j^2 + 0.1) E[ mu_j sg(y - mu_j) / (sg(sigma_j)^2 + 0.1)
                            + sigma_j ((sg(mu_j) - y_b)^2 - sg(sigma_j)^2) / (sg(sigma_j)^3 + 0.1) ],
           y_b = sg(mu_j + clip(y_s - mu_j, -3 b_j, 3 b_j))
    L_pi = E[-min_j mu_j(s, a(s))]                             pre-update critics, every 2nd update
    H    = E_s[ GMM-entropy of 200 samples a(s) ]              every 10,000 updates (from update 0), else kept
    L_a  = log alpha (H - H_target),  H_target = -0.9 |A|      every 10,000 updates (from update 0)

Adam (1e-4) steps the critics every update and eps_theta every 2nd; Adam (3e-2) steps log alpha; on every
2nd update the target critics follow the updated critics with tau. The GMM entropy fits 3 full-covariance
Gaussians per state and returns H(w) + sum_k w_k H(N_k) (`mixture_entropy`). Evaluation drops the alpha
noise and keeps the chain's. Defaults follow the official code,
happy-yan/DACER-Diffusion-with-Online-RL@848c1f24a4aad44d34c66135007fa386e2d4ed05 (relax/algorithm/dacer.py,
relax/network/dacer.py, relax/network/blocks.py, relax/utils/diffusion.py, scripts/train_mujoco.py).

Deviations: the GMM is fitted by a batched EM in torch (all states and seeds at once, a fixed number of
iterations, float64) instead of scikit-learn's GaussianMixture (k-means++ init with random_state 42, up to
100 iterations, tol 1e-3); its initialisation is a deterministic function of the samples, as sklearn's fixed
random_state makes it: farthest-point centres refined by Lloyd steps. Evaluation draws the chain's noise
from the evaluation generator, where the official code seeds it from a hash of the observation.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qsmbench.algorithms.blocks.diffusion import (
    ChainStep,
    DiffusionPolicyConfig,
    SamplerOptions,
    conditioned_chain,
    mish,
    reverse_chain,
)
from qsmbench.algorithms.blocks.nets import BatchedMLP, frozen, seed_generators, soft_update_
from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise
from qsmbench.algorithms.blocks.schedules import DiffusionSchedule, ScheduleKind
from qsmbench.algorithms.blocks.updates import optimizer_step, perturb, td_target
from qsmbench.algorithms.contract import Algorithm, Batch
from qsmbench.core.config import DACER_CODE, MAX_WIDTH, require, setting

STD_EPS = 0.1  # relax/algorithm/dacer.py: epsilon of the variance-weighted critic loss
SAMPLE_CLIP = 3.0  # relax/network/dacer.py q_evaluate: z clipped to [-3, 3]; dacer.py: y_s - mu clipped to 3 b
UNSET_STD = -1.0  # relax/algorithm/dacer.py: mean_q_std starts at -1 (the first update takes the batch mean)
REG_COVAR = 1e-6  # sklearn GaussianMixture's default, added to every covariance's diagonal
LLOYD_STEPS = 10  # k-means steps of the mixture's initialisation


@dataclass(frozen=True)
class DACERConfig(DiffusionPolicyConfig):
    hidden_sizes: tuple[int, ...] = setting(
        (256, 256, 256), "hidden layer widths of each distributional critic (Mish)",
        f"{DACER_CODE} scripts/train_mujoco.py: --hidden_num 3, --hidden_dim 256",
    )
    actor_hidden_sizes: tuple[int, ...] = setting(
        (256, 256, 256), "hidden layer widths of the denoiser eps_theta(s, a_t, t) (Mish)",
        f"{DACER_CODE} scripts/train_mujoco.py: --hidden_num 3, --diffusion_hidden_dim 256",
    )
    time_features: int = setting(
        16, "width of the scaled sinusoidal embedding of the step t (its MLP is 2x wide, then back; even, >= 2)",
        f"{DACER_CODE} relax/network/blocks.py: DACERPolicyNet.time_dim",
    )
    diffusion_steps: int = setting(
        20, "T: denoising steps of the reverse chain; every action costs T denoiser passes",
        f"{DACER_CODE} scripts/train_mujoco.py: --diffusion_steps",
    )
    schedule: ScheduleKind = setting("vp", "beta schedule of the diffusion", f"{DACER_CODE} relax/utils/diffusion.py")
    actor_lr: float = setting(1e-4, "Adam learning rate of the denoiser", f"{DACER_CODE} scripts/train_mujoco.py: --lr")
    critic_lr: float = setting(1e-4, "Adam learning rate of both critics", f"{DACER_CODE} scripts/train_mujoco.py: --lr")
    exploration_noise: float = setting(
        0.0, "std of extra Gaussian noise on the training action, beside DACER's own noise_scale * alpha; 0: none",
        f"{DACER_CODE} relax/network/dacer.py: get_action adds only the alpha noise",
    )
    noise_scale: float = setting(
        0.15, "lambda: the policy's action gets N(0, (lambda alpha)^2) noise (training, targets, entropy samples)",
        f"{DACER_CODE} relax/network/dacer.py: get_action (0.15; its comment and README: 0.1 for other envs)",
    )
    init_temperature: float = setting(
        3.0, "alpha at the start (the noise's scale factor)", f"{DACER_CODE} relax/network/dacer.py: log_alpha = log 3"
    )
    temperature_lr: float = setting(3e-2, "Adam learning rate of log alpha", f"{DACER_CODE} relax/algorithm/dacer.py: alpha_lr")
    target_entropy_per_dim: float = setting(
        -0.9, "the entropy alpha steers the policy's toward, per action dimension",
        f"{DACER_CODE} relax/network/dacer.py: target_entropy = -0.9 act_dim",
    )
    entropy_every: int = setting(
        10_000, "updates between the entropy estimates and the steps of log alpha (both from the first update)",
        f"{DACER_CODE} relax/algorithm/dacer.py: delay_alpha_update",
    )
    entropy_samples: int = setting(
        200, "actions sampled per batch state to fit the entropy estimate's mixture",
        f"{DACER_CODE} relax/algorithm/dacer.py: num_samples",
    )
    mixture_components: int = setting(
        3, "full-covariance Gaussians of the entropy estimate's mixture, fitted per state",
        f"{DACER_CODE} relax/algorithm/dacer.py: estimate_entropy",
    )
    em_iterations: int = setting(
        100, "EM iterations of each mixture fit (all of them: no tolerance stop)",
        "sklearn GaussianMixture's max_iter, which the official estimate_entropy keeps",
    )
    policy_delay: int = setting(
        2, "updates per step of the denoiser and of the target critics", f"{DACER_CODE} relax/algorithm/dacer.py: delay_update"
    )
    reward_scale: float = setting(
        0.2, "factor on the rewards inside the update (logged returns are unscaled)",
        f"{DACER_CODE} relax/algorithm/dacer.py: reward_scale",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            2 <= self.time_features <= MAX_WIDTH and self.time_features % 2 == 0,
            f"time_features must be even, at least 2 and at most {MAX_WIDTH:.0e}",
        )
        require(self.noise_scale >= 0, f"noise_scale must be non-negative, got {self.noise_scale}")
        require(self.init_temperature > 0, f"init_temperature must be positive, got {self.init_temperature}")
        require(self.temperature_lr > 0, f"temperature_lr must be positive, got {self.temperature_lr}")
        require(min(self.entropy_every, self.policy_delay) >= 1, "entropy_every and policy_delay must be at least 1")
        require(self.entropy_samples >= 2, "entropy_samples must be at least 2")
        require(1 <= self.mixture_components <= self.entropy_samples, "need 1 <= mixture_components <= entropy_samples")
        require(self.em_iterations >= 0, "em_iterations must be non-negative")
        require(self.reward_scale > 0, f"reward_scale must be positive, got {self.reward_scale}")


def scaled_sinusoidal_features(t: Tensor, features: int) -> Tensor:
    """relax/network/blocks.py scaled_sinusoidal_encoding: `[sin(t f), cos(t f)] / sqrt(features)` with
    f_k = 10000^(-k / half), k = 0 .. half - 1, of the raw step index t."""
    half = features // 2
    frequencies = 10000.0 ** (-torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float().unsqueeze(-1) * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=-1) / math.sqrt(features)


class DACERDenoiser(nn.Module):
    """relax/network/blocks.py DACERPolicyNet: time code = Linear(2w), Mish, Linear(w) of the scaled sinusoidal
    features (w = time_features); MLP([s, a_t, time code]) -> eps, Mish, Haiku's initialisation."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], time_features: int,
        generators: Sequence[torch.Generator],
    ):
        super().__init__()
        self.time_features = time_features
        init = "truncated_normal"
        self.time_mlp = BatchedMLP(time_features, (2 * time_features,), time_features, generators, activation=mish, init=init)
        self.layout = {"obs": obs_dim, "action": act_dim, "time": time_features}  # the MLP's input, in order
        self.mlp = BatchedMLP(sum(self.layout.values()), hidden_sizes, act_dim, generators, activation=mish, init=init)

    def forward(self, obs: Tensor, noisy_action: Tensor, t: Tensor) -> Tensor:
        return self.mlp(torch.cat([obs, noisy_action, self.time_code(t)], dim=-1))

    def time_code(self, t: Tensor) -> Tensor:
        return self.time_mlp(scaled_sinusoidal_features(t, self.time_features))

    def chain(self, obs: Tensor, codes: Tensor) -> ChainStep:
        return conditioned_chain(self.mlp, self.layout, obs, codes)


class DistributionalCritics(nn.Module):
    """relax/network/blocks.py DistributionalQNet2, twice: MLP([s, a]) -> (mu, softplus(.)), per seed and critic."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], generators: Sequence[torch.Generator]):
        super().__init__()
        self.mlp = BatchedMLP(
            obs_dim + act_dim, hidden_sizes, 2, generators, ensemble=(2,), activation=mish, init="truncated_normal"
        )

    def forward(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Means and stds `[seeds, 2, batch]` for obs `[seeds, batch, obs_dim]`, action `[seeds, batch, act_dim]`."""
        out = self.mlp(torch.cat([obs, action], dim=-1).unsqueeze(1))
        return out[..., 0], F.softplus(out[..., 1])


class DACER:
    def __init__(self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: DACERConfig):
        self.config, self.act_dim = config, act_dim
        generators = seed_generators(seeds, "dacer")
        self.denoiser = DACERDenoiser(obs_dim, act_dim, config.actor_hidden_sizes, config.time_features, generators).to(device)
        self.critic = DistributionalCritics(obs_dim, act_dim, config.hidden_sizes, generators).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.full((len(seeds),), math.log(config.init_temperature), device=device).requires_grad_(True)
        self.critic_std = torch.full((len(seeds), 2), UNSET_STD, device=device)  # b_j: the running mean of sigma_j
        self.entropy = torch.zeros(len(seeds), device=device)  # the last estimate of H
        self.target_entropy = config.target_entropy_per_dim * act_dim
        self.schedule = DiffusionSchedule.make(config.schedule, config.diffusion_steps, device)
        self.sampler = SamplerOptions(posterior_variance=True, clip_every_step=False, clip_denoised=True, grad=True)
        self.actor_optimizer = torch.optim.Adam(self.denoiser.parameters(), lr=config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.temperature_lr)
        self.updates = 0

    def policy(self, obs: Tensor, noise: Noise = GLOBAL_NOISE, alpha_noise: bool = True) -> Tensor:
        """relax/network/dacer.py get_action: the chain (differentiable where grad is on), plus N(0, (lambda
        alpha)^2) unless `alpha_noise` is off, clipped to [-1, 1]."""
        action = reverse_chain(self.denoiser, self.schedule, obs, self.act_dim, self.sampler, noise)
        if not alpha_noise:
            return action
        scale = self.config.noise_scale * self.log_alpha.detach().exp().view(-1, *([1] * (obs.dim() - 1)))
        return (action + scale * noise.normal(action.shape, action.device)).clamp(-1.0, 1.0)

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """Training: the noisy policy; evaluation: the chain alone (its own noise stays on, as in the official code)."""
        if not explore:
            return self.policy(obs, noise, alpha_noise=False)
        action = self.policy(obs, noise)
        return perturb(action, self.config.exploration_noise, noise) if self.config.exploration_noise > 0 else action

    def update(self, batch: Batch) -> dict[str, Tensor]:
        config, step = self.config, self.updates
        critic_loss, mean, std = self.critic_loss(batch)
        diagnostics = {"q_mean": mean.detach().mean((-2, -1)), "q_std": std.detach().mean((-2, -1))}
        if step % config.entropy_every == 0:
            self.entropy = self.estimate_entropy(batch.obs)
        if step % config.policy_delay == 0:  # before the critics' step: the policy loss uses the pre-update critics
            with frozen(self.critic):
                actor_loss = -self.critic(batch.obs, self.policy(batch.obs))[0].min(dim=1).values.mean(-1)
            optimizer_step(self.actor_optimizer, actor_loss)
            diagnostics["actor_loss"] = actor_loss.detach()
        optimizer_step(self.critic_optimizer, critic_loss)
        if step % config.entropy_every == 0:
            optimizer_step(self.alpha_optimizer, self.log_alpha * (self.entropy - self.target_entropy))
        if step % config.policy_delay == 0:
            soft_update_(self.critic_target, self.critic, config.tau)
        self.updates += 1
        return {
            "critic_loss": critic_loss.detach(), **diagnostics,
            "alpha": self.log_alpha.detach().exp(), "entropy": self.entropy.clone(),
        }

    @torch.no_grad()
    def bellman_targets(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """y and y_s `[seeds, batch]`: the smaller target mean, and the sample of the critic with it (ties: the second)."""
        next_action = self.policy(batch.next_obs)
        mean, std = self.critic_target(batch.next_obs, next_action)
        sample = mean + std * torch.randn_like(mean).clamp(-SAMPLE_CLIP, SAMPLE_CLIP)
        first = mean[:, 0] < mean[:, 1]
        scaled = Batch(batch.obs, batch.action, self.config.reward_scale * batch.reward, batch.next_obs, batch.terminated)
        y = td_target(scaled, self.config.gamma, torch.where(first, mean[:, 0], mean[:, 1]))
        y_sample = td_target(scaled, self.config.gamma, torch.where(first, sample[:, 0], sample[:, 1]))
        return y, y_sample

    def critic_loss(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """DSAC-T's variance-weighted loss of both critics, summed per seed `[seeds]`, with their means and stds;
        moves the running stds b_j."""
        y, y_sample = (target.unsqueeze(1) for target in self.bellman_targets(batch))
        mean, std = self.critic(batch.obs, batch.action)
        with torch.no_grad():
            batch_std = std.mean(-1)
            tau = self.config.tau
            b = torch.where(self.critic_std == UNSET_STD, batch_std, tau * batch_std + (1 - tau) * self.critic_std)
            self.critic_std = b
            bound = SAMPLE_CLIP * b.unsqueeze(-1)
            y_bounded = mean + torch.clamp(y_sample - mean, -bound, bound)
            sd = std.clamp(min=0.0)
        mean_term = mean * (y - mean.detach()) / (sd**2 + STD_EPS)
        std_term = std * ((mean.detach() - y_bounded) ** 2 - sd**2) / (sd**3 + STD_EPS)
        loss = -(b**2 + STD_EPS) * (mean_term + std_term).mean(-1)
        return loss.sum(-1), mean, std

    @torch.no_grad()
    def estimate_entropy(self, obs: Tensor) -> Tensor:
        """H per seed `[seeds]`: `entropy_samples` noisy policy actions per state (state-major), a mixture fitted
        to each state's, its entropy averaged over the states."""
        seeds, n, obs_dim = obs.shape
        samples = self.config.entropy_samples
        repeated = obs.unsqueeze(2).expand(seeds, n, samples, obs_dim).reshape(seeds, n * samples, obs_dim)
        actions = self.policy(repeated).view(seeds, n, samples, self.act_dim)
        entropy = mixture_entropy(actions, self.config.mixture_components, self.config.em_iterations)
        return entropy.mean(-1).to(obs.dtype)


def mixture_entropy(samples: Tensor, components: int, iterations: int) -> Tensor:
    """relax/algorithm/dacer.py estimate_entropy for samples `[..., n, d]`: a full-covariance Gaussian mixture
    fitted to each set by EM (in float64, every set at once), and `-sum_k w_k log w_k + sum_k w_k (d/2 (1 +
    log 2 pi) + 1/2 log det Sigma_k)` of each, `[...]`. The fit follows sklearn's GaussianMixture (responsibilities
    from a hard clustering, then `iterations` E and M steps, reg_covar 1e-6, 10 eps added to each component's
    mass) with a deterministic initialisation: farthest-point centres from the first sample, 10 Lloyd steps."""
    batch_shape, (n, d) = samples.shape[:-2], samples.shape[-2:]
    x = samples.reshape(-1, n, d).double()
    resp = _one_hot(_lloyd_labels(x, components), components)  # [M, n, K]
    weights, means, chol = _m_step(x, resp)
    for _ in range(iterations):
        weights, means, chol = _m_step(x, _e_step(x, weights, means, chol))
    log_det = 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # [M, K]
    gaussian = 0.5 * d * (1.0 + math.log(2 * math.pi)) + 0.5 * log_det
    entropy = -torch.xlogy(weights, weights).sum(-1) + (weights * gaussian).sum(-1)
    return entropy.view(batch_shape).to(samples.dtype)


def _lloyd_labels(x: Tensor, components: int) -> Tensor:
    """Hard labels `[M, n]`: farthest-point centres (the first sample, then each the farthest from those taken),
    refined by Lloyd steps; an empty cluster keeps its centre."""
    centres = [x[:, 0]]
    nearest = (x - centres[0].unsqueeze(1)).pow(2).sum(-1)
    for _ in range(1, components):
        farthest = nearest.argmax(-1)
        centres.append(x.gather(1, farthest.view(-1, 1, 1).expand(-1, 1, x.shape[-1])).squeeze(1))
        nearest = torch.minimum(nearest, (x - centres[-1].unsqueeze(1)).pow(2).sum(-1))
    centre = torch.stack(centres, 1)  # [M, K, d]
    for _ in range(LLOYD_STEPS):
        one_hot = _one_hot(_nearest(x, centre), components)
        count = one_hot.sum(1).unsqueeze(-1)
        centre = torch.where(count > 0, one_hot.transpose(1, 2) @ x / count.clamp(min=1), centre)
    return _nearest(x, centre)


def _nearest(x: Tensor, centre: Tensor) -> Tensor:
    """The index of each sample's nearest centre `[M, n]` (the first of equals)."""
    return (x.unsqueeze(2) - centre.unsqueeze(1)).pow(2).sum(-1).argmin(-1)


def _one_hot(labels: Tensor, components: int) -> Tensor:
    """float64 one-hot rows `[M, n, K]`, by comparison: F.one_hot checks the labels' range on the host."""
    return (labels.unsqueeze(-1) == torch.arange(components, device=labels.device)).double()


def _m_step(x: Tensor, resp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Weights `[M, K]`, means `[M, K, d]` and Cholesky factors of the covariances `[M, K, d, d]` from `resp`."""
    mass = resp.sum(1) + 10 * torch.finfo(resp.dtype).eps  # [M, K]
    means = resp.transpose(1, 2) @ x / mass.unsqueeze(-1)
    diff = x.unsqueeze(1) - means.unsqueeze(2)  # [M, K, n, d]
    cov = (resp.transpose(1, 2).unsqueeze(-1) * diff).transpose(-1, -2) @ diff / mass.view(*mass.shape, 1, 1)
    cov = cov + REG_COVAR * torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    return mass / x.shape[1], means, torch.linalg.cholesky_ex(cov).L


def _e_step(x: Tensor, weights: Tensor, means: Tensor, chol: Tensor) -> Tensor:
    """Responsibilities `[M, n, K]` of each component for each sample."""
    diff = (x.unsqueeze(1) - means.unsqueeze(2)).transpose(-1, -2)  # [M, K, d, n]
    mahalanobis = torch.linalg.solve_triangular(chol, diff, upper=False).pow(2).sum(-2)  # [M, K, n]
    log_det = 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    log_prob = -0.5 * (x.shape[-1] * math.log(2 * math.pi) + log_det.unsqueeze(-1) + mahalanobis) + weights.log().unsqueeze(-1)
    return log_prob.softmax(1).transpose(1, 2)


ALGORITHM = Algorithm(
    name="dacer",
    display_name="DACER",
    summary="DACER: diffusion policy trained through its chain on distributional twin critics, noise scaled by a "
    "GMM-entropy-tuned alpha (Wang et al. 2024)",
    config_cls=DACERConfig,
    make_agent=DACER,
)
