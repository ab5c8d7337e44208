"""QVPO (Ding et al., NeurIPS 2024, "Diffusion-based Reinforcement Learning via Q-weighted Variational
Policy Optimization"), as the official code runs it (its README's `--weighted --aug`).

The policy and the critics are DIPO's (T = 20 cosine steps here); every action is the best of several
chain samples by min_j Q_j, and the step noise stays on in evaluation. Per seed, with twin critics
Q_1, Q_2, their Polyak targets Q' and a Polyak target eps_theta':

    a'   = the best of 4 samples of chain_theta'(s') by min_j Q'_j
    y    = r + gamma (1 - done) min_j Q'_j(s', a')
    L_Q  = sum_j E[(Q_j(s, a) - y)^2]                              gradient norm clipped to 2 per seed
    then, on states s~ drawn independently, with the updated critics:
    a^1..a^64 ~ chain_theta(s~),  q^k = min_j Q_j(s~, a^k),  a* = a^{argmax q}
    w    = max(q* - mean_k q^k, 0)                                 the Q-weight ("qadv")
    u^1..u^10 ~ U[-1, 1]^d                                         the entropy term's uniform actions
    L_pi = mean over the 11 actions per state and their dimensions of
           w ||eps_theta(s~, a*_t, t) - eps||^2  +  lambda w sum_m ||eps_theta(s~, u^m_t, t) - eps||^2
                                                                   gradient norm clipped to 2 per seed

then Q' and eps_theta' follow with tau. lambda starts at 0.02 and decays linearly with the steps taken
to a floor of 0.002. Acting in training is the best of 4 samples, in evaluation the best of 32, both by
the current critics. Defaults follow the official code, wadx2019/qvpo@40a197473ecf68517b880cfc2c2ca4209f65c5ff
(agent/qvpo.py, agent/diffusion.py, agent/q_transform.py, agent/model.py, main.py, README.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qsmbench.algorithms.blocks.diffusion import NoiseModel, best_of_chain, denoising_loss
from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise
from qsmbench.algorithms.blocks.updates import critic_step, optimizer_step, perturb, td_target
from qsmbench.algorithms.contract import Algorithm, Batch
from qsmbench.algorithms.dipo import DIPOFamilyAgent, DIPOFamilyConfig
from qsmbench.core.config import QVPO_CODE, require, setting


@dataclass(frozen=True)
class QVPOConfig(DIPOFamilyConfig):
    diffusion_steps: int = setting(
        20, "T: denoising steps of the reverse chain; every action costs T denoiser passes",
        f"{QVPO_CODE} main.py: --n_timesteps",
    )
    actor_lr: float = setting(1e-4, "Adam learning rate of the denoiser", f"{QVPO_CODE} main.py: --diffusion_lr")
    train_samples: int = setting(
        64, "chain samples per state in the policy update; the best one by Q is trained on",
        f"{QVPO_CODE} main.py: --train_sample",
    )
    behavior_samples: int = setting(
        4, "chain samples per state when acting in training; the best one by Q is taken",
        f"{QVPO_CODE} main.py: --behavior_sample",
    )
    target_samples: int = setting(
        4, "samples of the target chain per next state in the critics' target; the best by Q' is taken",
        f"{QVPO_CODE} main.py: --target_sample",
    )
    eval_samples: int = setting(
        32, "chain samples per state when acting in evaluation; the best one by Q is taken",
        f"{QVPO_CODE} main.py: --eval_sample",
    )
    entropy_weight: float = setting(
        0.02, "lambda: weight of the denoising loss on uniform actions (the entropy term), relative to the Q-weight",
        f"{QVPO_CODE} main.py: --entropy_alpha",
    )
    entropy_weight_min: float = setting(
        0.002, "the floor lambda decays to", f"{QVPO_CODE} main.py: max(0.002, ...) after each update"
    )
    entropy_decay_steps: int = setting(
        1_000_000, "environment steps over which lambda decays linearly from entropy_weight (to 0, held at the floor)",
        f"{QVPO_CODE} main.py: --num_steps, the run's budget",
    )
    entropy_samples: int = setting(
        10, "uniform actions per state in the entropy term", f"{QVPO_CODE} agent/qvpo.py: train (10 copies)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        samples = (self.train_samples, self.behavior_samples, self.target_samples, self.eval_samples)
        require(min(samples) >= 1, "train_samples, behavior_samples, target_samples and eval_samples must be at least 1")
        require(self.entropy_samples >= 0, "entropy_samples must be non-negative")
        require(0 <= self.entropy_weight_min <= self.entropy_weight, "need 0 <= entropy_weight_min <= entropy_weight")
        require(self.entropy_decay_steps >= 1, "entropy_decay_steps must be at least 1")


class QVPO(DIPOFamilyAgent):
    def __init__(self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: QVPOConfig):
        super().__init__(obs_dim, act_dim, seeds, device, config, "qvpo")

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """The best of 4 chain samples by the critics in training, of 32 in evaluation."""
        if not explore:
            return self.best_of(self.denoiser, self.critic, obs, self.config.eval_samples, noise)[0]
        action = self.best_of(self.denoiser, self.critic, obs, self.config.behavior_samples, noise)[0]
        return perturb(action, self.config.exploration_noise, noise)

    def best_of(
        self, denoiser: NoiseModel, critic: nn.Module, obs: Tensor, samples: int, noise: Noise = GLOBAL_NOISE
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The best of `samples` chain samples of `denoiser` per state by `critic`, its value and the mean value."""
        return best_of_chain(denoiser, self.schedule, self.sampler, critic, obs, self.act_dim, samples, noise)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        critic_loss, q = critic_step(
            self.critic, self.critic_optimizer, batch, self.bellman_target(batch), self.config.max_grad_norm
        )
        actor_loss, weight = self.update_actor(self.drawn_replay().sample(batch.reward.shape[1]).obs)
        self.step_targets()
        return {
            "critic_loss": critic_loss.detach(),
            "q_mean": q.detach().mean((-2, -1)),
            "actor_loss": actor_loss.detach(),
            "q_weight": weight,
        }

    @torch.no_grad()
    def bellman_target(self, batch: Batch) -> Tensor:
        """`y = r + gamma (1 - done) min_j Q'_j(s', a')`, a' the best of 4 target-chain samples by min_j Q'_j."""
        next_action = self.best_of(self.denoiser_target, self.critic_target, batch.next_obs, self.config.target_samples)[0]
        next_q = self.critic_target(batch.next_obs, next_action).min(dim=1).values
        return td_target(batch, self.config.gamma, next_q)

    def update_actor(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """The Q-weighted denoising loss on each state's best sample plus the entropy term on uniform actions;
        returns the loss and the mean Q-weight, per seed."""
        config = self.config
        best_action, best_q, mean_q = self.best_of(self.denoiser, self.critic, obs, config.train_samples)
        weight = (best_q - mean_q).clamp(min=0.0)
        copies = config.entropy_samples
        uniform = torch.rand(obs.shape[0], copies * obs.shape[1], self.act_dim, device=obs.device) * 2.0 - 1.0
        loss = denoising_loss(
            self.denoiser,
            self.schedule,
            torch.cat([obs, obs.repeat(1, copies, 1)], dim=1),
            torch.cat([best_action, uniform], dim=1),
            torch.cat([weight, self.entropy_weight() * weight.repeat(1, copies)], dim=1),
        )
        optimizer_step(self.actor_optimizer, loss, config.max_grad_norm)
        return loss.detach(), weight.mean(-1)

    def entropy_weight(self) -> float:
        """lambda of this update. main.py sets it after each update from the environment steps taken by then,
        start_steps + updates, as max(floor, w0 (1 - steps / num_steps)), at most w0; the first update has w0."""
        config = self.config
        if self.updates == 0:
            return config.entropy_weight
        steps = config.warmup_steps + self.updates - 1
        decayed = config.entropy_weight * (1.0 - steps / config.entropy_decay_steps)
        return min(config.entropy_weight, max(config.entropy_weight_min, decayed))


ALGORITHM = Algorithm(
    name="qvpo",
    display_name="QVPO",
    summary="QVPO: diffusion policy trained by Q-weighted denoising of its best samples, plus an entropy term (Ding et al. 2024)",
    config_cls=QVPOConfig,
    make_agent=QVPO,
    draws_from_replay=True,
)
