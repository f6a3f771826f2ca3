"""J_C of the newest policy filtered over batches: a Kalman filter on the episode cost.

One batch of a few long episodes measures J_C with a standard error of several cost units, and
CPO holds J_C + z SE under the limit: where SE is as large as the limit, the bound is held by a
cost near 0, and a batch whose episodes happened to miss the hazards (a dip) lets a step rise
into them. The batches before it measured policies a trust region apart, whose changes the
linear model forecast. This filter joins them (per constraint, independently):

- forecast: the last estimate plus the step's predicted change; its variance grows by the
  process variance q, what the changes did beyond their forecast;
- measurement: the batch's J_C with variance SE^2;
- the posterior is their variance-weighted mean, with variance (1 - k) times the forecast's.

q is learned from the innovations (measured minus forecast J_C), whose expected square is the
estimate's variance plus q plus SE^2: a running mean, at the rate given, of the square's excess
over the other two, clipped at 0. The clip biases q upward, so that the standard error errs
large: unclipped, a still policy's estimate missed by more than its SE. q is updated before
the gain, so a surprise is followed at once. The
posterior's variance is never above SE^2: held to the same z, the filtered bound is at most
the batch's own, and tighter when the policy changes less than the batch's noise.
"""

from typing import Any

import numpy as np


class CostFilter:
    """J_C and its variance for each constraint, from every batch measured so far."""

    def __init__(self, num_costs: int, rate: float) -> None:
        self.num_costs, self.rate = num_costs, rate
        self.mean: np.ndarray | None = None
        self.var = np.zeros(num_costs)
        self.process = np.zeros(num_costs)

    def update(self, measured: np.ndarray, se: np.ndarray, forecast: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Return J_C filtered, its standard error, and its change since the last estimate.

        measured, se: the batch's J_C and standard error; forecast: the predicted change of J_C
        since the last batch (None: no step was forecast, the filter starts from this batch,
        its change None). A first batch also sets q to its SE^2 (changes as large as its noise).
        """
        measured = np.asarray(measured, np.float64).reshape(self.num_costs)
        noise = np.square(np.asarray(se, np.float64).reshape(self.num_costs))
        if self.mean is None or forecast is None:
            self.mean, self.var, self.process = measured.copy(), noise.copy(), noise.copy()
            return self.mean.copy(), np.sqrt(self.var), None
        before = self.mean
        prior = before + np.asarray(forecast, np.float64).reshape(self.num_costs)
        innovation = measured - prior
        excess = np.maximum(innovation ** 2 - self.var - noise, 0.0)
        self.process = self.process + self.rate * (excess - self.process)
        prior_var = self.var + self.process
        total = prior_var + noise
        gain = np.divide(prior_var, total, out=np.ones_like(total), where=total > 0.0)
        self.mean = prior + gain * innovation
        self.var = (1.0 - gain) * prior_var
        return self.mean.copy(), np.sqrt(self.var), self.mean - before

    def state_dict(self) -> dict[str, Any]:
        """Return the filter's state as plain lists (empty mean: nothing measured yet)."""
        return {'mean': [] if self.mean is None else [float(v) for v in self.mean],
                'var': [float(v) for v in self.var],
                'process': [float(v) for v in self.process]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from state_dict() output."""
        mean = np.asarray(state['mean'], np.float64)
        self.mean = mean.reshape(self.num_costs) if mean.size else None
        self.var = np.asarray(state['var'], np.float64).reshape(self.num_costs)
        self.process = np.asarray(state['process'], np.float64).reshape(self.num_costs)
