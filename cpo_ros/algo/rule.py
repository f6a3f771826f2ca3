"""What an update rule (CPO, TRPO, PDO, PPO-Lagrangian, PID-Lagrangian) sees and hands back.

The algorithm (`algo.algorithm.ConstrainedTrustRegion`) owns the policy, the critics and the
constraint estimate; each update it builds a `Batch` and a `ConstraintEstimate`, asks its rule
for the policy step (`UpdateRule.improve`) and lets it move its Lagrange multipliers. A new
baseline is a subclass in a file of its own, named in `algo.registry`.
"""

from dataclasses import dataclass
import math
from typing import Any, ClassVar

import numpy as np
import torch

from cpo_ros.algo.networks import gaussian_kl, gaussian_log_prob, GaussianPolicy
from cpo_ros.training.config import AlgoConfig


@dataclass
class ConstraintEstimate:
    """The constraint of one batch: J_C measured, the value held under the limit, and c."""

    j_c: np.ndarray
    """Measured J_C per constraint: undiscounted cost per episode of the sampling policy."""
    held: np.ndarray
    """The J_C held under the limit (an upper bound for CPO, plus the shaping term if on)."""
    c: np.ndarray
    """held - d, with CPO's margins (c < 0) divided by the rise factor."""
    costs: np.ndarray
    """Per-step costs (T, N, m) the advantages are computed from (shaped when shaping is on)."""
    episode_length: float
    """Mean episode length: b (a per-sample mean) times it is on the per-episode scale of c."""
    summary: dict[str, Any]
    """The batch's episode_summary (return, costs, episodes, ...)."""
    shaping_loss: float = math.nan
    c_reliable: np.ndarray | None = None
    """c with z = cost_confidence_reliable: what CPO holds in a step whose cost gradient is
    reliable (AlgoConfig.cost_noise_gate); None without the gate."""
    estimate: np.ndarray | None = None
    """The J_C the bound starts from (j_c, or the CostFilter's with cost_filter); None: j_c."""
    estimate_se: np.ndarray | None = None
    """Its standard error in the bound (the batch's, or the filter's); None: not measured."""


@dataclass
class Batch:
    """One rollout, flat (T * N rows), with its advantages and the sampling policy's outputs."""

    obs: torch.Tensor
    norm_obs: torch.Tensor
    """obs through the normaliser as it was when the batch was sampled."""
    u: torch.Tensor
    """Unit-space actions taken."""
    adv_r: torch.Tensor
    """Reward advantages, standardised."""
    adv_c: torch.Tensor
    """Cost advantages (rows, m): centred, never scaled, so their size carries the cost."""
    gae_r: torch.Tensor
    """Reward advantages as GAE gave them (for the logs)."""
    gae_c: torch.Tensor
    """Cost advantages as GAE gave them (rows, m)."""
    tgt_r: torch.Tensor
    tgt_c: torch.Tensor
    old_mean: torch.Tensor
    old_log_std: torch.Tensor
    old_logp: torch.Tensor
    shape: tuple[int, int]
    """(T, N) of the rollout."""


def surrogates(policy: GaussianPolicy, batch: Batch,
               kl: bool = False) -> tuple[torch.Tensor, ...]:
    """Return the importance-weighted reward and cost surrogates, and the mean KL if asked."""
    mean = policy.mean(batch.obs)
    ratio = torch.exp(gaussian_log_prob(batch.u, mean, policy.log_std) - batch.old_logp)
    out = (ratio * batch.adv_r).mean(), (ratio[:, None] * batch.adv_c).mean(0)
    if kl:
        out += (gaussian_kl(batch.old_mean, batch.old_log_std, mean, policy.log_std).mean(),)
    return out


@dataclass
class PolicyStep:
    """What a rule's policy step did."""

    case: str
    """Which kind of step: CPO's case ('dual', 'recovery', ...), 'trpo', or 'ppo'."""
    accepted: bool
    """The policy changed (a rejected step keeps the old parameters and reports kl 0)."""
    step_frac: float
    """Fraction of the proposed step taken (trust-region rules), or of the epochs run (PPO)."""
    kl: float
    """Mean KL between the old and the new policy on the batch."""
    reward_gain: float
    """Change of the reward surrogate."""
    cost_change: np.ndarray
    """Change of each cost surrogate, per episode (m,)."""
    predicted: np.ndarray
    """The linear model's forecast of the change of each J_C, checked at the next batch."""
    noise: Any = None
    """The split-half cost-gradient noise diagnostic (result() -> (share, cosine)), if any."""


class UpdateRule:
    """The policy step of one algorithm, and its Lagrange multipliers if it has any."""

    name: ClassVar[str]
    holds_upper_bound: ClassVar[bool] = False
    """Constrain the upper bound of J_C (CPO's estimate) rather than its point estimate."""

    def __init__(self, config: AlgoConfig, num_costs: int, policy: GaussianPolicy) -> None:
        self.config = config
        self.multipliers = np.zeros(num_costs)
        """Lagrange multiplier per constraint (0 for rules without any)."""

    @property
    def noise_before_step(self) -> bool:
        """Whether the step needs the cost gradient's noise share (measured before the step)."""
        return False

    def before_step(self, estimate: ConstraintEstimate) -> None:
        """Update what the step needs from this batch's constraint (multipliers first)."""

    def improve(self, algorithm: Any, batch: Batch, estimate: ConstraintEstimate,
                clock: Any) -> PolicyStep:
        """Change algorithm.policy from the batch; return what the step did."""
        raise NotImplementedError

    def after_step(self, estimate: ConstraintEstimate) -> None:
        """Update what changes once the step is taken (e.g. a dual ascent)."""

    def state_dict(self) -> dict[str, Any]:
        """Return the rule's own state beyond its multipliers (for exact resume)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from state_dict() output."""
