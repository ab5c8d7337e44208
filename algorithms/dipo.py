"""DIPO (Yang et al. 2023, "Policy Representation via Diffusion Probability Model for Reinforcement
Learning"), as the official code runs it.

The policy is a DDPM over actions (T = 100 cosine steps) with noise model eps_theta(s, a_t, t), sampled
with the posterior variance, the predicted clean action clipped to [-1, 1] and each step's noise
scaled by a noise ratio (1 when acting in training and in the critics' target, 0 in evaluation). Per
seed, with twin critics Q_1, Q_2, their Polyak targets Q' and a Polyak target eps_theta':

    a'   = chain_theta'(s')                                      target policy, noise ratio 1
    y    = r + gamma (1 - done) min_j Q'_j(s', a')
    L_Q  = sum_j E[(Q_j(s, a) - y)^2]                            gradient norm clipped to 2 per seed
    then the action gradient, on a second batch (s~, a~) drawn independently, with the updated critics:
    repeat K = 20 times:  a~ <- clip(Adam_{lr=0.03}(a~, clip_norm(grad_a~ -sum_batch min_j Q_j(s~, a~), 0.1 d)), -1, 1)
    L_pi = E[ || eps_theta(s~, a~_t, t) - eps ||^2 ]            the denoising loss on the improved actions,
                                                                 gradient norm clipped to 2 per seed

then Q' follows Q and eps_theta' follows eps_theta with tau (every `actor_target_every` updates). The
action gradient's Adam starts afresh each update, and its norm clip is taken over the whole batch of
actions (d = action dimensions). The paper replaces the stored actions by the improved ones, so that
improvements accumulate; the official DiffusionMemory.replace writes them into a copy (numpy fancy
indexing), so the code improves the actions taken every time. That is the default here;
`keep_improved_actions=true` keeps them, in a replay column with the seed axis (a checkpoint keeps it
too). Defaults follow the official code, BellmanTimeHut/DIPO@c6d8d1b39d6cea22e7d779e08111dbf974dbb4fc
(agent/DiPo.py, agent/diffusion.py, agent/model.py, agent/helpers.py, agent/replay_memory.py, main.py).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from qsmbench.algorithms.blocks.diffusion import (
    DiffusionPolicyConfig,
    SamplerOptions,
    SinusoidalDenoiser,
    denoising_loss,
    mish,
    reverse_chain,
)
from qsmbench.algorithms.blocks.nets import QEnsemble, frozen, seed_generators, soft_update_
from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise
from qsmbench.algorithms.blocks.schedules import DiffusionSchedule, ScheduleKind
from qsmbench.algorithms.blocks.updates import clip_grad_norm_per_seed_, critic_step, optimizer_step, perturb, td_target
from qsmbench.algorithms.contract import Algorithm, Batch, Replay
from qsmbench.core.config import DIPO_CODE, MAX_WIDTH, require, setting

ADAM_EPS = 1e-5  # agent/DiPo.py: the actor's, the critics' and the actions' Adam


@dataclass(frozen=True)
class DIPOFamilyConfig(DiffusionPolicyConfig):
    """The networks and sampler DIPO's code defines and QVPO's code (built on it) keeps."""

    hidden_sizes: tuple[int, ...] = setting(
        (256, 256, 256), "hidden layer widths of each critic (Mish)", f"{DIPO_CODE} agent/model.py: Critic"
    )
    actor_hidden_sizes: tuple[int, ...] = setting(
        (256, 256, 256), "hidden layer widths of the denoiser eps_theta(s, a_t, t) (Mish)",
        f"{DIPO_CODE} agent/model.py: Model",
    )
    time_features: int = setting(
        32, "sinusoidal embedding width of the diffusion step t (even, at least 4)",
        f"{DIPO_CODE} agent/model.py: time_dim",
    )
    time_hidden: int = setting(
        256, "hidden width of the MLP that encodes the time embedding", f"{DIPO_CODE} agent/model.py: hidden_size"
    )
    schedule: ScheduleKind = setting("cosine", "beta schedule of the diffusion", f"{DIPO_CODE} main.py: --beta_schedule")
    critic_lr: float = setting(3e-4, "Adam learning rate of the twin critics", f"{DIPO_CODE} main.py: --critic_lr")
    exploration_noise: float = setting(
        0.0, "std of Gaussian noise added to the chain's action in training (the chain's own noise explores)",
        f"{DIPO_CODE} agent/DiPo.py: sample_action adds none",
    )
    noise_ratio: float = setting(
        1.0, "scale of each reverse step's noise when acting in training and in the critics' target",
        f"{DIPO_CODE} main.py: --noise_ratio",
    )
    max_grad_norm: float = setting(
        2.0, "gradient-norm clip per seed, of both the denoiser and the critics; 0 turns it off",
        f"{DIPO_CODE} main.py: --ac_grad_norm",
    )
    actor_target_every: int = setting(
        1, "updates between the target denoiser's Polyak steps", f"{DIPO_CODE} main.py: --update_actor_target_every"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            4 <= self.time_features <= MAX_WIDTH and self.time_features % 2 == 0,
            f"time_features must be even, at least 4 and at most {MAX_WIDTH:.0e}",
        )
        require(1 <= self.time_hidden <= MAX_WIDTH, f"time_hidden must lie in [1, {MAX_WIDTH:.0e}], got {self.time_hidden}")
        require(self.noise_ratio >= 0, f"noise_ratio must be non-negative, got {self.noise_ratio}")
        require(self.max_grad_norm >= 0, "max_grad_norm must be non-negative (0 turns clipping off)")
        require(self.actor_target_every >= 1, "actor_target_every must be at least 1")


@dataclass(frozen=True)
class DIPOConfig(DIPOFamilyConfig):
    diffusion_steps: int = setting(
        100, "T: denoising steps of the reverse chain; every action costs T denoiser passes",
        f"{DIPO_CODE} main.py: --n_timesteps",
    )
    actor_lr: float = setting(3e-4, "Adam learning rate of the denoiser", f"{DIPO_CODE} main.py: --diffusion_lr")
    action_lr: float = setting(
        0.03, "Adam learning rate of the action gradient on the replay's actions", f"{DIPO_CODE} main.py: --action_lr"
    )
    action_gradient_steps: int = setting(
        20, "Adam steps of the action gradient per update", f"{DIPO_CODE} main.py: --action_gradient_steps"
    )
    action_grad_ratio: float = setting(
        0.1, "the action gradient's norm (over the whole batch) is clipped to this times the action dimensions; "
        "0 turns it off", f"{DIPO_CODE} main.py: --ratio",
    )
    keep_improved_actions: bool = setting(
        False, "write the improved actions back so that they improve further each time drawn (the paper's "
        "Algorithm 1); false improves the actions taken every time, as the official code does",
        f"{DIPO_CODE} agent/replay_memory.py: DiffusionMemory.replace writes into a copy",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.action_lr > 0, f"action_lr must be positive, got {self.action_lr}")
        require(self.action_gradient_steps >= 0, "action_gradient_steps must be non-negative")
        require(self.action_grad_ratio >= 0, "action_grad_ratio must be non-negative (0 turns the clip off)")


def dipo_networks(
    obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: DIPOFamilyConfig, purpose: str
) -> tuple[SinusoidalDenoiser, QEnsemble]:
    """DIPO's denoiser and twin critics (agent/model.py: Model, Critic), initialised as its init_weights does."""
    generators = seed_generators(seeds, purpose)
    denoiser = SinusoidalDenoiser(
        obs_dim, act_dim, config.actor_hidden_sizes, config.time_features, config.time_hidden, generators,
        init="scaled_normal",
    )
    critic = QEnsemble(obs_dim, act_dim, config.hidden_sizes, generators, init="scaled_normal", activation=mish)
    return denoiser.to(device), critic.to(device)


