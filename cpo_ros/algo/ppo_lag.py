"""PPO-Lagrangian, the baseline OmniSafe and SafePO users run first.

Each iteration the multiplier climbs the constraint before the policy step, as in OmniSafe:
by default Adam on the loss -lambda (J_C - d) (lagrangian_optimizer 'adam', OmniSafe's and
SafePO's Lagrange), or lambda <- lambda + lr (J_C - d) ('sgd'); lambda >= 0 after each step.
Then ppo_epochs passes of Adam over minibatches minimise PPO's clipped surrogate on the
penalised advantage (A_r - sum_i lambda_i A_Ci) / (1 + sum_i lambda_i). A_r is the
standardised reward advantage and A_Ci the cost advantage with its batch mean subtracted
(OmniSafe's, SafePO's; lagrangian_cost_adv 'standardize' divides it by its deviation too);
both come from the critics and GAE every rule shares. The epochs stop early once the mean KL
to the sampling policy passes ppo_target_kl.
"""

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from cpo_ros.algo.networks import gaussian_log_prob, GaussianPolicy
from cpo_ros.algo.rule import Batch, ConstraintEstimate, PolicyStep, surrogates, UpdateRule
from cpo_ros.training.config import AlgoConfig

CASE_PPO = 'ppo'


class PPOLagrangian(UpdateRule):
    """Clipped-surrogate epochs on the Lagrangian; the multiplier by gradient ascent."""

    name = 'ppo_lag'

    def __init__(self, config: AlgoConfig, num_costs: int, policy: GaussianPolicy) -> None:
        super().__init__(config, num_costs, policy)
        self.multipliers = np.full(num_costs, float(config.lagrangian_init))
        self.lambda_param = torch.zeros(num_costs, dtype=torch.float64, requires_grad=True)
        self.lambda_optim = torch.optim.Adam([self.lambda_param], lr=config.lagrangian_lr)
        """Adam on the multiplier (lagrangian_optimizer 'adam'), as OmniSafe and SafePO."""
        self.optim = torch.optim.Adam(policy.parameters(), lr=config.ppo_lr)
        # Minibatch order from a generator of the rule's own (seeded from the global one, so
        # from the run's seed): the critics may be fitting on a thread meanwhile and draw
        # from the global generator.
        self.generator = torch.Generator().manual_seed(
            int(torch.randint(0, 2 ** 62, (), dtype=torch.int64)))

    def before_step(self, estimate: ConstraintEstimate) -> None:
        """Climb J_C - d by one step of lagrangian_optimizer; lambda stays >= 0."""
        cfg = self.config
        if cfg.lagrangian_optimizer == 'adam':
            with torch.no_grad():
                self.lambda_param.copy_(torch.as_tensor(self.multipliers))
            # The loss -lambda (J_C - d) has the gradient -(J_C - d).
            self.lambda_param.grad = -torch.as_tensor(estimate.c, dtype=torch.float64)
            self.lambda_optim.step()
            stepped = self.lambda_param.detach().numpy().copy()
        else:
            stepped = self.multipliers + cfg.lagrangian_lr * estimate.c
        self.multipliers = np.maximum(0.0, stepped)

    def penalised_advantages(self, batch: Batch) -> torch.Tensor:
        """Return (A_r - sum_i lambda_i A_Ci) / (1 + sum_i lambda_i), A_Ci centred."""
        lam = torch.as_tensor(self.multipliers, dtype=torch.float32)
        adv_c = batch.adv_c - batch.adv_c.mean(0)
        if self.config.lagrangian_cost_adv == 'standardize':
            adv_c = adv_c / (batch.adv_c.std(0) + 1e-8)
        return (batch.adv_r - adv_c @ lam) / (1.0 + lam.sum())

    def improve(self, algorithm: Any, batch: Batch, estimate: ConstraintEstimate,
                clock: Any) -> PolicyStep:
        """Run the clipped-surrogate epochs; return the KL and surrogate changes they made."""
        cfg, policy = self.config, algorithm.policy
        with torch.no_grad():
            start_r, start_c = surrogates(policy, batch)
        adv = self.penalised_advantages(batch)
        rows = adv.shape[0]
        size = min(cfg.ppo_minibatch, rows)
        params = list(policy.parameters())
        epochs = 0
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(rows, generator=self.generator)
            for start in range(0, rows, size):
                idx = order[start:start + size]
                # batch.norm_obs is the normaliser's output for these rows: the mean network
                # directly, without normalising again.
                logp = gaussian_log_prob(batch.u[idx], policy.mean_net(batch.norm_obs[idx]),
                                         policy.log_std)
                ratio = torch.exp(logp - batch.old_logp[idx])
                clipped = torch.clamp(ratio, 1.0 - cfg.ppo_clip, 1.0 + cfg.ppo_clip)
                loss = -torch.min(ratio * adv[idx], clipped * adv[idx]).mean()
                self.optim.zero_grad()
                loss.backward()
                if cfg.ppo_max_grad_norm > 0.0:
                    nn.utils.clip_grad_norm_(params, cfg.ppo_max_grad_norm)
                self.optim.step()
            epochs += 1
            with torch.no_grad():
                kl = float(surrogates(policy, batch, kl=True)[2])
            if cfg.ppo_target_kl > 0.0 and kl > cfg.ppo_target_kl:
                break
        with torch.no_grad():
            new_r, new_c, kl_t = surrogates(policy, batch, kl=True)
        clock.lap('policy_epochs')
        cost_change = (new_c - start_c).double().numpy() * estimate.episode_length
        # The importance-weighted cost change is this rule's forecast of J_C's change.
        return PolicyStep(CASE_PPO, True, epochs / cfg.ppo_epochs, float(kl_t),
                          float(new_r - start_r), cost_change, cost_change.copy())

    def state_dict(self) -> dict[str, Any]:
        """Return the optimisers' state and the minibatch generator's (exact resume)."""
        return {'optim': self.optim.state_dict(), 'generator': self.generator.get_state(),
                # A copy: an optimiser's state dict holds its live moment tensors.
                'lambda_optim': copy.deepcopy(self.lambda_optim.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from state_dict() output (a checkpoint of another rule has none)."""
        if 'optim' in state:
            self.optim.load_state_dict(state['optim'])
            self.generator.set_state(state['generator'])
        if 'lambda_optim' in state:
            self.lambda_optim.load_state_dict(state['lambda_optim'])

