"""Cost shaping (CPO paper, section 6.3): a learned predictor of a violation within T steps.

The shaped cost of a step from state s is C + w P(s), where P(s) estimates the probability that
a cost is paid within the next T steps of the episode, one output per constraint. P >= 0, so
keeping the shaped cost under the limit keeps the true cost under it too: shaping makes CPO
conservative near the boundary, where the linearised cost model is least accurate, at some
price in return. The labels come from the rollouts themselves (`violation_labels`): each
update first refits the predictor on its batch (it describes the policy whose J_C is measured),
then shapes that batch's costs with it.
"""

from typing import Any

import numpy as np
import torch
from torch import nn

from cpo_ros.algo.networks import mlp


def violation_labels(costs: np.ndarray, dones: np.ndarray, horizon: int) -> np.ndarray:
    """Return (T, N, m) float32: 1 where some cost > 0 within steps t .. t + horizon - 1.

    costs (T, N, m) per step; dones (T, N) end an episode after step t, so a later episode's
    costs never count. Near the end of the rollout only the steps it holds are looked at.
    """
    t_len = costs.shape[0]
    hit = np.asarray(costs) > 0.0
    keep = ~np.asarray(dones, bool)[..., None]
    steps_to_hit = np.full(hit.shape[1:], np.inf)
    labels = np.zeros(hit.shape, np.float32)
    for t in reversed(range(t_len)):
        steps_to_hit = np.where(hit[t], 0.0, np.where(keep[t], steps_to_hit + 1.0, np.inf))
        labels[t] = steps_to_hit < horizon
    return labels


class ViolationPredictor:
    """Logistic MLP over normalised observations: P(violation of constraint i within T steps)."""

    def __init__(self, obs_dim: int, num_costs: int, hidden_sizes: tuple[int, ...],
                 horizon: int, lr: float, epochs: int = 10, minibatch: int = 4096) -> None:
        self.horizon, self.epochs, self.minibatch = horizon, epochs, minibatch
        self.net = mlp((obs_dim, *hidden_sizes, num_costs))
        self.optim = torch.optim.Adam(self.net.parameters(), lr=lr)

    def state_dict(self) -> dict[str, Any]:
        """Return the network and optimiser state (for exact resume)."""
        return {'net': self.net.state_dict(), 'optim': self.optim.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from state_dict() output."""
        self.net.load_state_dict(state['net'])
        self.optim.load_state_dict(state['optim'])

    def predict(self, norm_obs: torch.Tensor) -> np.ndarray:
        """Return probabilities (n, m) float64 for normalised observations (n, obs_dim)."""
        with torch.no_grad():
            return torch.sigmoid(self.net(norm_obs)).double().numpy()

    def fit(self, norm_obs: torch.Tensor, costs: np.ndarray, dones: np.ndarray) -> float:
        """Fit to the violation labels of a rollout; return the last epoch's mean BCE loss.

        norm_obs (T * N, obs_dim) normalised observations, costs (T, N, m), dones (T, N).
        """
        labels = violation_labels(costs, dones, self.horizon)
        y = torch.as_tensor(labels.reshape(norm_obs.shape[0], -1))
        n = norm_obs.shape[0]
        mb = min(self.minibatch, n)
        mean_loss = 0.0
        for _ in range(self.epochs):
            perm = torch.randperm(n)
            total, batches = 0.0, 0
            for start in range(0, n, mb):
                idx = perm[start:start + mb]
                loss = nn.functional.binary_cross_entropy_with_logits(self.net(norm_obs[idx]),
                                                                      y[idx])
                self.optim.zero_grad()
                loss.backward()
                self.optim.step()
                total += loss.item()
                batches += 1
            mean_loss = total / max(batches, 1)
        return mean_loss