def dipo_sampler(config: DIPOFamilyConfig) -> SamplerOptions:
    """agent/diffusion.py's p_sample: posterior variance, the predicted clean action clipped, noise times the ratio."""
    return SamplerOptions(posterior_variance=True, clip_every_step=False, clip_denoised=True, temperature=config.noise_ratio)


def improve_actions(
    critic: QEnsemble, obs: Tensor, action: Tensor, steps: int, lr: float, max_norm: float
) -> Tensor:
    """DIPO's action gradient: `steps` Adam steps on the actions `[seeds, n, act_dim]` up min_j Q_j, the
    gradient's norm over each seed's batch clipped to `max_norm` (0: no clip), clipped to [-1, 1] after
    each step. A fresh Adam each call, as the official code makes one per update."""
    action = action.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([action], lr=lr, eps=ADAM_EPS)
    with torch.enable_grad(), frozen(critic):
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            (-critic(obs, action).min(dim=1).values.sum()).backward()
            if max_norm > 0:
                clip_grad_norm_per_seed_([action], max_norm)
            optimizer.step()
            with torch.no_grad():
                action.clamp_(-1.0, 1.0)
    return action.detach()


class DIPOFamilyAgent:
    """What DIPO's agent and QVPO's (built on its code) share: the networks, their Polyak targets (the target
    denoiser picks the critics' target actions), the sampler, Adam with eps 1e-5, and the replay they draw
    their policy batch from, independently of the critics' batch."""

    def __init__(
        self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: DIPOFamilyConfig, name: str
    ):
        self.config, self.act_dim, self.name = config, act_dim, name
        self.denoiser, self.critic = dipo_networks(obs_dim, act_dim, seeds, device, config, name)
        self.denoiser_target = copy.deepcopy(self.denoiser).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.schedule = DiffusionSchedule.make(config.schedule, config.diffusion_steps, device)
        self.sampler = dipo_sampler(config)
        self.actor_optimizer = torch.optim.Adam(self.denoiser.parameters(), lr=config.actor_lr, eps=ADAM_EPS)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, eps=ADAM_EPS)
        self.replay: Replay | None = None
        self.updates = 0

    def use_replay(self, replay: Replay) -> None:
        self.replay = replay

    def drawn_replay(self) -> Replay:
        if self.replay is None:
            raise RuntimeError(f"{self.name} draws its policy batch from the replay: call use_replay first")
        return self.replay

    def step_targets(self) -> None:
        """Q' follows Q every update, the target denoiser every `actor_target_every` (from the first)."""
        soft_update_(self.critic_target, self.critic, self.config.tau)
        if self.updates % self.config.actor_target_every == 0:
            soft_update_(self.denoiser_target, self.denoiser, self.config.tau)
        self.updates += 1


