"""PID-Lagrangian (CPPO-PID; Stooke, Achiam and Abbeel, ICML 2020).

PPO-Lagrangian whose multiplier is a PID controller's output instead of an integral alone.

The paper's Algorithm 2, per constraint and once per iteration before the policy step:

    delta  = J_C - d
    D      = max(0, J_C - J_C,prev)  (the rise since the last iteration; J_C,prev starts at 0)
    I      = max(0, I + delta)
    lambda = max(0, K_P delta + K_I I + K_D D)

The proportional term reacts to a violation at once and the derivative one to a rising cost,
which damps the overshoot and oscillation of the plain Lagrangian (an integral controller).
"""

from typing import Any

import numpy as np

from cpo_ros.algo.networks import GaussianPolicy
from cpo_ros.algo.ppo_lag import PPOLagrangian
from cpo_ros.algo.rule import ConstraintEstimate
from cpo_ros.training.config import AlgoConfig


class PIDLagrangian(PPOLagrangian):
    """PPO on the Lagrangian with a PID-controlled multiplier."""

    name = 'pid_lag'

    def __init__(self, config: AlgoConfig, num_costs: int, policy: GaussianPolicy) -> None:
        super().__init__(config, num_costs, policy)
        self.multipliers = np.zeros(num_costs)
        self.integral = np.zeros(num_costs)
        self.previous_cost = np.zeros(num_costs)

    def before_step(self, estimate: ConstraintEstimate) -> None:
        """Set lambda from the P, I and D terms of this batch's J_C (held value) against d."""
        cfg = self.config
        cost = estimate.held
        delta = estimate.c
        rise = np.maximum(0.0, cost - self.previous_cost)
        self.integral = np.maximum(0.0, self.integral + delta)
        self.multipliers = np.maximum(0.0, cfg.pid_kp * delta + cfg.pid_ki * self.integral
                                      + cfg.pid_kd * rise)
        self.previous_cost = np.array(cost, dtype=np.float64)

    def state_dict(self) -> dict[str, Any]:
        """Return PPO's state and the controller's integral and previous J_C."""
        return {**super().state_dict(), 'integral': [float(v) for v in self.integral],
                'previous_cost': [float(v) for v in self.previous_cost]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from state_dict() output."""
        super().load_state_dict(state)
        if 'integral' in state:
            self.integral = np.asarray(state['integral'], np.float64).reshape(-1)
            self.previous_cost = np.asarray(state['previous_cost'], np.float64).reshape(-1)
