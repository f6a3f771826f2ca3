"""TRPO (Schulman et al. 2015): the natural-gradient step on the reward alone, cost ignored."""

import numpy as np
import torch

from cpo_ros.algo.trust_region import (
    CASE_TRPO,
    numpy_solver,
    SolvedOperator,
    trust_region_step,
    TrustRegionRule,
)


def natural_gradient_step(g: torch.Tensor, hvp: SolvedOperator, delta: float,
                          cg_iters: int) -> tuple[np.ndarray, str]:
    """Return the largest step along H^-1 g in the trust region, and the case 'trpo'."""
    g_np = g.double().numpy()
    v = numpy_solver(hvp, cg_iters)(g_np)
    return trust_region_step(v, float(g_np @ v), delta), CASE_TRPO


class TRPO(TrustRegionRule):
    """The unconstrained baseline: how much return the constraint costs."""

    name = 'trpo'

    def direction(self, g: torch.Tensor, bs: list[torch.Tensor], b_mat: np.ndarray,
                  hvp: SolvedOperator, c: np.ndarray,
                  reliable: bool = True) -> tuple[np.ndarray, str]:
        """Return the natural-gradient step of the reward."""
        return natural_gradient_step(g, hvp, self.config.target_kl, self.config.cg_iters)

    def acceptable(self, reward_gain: float, cost_change_sample: np.ndarray,
                   cost_change: np.ndarray, c: np.ndarray, case: str) -> bool:
        """Accept when the reward surrogate improved."""
        return reward_gain > 0.0