class DIPO(DIPOFamilyAgent):
    def __init__(self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: DIPOConfig):
        super().__init__(obs_dim, act_dim, seeds, device, config, "dipo")
        self.eval_sampler = dataclasses.replace(self.sampler, temperature=0.0)

    def use_replay(self, replay: Replay) -> None:
        """The replay the action gradient draws its batch from (and, with keep_improved_actions, writes to)."""
        super().use_replay(replay)
        if self.config.keep_improved_actions:
            replay.keep_improved_actions()

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """The chain with the noise ratio in training, without step noise in evaluation (x_T stays random)."""
        if not explore:
            return reverse_chain(self.denoiser, self.schedule, obs, self.act_dim, self.eval_sampler, noise)
        action = reverse_chain(self.denoiser, self.schedule, obs, self.act_dim, self.sampler, noise)
        return perturb(action, self.config.exploration_noise, noise)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        critic_loss, q = critic_step(
            self.critic, self.critic_optimizer, batch, self.bellman_target(batch), self.config.max_grad_norm
        )
        obs, improved, moved = self.action_gradient(batch.reward.shape[1])
        actor_loss = denoising_loss(self.denoiser, self.schedule, obs, improved)
        optimizer_step(self.actor_optimizer, actor_loss, self.config.max_grad_norm)
        self.step_targets()
        return {
            "critic_loss": critic_loss.detach(),
            "q_mean": q.detach().mean((-2, -1)),
            "actor_loss": actor_loss.detach(),
            "action_change": moved,
        }

    @torch.no_grad()
    def bellman_target(self, batch: Batch) -> Tensor:
        """`y = r + gamma (1 - done) min_j Q'_j(s', a')`, a' from the target denoiser's chain (noise ratio 1)."""
        next_action = reverse_chain(self.denoiser_target, self.schedule, batch.next_obs, self.act_dim, self.sampler)
        next_q = self.critic_target(batch.next_obs, next_action).min(dim=1).values
        return td_target(batch, self.config.gamma, next_q)

    def action_gradient(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
        """A batch drawn independently of the critics', its actions improved on min_j Q_j: states, improved
        actions, and each seed's mean distance moved `[seeds]`."""
        config, replay = self.config, self.drawn_replay()
        if config.keep_improved_actions:
            draw = replay.sample_improved(batch_size)
            obs, action = draw.obs, draw.action
        else:
            drawn = replay.sample(batch_size)
            obs, action = drawn.obs, drawn.action
        improved = improve_actions(
            self.critic, obs, action, config.action_gradient_steps, config.action_lr, config.action_grad_ratio * self.act_dim
        )
        if config.keep_improved_actions:
            replay.write_improved(draw.index, improved)
        return obs, improved, (improved - action).norm(dim=-1).mean(-1)


ALGORITHM = Algorithm(
    name="dipo",
    display_name="DIPO",
    summary="DIPO: diffusion policy trained to denoise replay actions moved uphill on Q by gradient steps (Yang et al. 2023)",
    config_cls=DIPOConfig,
    make_agent=DIPO,
    draws_from_replay=True,
)
