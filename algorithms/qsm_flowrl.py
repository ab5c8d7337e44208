"""QSM as FlowRL runs it (Gao et al., arXiv 2603.27450; typoverflow/flow-rl@bae22f4, flowrl/agent/online/qsm.py):
our official QSM agent (qsm.py) with the settings that reproduce FlowRL's update, at its MuJoCo defaults.
Citations are file:line at that commit: F = flowrl/agent/online/qsm.py, CD = flowrl/flow/continuous_ddpm.py,
DD = flowrl/flow/ddpm.py, CC = examples/online/config/dmc/config.yaml (docs/porting/qsm_variants.md reads them).

Per seed, with twin critics Q_1, Q_2 and their Polyak targets Qbar (FlowRL's F:48-119, CD:107-115):

    a'    = chain(s')                                             no target noise (F:61)
    y     = r + gamma (1 - done) min_j Qbar_j(s', a')              (F:62-63)
    L_Q   = mean (Q_j(s, a) - y)^2; one critic step; Qbar <- tau Q + (1 - tau) Qbar    (F:73-83)
    then, with the targets just updated (F:218-223):
    t ~ U(0.001, 0.9946),  a_t = alpha_t a + sigma_t xi,  sigma_t = sqrt(1 - alpha_t^2),  a from replay  (CD:107-115)
    g     = mean_j grad_a Qbar_j(s, a)|_{a = a_t}                  TARGET critics, no gradient (F:98-99)
    m     = mean over the batch and action dims of |g|             one scalar per seed (F:100)
    eps*  = -sigma_t g / (temp (m + 1e-6)),  temp = 0.1            = -alpha sigma_t g / (m + 1e-6), alpha = 1/temp
    L_pi  = mean (eps_theta(s, a_t, t) - eps*)^2                   (F:102-111)

Acting: one chain plus N(0, 0.1^2) in training; evaluation keeps the best of 10 chains by min_j Q_j of the
online critics (F:39-45, 236-250). The chain clips only its predicted clean action (CD:165-174).
The schedule is FlowRL's continuous-time cosine one (`schedule="cosine_continuous"`, blocks/schedules.py): the
float t is the time embedding's input, in training and on the chain's 21-point grid (CD:26-40, 107-115, 134-174).

Its networks are FlowRL's too: orthogonal(sqrt 2) weights and zero biases in every layer
(flowrl/module/initialization.py:9-21), a state encoder MLP [128, 128] with mish after both layers (F:152-155) and
mish after the time MLP's last layer (DD:85-88).

Differences that remain, and why:
- Joint critic Adam: FlowRL takes one Adam step on both critics' parameters with the loss averaged over the
  ensemble (F:73, 81); ours gives each critic its own loss (summed). The factor 1/2 is nearly cancelled by Adam.
- Unclipped actions: FlowRL's exploration action and its chain's last step are never clipped (F:249-250; CD:171-174),
  so its buffer holds actions slightly outside [-1, 1]; qsmbench clips every action it stores or executes (protocol).
- frame_skip 2 on DMC (FlowRL's DMC config, CC:16) and batch 512 there: a protocol setting, not the agent's; these
  defaults are FlowRL's MuJoCo ones (ELU critics of 3 x 512 on DMC are not offered either).
"""

from __future__ import annotations

from dataclasses import dataclass

from qsmbench.algorithms.blocks.schedules import ScheduleKind
from qsmbench.algorithms.contract import Algorithm
from qsmbench.algorithms.qsm import (
    QSM,
    ActorLRSchedule,
    NetworkInit,
    QSMConfig,
    SamplerClip,
    ScoreCritic,
    ScoreNormalization,
)
from qsmbench.core.config import setting

FLOWRL = "typoverflow/flow-rl@bae22f4"
AGENT = f"{FLOWRL} flowrl/agent/online/qsm.py"
SAMPLER = f"{FLOWRL} flowrl/flow/continuous_ddpm.py"
BACKBONE = f"{FLOWRL} flowrl/flow/ddpm.py"
MUJOCO_ALGO = f"{FLOWRL} examples/online/config/mujoco/algo/qsm.yaml"
MUJOCO = f"{FLOWRL} examples/online/config/mujoco/config.yaml"


