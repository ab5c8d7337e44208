"""QSM as the relax library runs it (the QSM of the DACER and SDAC/DPMD repositories), not as the QSM paper's
code does (that one is `qsm`): a time-free score field S_phi(s, a) regressed onto the smaller twin critic's
action gradient at the replay action, sampled by 20 steps of annealed Langevin dynamics, best of N by min Q.

Citations are `file:line` at happy-yan/DACER-Diffusion-with-Online-RL@848c1f24a4aad44d34c66135007fa386e2d4ed05
(RA = relax/algorithm/qsm.py, RN = relax/network/qsm.py, L = relax/utils/langevin.py, B = relax/network/blocks.py,
S = scripts/train_mujoco.py); the SDAC copy, mahaitongdae/diffusion_policy_online_rl@a50cf41167b8d1ce89487f00684ac4d4691b090d,
shares the update (docs/porting/qsm_variants.md section 2). Per seed, one update on (s, a, r, s', d):

    (0) a'   = Act_N(s'; phi, theta_1, theta_2)             online critics BEFORE this update       RA:46-49
    (1) y    = r + gamma (1 - d) min_i Qbar_i(s', a')         target critics, no reward scale          RA:50-53
    (2) L_Qi = mean_b (Q_i(s, a) - y)^2,  theta_i <- Adam(dL_Qi)   i = 1, 2, each its own Adam state  RA:56-66
    (3) q_i, g_i = Q_i'(s, a), grad_a Q_i'(s, a)              the UPDATED critics, replay action a     RA:70-71, RN:75-80
    (4) g*   = g_1 where q_1 < q_2, else g_2                  strict <: ties take critic 2             RA:74
    (5) L_S  = mean_{b,k} (S_phi(s, a)_k - g*_k)^2,  phi <- Adam(dL_S)   g* is a constant             RA:69-81
    (6) thetabar_i <- tau theta_i' + (1 - tau) thetabar_i     every update                             RA:84-85

    Langevin(s):  x_0 ~ N(0, I);  for k = 0..K-1:  delta_k = 1 - k/K,
                  x <- clip(x + delta_k/2 S_phi(s, x) + sqrt(delta_k) z_k, -1, 1),  z_k ~ N(0, I)       L:14-35
    Act_N(s):     N independent chains; the one with the largest min_i Q_i(s, x^n), online critics, first
                  index on ties (jnp.argmax / torch.argmax)                                            RN:27-49

Acting in training is Act_N with N = 64 and no added noise (S:65; relax/trainer/off_policy.py calls get_action);
evaluation is the best of `eval_restarts` x `eval_particles` = 16 x 64 chains by the same min Q (RN:51-73, the
DACER copy's "resample technique"; the SDAC copy evaluates one Act_32). Networks (RN:82-109, B:27-37, 136-147):
S_phi is an MLP on concat[s, a] with act_dim outputs and no time input; two critics on concat[s, a]; both 3x256
ReLU (S:32-33, 57; RN:87), Haiku's default init (truncated normal 1/sqrt(fan_in) at 2 std, zero biases). One
optax.adam(1e-4) per parameter set (RA:28-35, S:38, 66), gamma 0.99, tau 0.005, batch 256.

Two Adam states for the critics: one torch Adam over the QEnsemble on the summed loss L_Q1 + L_Q2 (summed over
seeds too) is the same thing, because critic i's parameters receive only dL_Qi and Adam's moments are kept per
parameter entry. Deviations: evaluation draws its chains from the evaluation's per-seed generator, not from a key
hashed from the observation (relax/utils/jax_utils.py:24-30), and it works on a batch of states (the source's
get_deterministic_action handles one unbatched observation); the trainer's protocol (warm-up, updates per step,
evaluation) is qsmbench's, not the relax trainer's (2e5 / 3e4 warm-up, 1 update per 20 / 5 transitions).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qsmbench.algorithms.blocks.nets import BatchedMLP, QEnsemble, seed_generators, soft_update_
from qsmbench.algorithms.blocks.randomness import GLOBAL_NOISE, Noise
from qsmbench.algorithms.blocks.updates import linear_schedule, optimizer_step, perturb, td_target
from qsmbench.algorithms.contract import Algorithm, Batch
from qsmbench.core.config import DACER_CODE, SDAC_DPMD_CODE, OffPolicyConfig, require, require_widths, setting

SOURCE = f"{DACER_CODE}"
SDAC_COPY = f"{SDAC_DPMD_CODE}"


@dataclass(frozen=True)
class QSMRelaxConfig(OffPolicyConfig):
    """Defaults: the DACER repository's script (`--alg qsm`); the SDAC copy's values are named in each meaning.
    `warmup_steps` stays qsmbench's protocol default (the DACER script waits 2e5 transitions, SDAC's 3e4)."""

    hidden_sizes: tuple[int, ...] = setting(
        (256, 256, 256), "hidden layer widths of each critic (ReLU)",
        f"{SOURCE} scripts/train_mujoco.py:32-33, 57 (hidden_dim 256, hidden_num 3); relax/network/qsm.py:87 (relu)",
    )
    actor_hidden_sizes: tuple[int, ...] = setting(
        (256, 256, 256), "hidden layer widths of the score field S_phi(s, a) (ReLU, no time input)",
        f"{SOURCE} relax/network/qsm.py:92, relax/network/blocks.py:136-147 (QScoreNet, the critics' widths)",
    )
    langevin_steps: int = setting(
        20, "K: Langevin steps per sample, step size delta_k = 1 - k/K (SDAC copy: 20 too)",
        f"{SOURCE} scripts/train_mujoco.py:34, 65 (num_timesteps); relax/utils/langevin.py:22-25",
    )
    particles: int = setting(
        64, "N: Langevin chains per state for acting in training and for the critic target a'; the best by "
        "min_i Q_i is kept (SDAC copy: 32)",
        f"{SOURCE} scripts/train_mujoco.py:65 (num_particles=64); {SDAC_COPY} scripts/train_mujoco.py --num_particles",
    )
    eval_particles: int = setting(
        64, "Langevin chains per restart for the evaluation action (SDAC copy: 32)",
        f"{SOURCE} relax/network/qsm.py:53 (eval_num_particles)",
    )
    eval_restarts: int = setting(
        16, "restarts of the evaluation's best-of-eval_particles; the best of all of them by min_i Q_i is kept, "
        "so 16 x 64 = the best of 1024 chains (SDAC copy: 1)",
        f"{SOURCE} relax/network/qsm.py:55-73 (16 keys); {SDAC_COPY} relax/network/qsm.py:51-54",
    )
    critic_lr: float = setting(
        1e-4, "Adam learning rate of each critic (SDAC copy: 3e-4)", f"{SOURCE} scripts/train_mujoco.py:38, 66 (lr)"
    )
    score_lr: float = setting(
        1e-4, "Adam learning rate of the score field (at the start, when score_lr_end decays it; SDAC copy: 3e-4)",
        f"{SOURCE} scripts/train_mujoco.py:38, 66; relax/algorithm/qsm.py:28 (one optax.adam(lr))",
    )
    score_lr_end: float | None = setting(
        None, "None: a constant score_lr (DACER copy); else the score field's rate decays linearly from score_lr to "
        "this over score_lr_decay_steps updates after score_lr_decay_start (SDAC copy: 3e-5)",
        f"{SDAC_COPY} relax/algorithm/qsm.py:29-35 (optax linear_schedule), scripts/train_mujoco.py:49 (--lr_schedule_end)",
    )
    score_lr_decay_start: int = setting(
        25_000, "score-field updates before its rate starts to decay (with score_lr_end)",
        f"{SDAC_COPY} relax/algorithm/qsm.py:33 (transition_begin)",
    )
    score_lr_decay_steps: int = setting(
        50_000, "score-field updates over which its rate decays to score_lr_end",
        f"{SDAC_COPY} relax/algorithm/qsm.py:32 (transition_steps)",
    )
    exploration_noise: float = setting(
        0.0, "std of Gaussian noise added to the training action (then clipped); 0: none, as the source",
        f"{SOURCE} relax/trainer/off_policy.py:127 (acts with get_action, nothing added)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require_widths("actor_hidden_sizes", self.actor_hidden_sizes)
        require(self.langevin_steps >= 1, "langevin_steps must be at least 1")
        require(min(self.particles, self.eval_particles, self.eval_restarts) >= 1,
                "particles, eval_particles and eval_restarts must be at least 1")
        require(min(self.critic_lr, self.score_lr) > 0, "critic_lr and score_lr must be positive")
        require(self.score_lr_end is None or self.score_lr_end > 0, "score_lr_end must be positive (or None: constant)")
        require(self.score_lr_decay_start >= 0 and self.score_lr_decay_steps >= 1,
                "score_lr_decay_start must be non-negative and score_lr_decay_steps at least 1")
        require(self.exploration_noise >= 0, f"exploration_noise must be non-negative, got {self.exploration_noise}")

    # Read by qsmbench.training.memory, whose UPDATE_SAMPLES / ACTION_SAMPLES name these: the chains an update
    # runs per state (the target's best-of-N) and those an evaluation action runs per state.
    @property
    def target_samples(self) -> int:
        return self.particles

    @property
    def eval_samples(self) -> int:
        return max(self.particles, self.eval_particles * self.eval_restarts)


def langevin(score: nn.Module, obs: Tensor, act_dim: int, steps: int, noise: Noise = GLOBAL_NOISE) -> Tensor:
    """relax/utils/langevin.py:14-35, no gradients: x_0 ~ N(0, I), then `steps` clipped Langevin steps of
    size delta_k = 1 - k/steps along S_phi(s, x) `[seeds, n, act_dim]`. Draws x_0, then z_0, ..., z_{K-1}."""
    seeds, n, _ = obs.shape
    with torch.no_grad():
        x = noise.normal((seeds, n, act_dim), obs.device)
        for k in range(steps):
            delta = 1.0 - k / steps
            z = noise.normal((seeds, n, act_dim), obs.device)
            x = (x + (delta / 2) * score(obs, x) + delta**0.5 * z).clamp(-1.0, 1.0)
    return x


def best_of(q: Tensor, actions: Tensor, samples: int) -> Tensor:
    """The action with the largest `q` among `samples` per state, the first on ties (torch.argmax returns the
    first maximum): q `[seeds, samples * n]` and actions `[seeds, samples * n, act_dim]`, sample-major."""
    seeds, rows, act_dim = actions.shape
    n = rows // samples
    index = q.view(seeds, samples, n).argmax(dim=1)
    return actions.view(seeds, samples, n, act_dim).gather(1, index.view(seeds, 1, n, 1).expand(-1, 1, -1, act_dim)).squeeze(1)


class QSMRelax:
    def __init__(self, obs_dim: int, act_dim: int, seeds: Sequence[int], device: torch.device, config: QSMRelaxConfig):
        self.config, self.act_dim = config, act_dim
        generators = seed_generators(seeds, "qsm_relax")
        self.critic = QEnsemble(obs_dim, act_dim, config.hidden_sizes, generators, init="truncated_normal").to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.score = BatchedMLP(
            obs_dim + act_dim, config.actor_hidden_sizes, act_dim, generators, init="truncated_normal"
        ).to(device)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.score_optimizer = torch.optim.Adam(self.score.parameters(), lr=config.score_lr)
        self.score_updates = 0  # the score field's Adam steps: optax's count, which its learning rate follows

    def score_field(self, obs: Tensor, action: Tensor) -> Tensor:
        """S_phi(s, a) `[seeds, n, act_dim]`."""
        return self.score(torch.cat([obs, action], dim=-1))

    def sample(self, obs: Tensor, samples: int, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """relax/network/qsm.py:27-49 get_action, no gradients: the best of `samples` Langevin chains per state by
        min_i Q_i of the online critics. Chains are laid out sample-major (`obs.repeat(1, samples, 1)`)."""
        with torch.no_grad():
            repeated = obs.repeat(1, samples, 1)
            actions = langevin(self.score_field, repeated, self.act_dim, self.config.langevin_steps, noise)
            return best_of(self.critic(repeated, actions).min(dim=1).values, actions, samples)

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool, noise: Noise = GLOBAL_NOISE) -> Tensor:
        """Training: the best of `particles` chains (plus `exploration_noise`, 0 by default). Evaluation: the best
        of `eval_restarts` x `eval_particles` chains (relax/network/qsm.py:51-73; one flat argmax over restarts and
        particles picks what the per-restart argmax, then the argmax over restarts, picks)."""
        config = self.config
        if explore:
            action = self.sample(obs, config.particles, noise)
            return perturb(action, config.exploration_noise, noise) if config.exploration_noise > 0 else action
        return self.sample(obs, config.eval_particles * config.eval_restarts, noise)

    def critic_values_and_gradients(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Q_i(s, a) `[seeds, 2, n]` and grad_a Q_i(s, a) `[seeds, 2, n, act_dim]` of each online critic on its own
        copy of the action (relax/network/qsm.py:75-80), detached; the critics' weights get no gradient."""
        seeds, n, _ = obs.shape
        members = self.critic.mlp.layers[0].weight.shape[1]
        each = action.detach().unsqueeze(1).expand(seeds, members, n, self.act_dim).clone().requires_grad_(True)
        with torch.enable_grad():
            x = torch.cat([obs.unsqueeze(1).expand(seeds, members, n, obs.shape[-1]), each], dim=-1)
            q = self.critic.mlp(x).squeeze(-1)
            (grad,) = torch.autograd.grad(q.sum(), each)
        return q.detach(), grad

    def score_loss(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """relax/algorithm/qsm.py:69-81: mean_{b,k} (S_phi(s, a) - g*)^2 per seed `[seeds]`, g* the action gradient
        of the critic with the smaller value (ties: critic 2), and the critics' values `[seeds, 2, n]`."""
        q, grad = self.critic_values_and_gradients(obs, action)
        chosen = torch.where((q[:, 0] < q[:, 1]).unsqueeze(-1), grad[:, 0], grad[:, 1])
        return ((self.score_field(obs, action) - chosen) ** 2).mean((-2, -1)), q

    def update(self, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        with torch.no_grad():  # (0)-(1): a' from the critics before this update, y from the targets
            next_action = self.sample(batch.next_obs, config.particles)
            target = td_target(batch, config.gamma, self.critic_target(batch.next_obs, next_action).min(dim=1).values)
        q = self.critic(batch.obs, batch.action)  # (2): L_Q1 + L_Q2, each critic's gradient its own loss's
        critic_losses = ((q - target.unsqueeze(1)) ** 2).mean(-1)
        optimizer_step(self.critic_optimizer, critic_losses.sum(-1))
        score_loss, q_new = self.score_loss(batch.obs, batch.action)  # (3)-(5): the updated critics
        self.step_score(score_loss)
        soft_update_(self.critic_target, self.critic, config.tau)  # (6)
        return {
            "critic_loss": critic_losses.detach().sum(-1), "q1_loss": critic_losses.detach()[:, 0],
            "q2_loss": critic_losses.detach()[:, 1], "score_loss": score_loss.detach(), "q_mean": q_new.mean((-2, -1)),
        }

    def step_score(self, loss: Tensor) -> None:
        """One Adam step of the score field at this step's rate, then the rate of the next (SDAC copy:
        relax/algorithm/qsm.py:29-35, 87; constant without score_lr_end, as the DACER copy)."""
        optimizer_step(self.score_optimizer, loss)
        self.score_updates += 1
        config = self.config
        if config.score_lr_end is not None:
            rate = linear_schedule(
                config.score_lr, config.score_lr_end, config.score_lr_decay_start, config.score_lr_decay_steps, self.score_updates
            )
            self.score_optimizer.param_groups[0]["lr"] = rate


ALGORITHM = Algorithm(
    name="qsm_relax",
    display_name="QSM (relax)",
    summary="QSM as the DACER/SDAC repositories run it: a time-free score field regressed onto the smaller critic's "
    "action gradient, 20-step Langevin sampling, best of 64 chains by min Q",
    config_cls=QSMRelaxConfig,
    make_agent=QSMRelax,
)
