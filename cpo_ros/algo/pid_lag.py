"""PID-Lagrangian (CPPO-PID; Stooke, Achiam and Abbeel, ICML 2020).

PPO-Lagrangian whose multiplier is a PID controller's output instead of an integral alone.

Per constraint and once per iteration before the policy step, as the authors' code (rlpyt's
cppo_pid), OmniSafe's CPPOPID and SafePO's run it:

    delta  = J_C - d
    I      = max(0, I + K_I delta)                  (I starts at lagrangian_init)
    P      = a_p P + (1 - a_p) delta                (pid_p_ema; P starts at 0)
    S      = a_d S + (1 - a_d) J_C                  (pid_d_ema; S starts at 0)
    D      = max(0, S - S k iterations ago)         (pid_d_delay = k; S - 0 in the first k)
    lambda = max(0, K_P P + I + K_D D)

With pid_p_ema = pid_d_ema = 0 and pid_d_delay = 1 this is the paper's Algorithm 2 as written.
The proportional term reacts to a violation at once and the derivative one to a rising cost,
which damps the overshoot and oscillation of the plain Lagrangian (an integral controller);
the smoothing keeps a noisy J_C of a few episodes from swinging lambda batch to batch.
"""

from collections import deque
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
        self.integral = np.full(num_costs, float(config.lagrangian_init))
        self.proportional = np.zeros(num_costs)
        self.smoothed_cost = np.zeros(num_costs)
        self.past_costs = deque([np.zeros(num_costs)], maxlen=config.pid_d_delay)
        """The smoothed J_C of the last pid_d_delay iterations, oldest first."""

    def before_step(self, estimate: ConstraintEstimate) -> None:
        """Set lambda from the P, I and D terms of this batch's J_C (held value) against d."""
        cfg = self.config
        delta = np.asarray(estimate.c, np.float64)
        self.integral = np.maximum(0.0, self.integral + cfg.pid_ki * delta)
        self.proportional = cfg.pid_p_ema * self.proportional + (1 - cfg.pid_p_ema) * delta
        self.smoothed_cost = (cfg.pid_d_ema * self.smoothed_cost
                              + (1 - cfg.pid_d_ema) * np.asarray(estimate.held, np.float64))
        rise = np.maximum(0.0, self.smoothed_cost - self.past_costs[0])
        self.multipliers = np.maximum(0.0, cfg.pid_kp * self.proportional + self.integral
                                      + cfg.pid_kd * rise)
        self.past_costs.append(self.smoothed_cost.copy())

    def state_dict(self) -> dict[str, Any]:
        """Return PPO's state and the controller's (plain lists: weights_only checkpoints)."""
        return {**super().state_dict(), 'integral': self.integral.tolist(),
                'proportional': self.proportional.tolist(),
                'smoothed_cost': self.smoothed_cost.tolist(),
                'past_costs': [c.tolist() for c in self.past_costs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from state_dict() output."""
        super().load_state_dict(state)

        def vector(values: Any) -> np.ndarray:
            return np.asarray(values, np.float64).reshape(-1)
        if 'past_costs' not in state and 'integral' in state:
            # A checkpoint of the unsmoothed controller (until 88eede9; it resumes with
            # pid_p_ema = pid_d_ema = 0 and pid_d_delay = 1): its I summed J_C - d unscaled.
            previous = vector(state['previous_cost'])
            self.integral = self.config.pid_ki * vector(state['integral'])
            self.smoothed_cost = previous
            self.past_costs = deque([previous], maxlen=self.config.pid_d_delay)
        if 'past_costs' in state:
            self.integral = vector(state['integral'])
            self.proportional = vector(state['proportional'])
            self.smoothed_cost = vector(state['smoothed_cost'])
            self.past_costs = deque((vector(c) for c in state['past_costs']),
                                    maxlen=self.config.pid_d_delay)
