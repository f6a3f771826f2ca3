"""PDO, the primal-dual baseline of the CPO paper: TRPO on the Lagrangian, then dual ascent.

The step climbs g - sum_i lambda_i b_i (the Lagrangian's gradient) in the trust region; after
it, each multiplier moves by pdo_lambda_lr (J_Ci - d_i), kept >= 0.
"""

import numpy as np
import torch

from cpo_ros.algo.networks import GaussianPolicy
from cpo_ros.algo.rule import ConstraintEstimate
from cpo_ros.algo.trpo import natural_gradient_step
from cpo_ros.algo.trust_region import SolvedOperator, TrustRegionRule
from cpo_ros.training.config import AlgoConfig


class PDO(TrustRegionRule):
    """Primal-dual optimisation with a trust-region primal step."""

    name = 'pdo'

    def __init__(self, config: AlgoConfig, num_costs: int, policy: GaussianPolicy) -> None:
        super().__init__(config, num_costs, policy)
        self.multipliers = np.full(num_costs, float(config.pdo_lambda_init))

    def direction(self, g: torch.Tensor, bs: list[torch.Tensor], b_mat: np.ndarray,
                  hvp: SolvedOperator, c: np.ndarray,
                  reliable: bool = True) -> tuple[np.ndarray, str]:
        """Return the natural-gradient step of the Lagrangian r - sum_i lambda_i C_i."""
        lagrangian = g - sum(float(lam) * b for lam, b in zip(self.multipliers, bs, strict=True))
        return natural_gradient_step(lagrangian, hvp, self.config.target_kl,
                                     self.config.cg_iters)

    def acceptable(self, reward_gain: float, cost_change_sample: np.ndarray,
                   cost_change: np.ndarray, c: np.ndarray, case: str) -> bool:
        """Accept when the Lagrangian's surrogate improved (not the reward alone)."""
        return reward_gain - float(self.multipliers @ cost_change_sample) > 0.0

    def after_step(self, estimate: ConstraintEstimate) -> None:
        """Dual ascent: lambda <- max(0, lambda + lr (J_C - d))."""
        self.multipliers = np.maximum(0.0, self.multipliers
                                      + self.config.pdo_lambda_lr * estimate.c)