@dataclass(frozen=True)
class QSMFlowRLConfig(QSMConfig):
    batch_size: int = setting(256, "transitions per update, per seed", f"{MUJOCO}:19")
    warmup_steps: int = setting(
        5000, "uniform-random steps before the first update", f"{MUJOCO}:24-25 (random_frames, warmup_frames)"
    )
    hidden_sizes: tuple[int, ...] = setting((256, 256), "hidden layer widths of each critic (ReLU)", f"{MUJOCO_ALGO}:6-7")
    actor_hidden_sizes: tuple[int, ...] = setting(
        (256, 256, 256), "hidden layer widths of the denoiser eps_theta(s, a_t, t) (mish)", f"{MUJOCO_ALGO}:17"
    )
    diffusion_steps: int = setting(20, "T: denoising steps of the reverse chain", f"{MUJOCO_ALGO}:22; {SAMPLER}:134")
    schedule: ScheduleKind = setting(
        "cosine_continuous", "FlowRL's continuous-time cosine schedule (s = 0.008): t ~ U(0.001, 0.9946) in training, "
        "a grid of T + 1 times for the chain", f"{SAMPLER}:26-40, 84-85, 107-115, 134-138",
    )
    time_hidden_sizes: tuple[int, ...] = setting(
        (64, 64), "hidden layer widths of the MLP that encodes the time features", f"{BACKBONE}:85-88"
    )
    alpha: float = setting(
        10.0, "1/temp: scale of the normalised, sigma-weighted Q-score the denoiser matches", f"{MUJOCO_ALGO}:12 (temp 0.1); {AGENT}:100"
    )
    target_noise: float = setting(0.0, "std of the noise on the next action in the critics' target", f"{AGENT}:59-61")
    score_critic: ScoreCritic = setting(
        "target", "critics whose mean action-gradient is matched: the targets, after this update's soft update",
        f"{AGENT}:98-99, 218-223",
    )
    score_normalization: ScoreNormalization = setting(
        "batch_mean_abs", "g / (mean over batch and action dims of |g| + 1e-6), per seed", f"{AGENT}:100"
    )
    score_sigma_weight: bool = setting(True, "target -alpha sqrt(1 - alpha_hat_t) g", f"{AGENT}:100; {SAMPLER}:26-31, 114")
    eval_candidates: int = setting(
        10, "chain samples per evaluation action; the best by min_j Q_j of the online critics",
        f"{AGENT}:39-45, 236-237; {MUJOCO_ALGO}:10",
    )
    sampler_clip: SamplerClip = setting(
        "denoised", "clip only the predicted clean action, then the posterior mean with variance beta",
        f"{SAMPLER}:165-174; {MUJOCO_ALGO}:23 (clip_sampler)",
    )
    actor_lr_schedule: ActorLRSchedule = setting(
        "constant", "the actor's learning rate stays at actor_lr", f"{AGENT}:157-165; {MUJOCO_ALGO}:19-21 (lr_decay_steps: null)"
    )
    network_init: NetworkInit = setting(
        "orthogonal", "orthogonal weights times sqrt 2 and zero biases in every layer (flax Dense defaults of FlowRL's MLP)",
        f"{FLOWRL} flowrl/module/initialization.py:9-21; flowrl/module/mlp.py:16-17",
    )
    state_encoder_sizes: tuple[int, ...] = setting(
        (128, 128), "the state's encoder (cond_embedding): an MLP with mish after every layer", f"{AGENT}:152-155"
    )
    time_final_activation: bool = setting(True, "mish after both layers of the time MLP", f"{BACKBONE}:85-88")


ALGORITHM = Algorithm(
    name="qsm_flowrl",
    display_name="QSM (FlowRL)",
    summary="QSM as FlowRL runs it: target-critic score, normalised and sigma-weighted; best of 10 at evaluation",
    config_cls=QSMFlowRLConfig,
    make_agent=QSM,
)
