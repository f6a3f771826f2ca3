"""The policy update of CPO and of the baselines, which share its critics and estimates.

One iteration, in named steps: the constraint estimate (`estimate_constraint`: J_C of the
newest batch, measured or passed in, the value held under the limit, c = held - d), the
advantages (`batch`: GAE for reward and each cost from the critics), the rule's policy step
(`UpdateRule.improve`: for CPO, TRPO and PDO the surrogate gradients, a direction and a
backtracking line search, `trust_region.TrustRegionRule`), its multipliers, then the critics,
fit beside the step. The rules are small classes named in `algo.registry`. With cost shaping
(paper section 6.3) each cost becomes C + w P(violation within T steps), P from
`shaping.ViolationPredictor`, under the same limit.
"""

from collections.abc import Callable
import copy
import math
import time
from typing import Any
import warnings

import numpy as np
import torch
from torch import nn

from cpo_ros.algo.buffer import cost_matrix, episode_summary, gae, next_values, validate_rollout
from cpo_ros.algo.cost_filter import CostFilter
from cpo_ros.algo.critic_process import CriticFitProcess, FitProcessLost, PendingFit
from cpo_ros.algo.networks import Critic, gaussian_log_prob, GaussianPolicy
from cpo_ros.algo.registry import rule_class
from cpo_ros.algo.rule import Batch, ConstraintEstimate, PolicyStep
from cpo_ros.algo.shaping import ViolationPredictor
from cpo_ros.algo.trust_region import flat_grad, numpy_solver, SolvedOperator
from cpo_ros.training.background import BackgroundCall, Deferred
from cpo_ros.training.config import AlgoConfig


def _spread(values: torch.Tensor) -> float:
    """Return the sample standard deviation, 0 for fewer than two values (never NaN)."""
    return float(values.std()) if values.numel() > 1 else 0.0


class ConstrainedTrustRegion:
    """Own the policy, critics and constraint estimate; update them by the rule named algo."""

    @staticmethod
    def check_config(config: AlgoConfig, num_costs: int) -> None:
        """Raise ValueError unless config is usable on a task of num_costs constraints."""
        config.validate()
        if len(config.limits) != num_costs:
            raise ValueError(f'cost_limit has {len(config.limits)} value(s) '
                             f'{list(config.limits)} but the task has {num_costs} '
                             f'constraint(s): give one limit each')
        if (config.cost_noise_discount > 0.0 and num_costs > 1
                and rule_class(config.algo).holds_upper_bound):
            raise ValueError(f'cost_noise_discount works with one constraint; the task has '
                             f'{num_costs}: set it to 0')

    def __init__(self, obs_dim: int, act_dim: int, config: AlgoConfig,
                 action_low: np.ndarray | None = None, action_high: np.ndarray | None = None,
                 max_episode_steps: int | None = None, num_costs: int = 1) -> None:
        self.check_config(config, num_costs)
        self.config = config
        self.obs_dim, self.act_dim, self.num_costs = obs_dim, act_dim, num_costs
        self.limits = np.asarray(config.limits, np.float64)
        self.max_episode_steps = max_episode_steps
        self.policy = GaussianPolicy(obs_dim, act_dim, config.hidden_sizes, config.init_log_std,
                                     action_low, action_high, config.obs_clip)
        self.reward_critic = Critic(obs_dim, config.value_hidden_sizes)
        self.cost_critics = nn.ModuleList(Critic(obs_dim, config.value_hidden_sizes)
                                          for _ in range(num_costs))
        self.critic_optim = torch.optim.Adam(
            list(self.reward_critic.parameters()) + list(self.cost_critics.parameters()),
            lr=config.value_lr)
        self.shaper = (ViolationPredictor(obs_dim, num_costs, config.value_hidden_sizes,
                                          config.shaping_horizon, config.value_lr,
                                          config.value_epochs, config.value_minibatch)
                       if config.cost_shaping else None)
        self.rule = rule_class(config.algo)(config, num_costs, self.policy)
        self.version = 0
        self._critic_fit: BackgroundCall | PendingFit | None = None
        self._fit_process: CriticFitProcess | None = None
        # The linear cost model's bias, learned from its one-step prediction errors (per
        # constraint), and what the last update measured and predicted.
        self.cost_bias = np.zeros(num_costs)
        # Its slope on rises: running means of predicted and measured changes after updates
        # predicted to raise the cost (their ratio is rise_factor).
        self._rise_predicted = np.zeros(num_costs)
        self._rise_measured = np.zeros(num_costs)
        self._last_cost: np.ndarray | None = None
        self._last_prediction: np.ndarray | None = None
        # J_C filtered over the batches (cost_filter), else the newest batch's alone.
        self.cost_filter = (CostFilter(num_costs, config.cost_bias_rate)
                            if config.cost_filter else None)
        # z of the held bound per constraint: cost_confidence, or calibrated online.
        self.confidence = np.full(num_costs, float(config.cost_confidence))

    @property
    def lagrange(self) -> np.ndarray:
        """Return the rule's Lagrange multipliers (zeros for rules without any)."""
        return self.rule.multipliers

    def fit_critics_in_process(self, torch_threads: int = 1) -> None:
        """Fit the critics in a child process from now on (same result as on the thread).

        For a caller that samples while the critics fit (policy_ready): a fit on a thread
        slows sampling through the GIL. The child starts now (a second or two, once); close()
        ends it. A child that dies is replaced at the next update (core.critic_process).
        """
        if self._fit_process is None:
            self._fit_process = CriticFitProcess(torch_threads)
        self._fit_threads = torch_threads

    def _submit_fit(self, norm_obs: torch.Tensor, tgt_r: torch.Tensor, tgt_c: torch.Tensor,
                    fitted: bool) -> Any:
        """Start the critics' fit: in the child process when there is one, else on a thread."""
        if self._fit_process is None:
            return BackgroundCall(_timed, self._fit_critics, norm_obs, tgt_r, tgt_c, fitted)
        if not self._fit_process.alive:
            warnings.warn("the critics' fit process had ended: starting a new one",
                          RuntimeWarning, stacklevel=3)
            self._fit_process.close()
            self._fit_process = CriticFitProcess(self._fit_threads)
        try:
            return self._fit_process.submit(self, norm_obs, tgt_r, tgt_c, fitted)
        except FitProcessLost:  # it ended since: this update fits on a thread
            return BackgroundCall(_timed, self._fit_critics, norm_obs, tgt_r, tgt_c, fitted)

    def close(self) -> None:
        """End the critics' fit process, if there is one."""
        if self._fit_process is not None:
            self._fit_process.close()
            self._fit_process = None

    # -- state for checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return everything an exact resume needs (tensors and plain numbers only)."""
        state = {'policy': self.policy.state_dict(),
                 'reward_critic': self.reward_critic.state_dict(),
                 'cost_critics': self.cost_critics.state_dict(),
                 'critic_optim': self.critic_optim.state_dict(),
                 'lagrange': [float(v) for v in self.lagrange], 'rule': self.rule.state_dict(),
                 'version': self.version,
                 'cost_bias': [float(v) for v in self.cost_bias],
                 'confidence': [float(v) for v in self.confidence],
                 'rise_predicted': [float(v) for v in self._rise_predicted],
                 'rise_measured': [float(v) for v in self._rise_measured],
                 'last_cost': ([] if self._last_cost is None
                               else [float(v) for v in self._last_cost]),
                 'last_prediction': ([] if self._last_prediction is None
                                     else [float(v) for v in self._last_prediction])}
        if self.shaper is not None:
            state['shaper'] = self.shaper.state_dict()
        if self.cost_filter is not None:
            state['cost_filter'] = self.cost_filter.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from state_dict() output (shapes are checked by torch)."""
        if self._critic_fit is not None:
            self._critic_fit.wait()  # an update that failed may still be fitting the critics
        lagrange = np.asarray(state['lagrange'], np.float64).reshape(-1)
        if lagrange.shape != (self.num_costs,):
            raise ValueError(f'the checkpoint has {lagrange.size} constraint(s), this run '
                             f'{self.num_costs}')
        if (self.shaper is None) != ('shaper' not in state):
            raise ValueError('cost_shaping differs between the checkpoint and this run')
        self.policy.load_state_dict(state['policy'])
        self.reward_critic.load_state_dict(state['reward_critic'])
        self.cost_critics.load_state_dict(state['cost_critics'])
        self.critic_optim.load_state_dict(state['critic_optim'])
        if self.shaper is not None:
            self.shaper.load_state_dict(state['shaper'])
        if self.cost_filter is not None:  # a checkpoint without it: the filter starts anew
            self.cost_filter = CostFilter(self.num_costs, self.config.cost_bias_rate)
            if 'cost_filter' in state:
                self.cost_filter.load_state_dict(state['cost_filter'])
        self.rule.multipliers = lagrange
        self.rule.load_state_dict(state.get('rule', {}))  # none before the rules had state
        self.version = int(state['version'])
        self.cost_bias = np.asarray(state['cost_bias'], np.float64).reshape(self.num_costs)
        self.confidence = np.asarray(state.get('confidence', [self.config.cost_confidence]
                                               * self.num_costs), np.float64).reshape(
            self.num_costs)
        # Checkpoints from before the slope have no rises: no calibration.
        zeros = [0.0] * self.num_costs
        self._rise_predicted = np.asarray(state.get('rise_predicted', zeros),
                                          np.float64).reshape(self.num_costs)
        self._rise_measured = np.asarray(state.get('rise_measured', zeros),
                                         np.float64).reshape(self.num_costs)
        last_cost = np.asarray(state['last_cost'], np.float64)
        last_prediction = np.asarray(state['last_prediction'], np.float64)
        self._last_cost = last_cost if last_cost.size else None
        self._last_prediction = last_prediction if last_prediction.size else None

    # -- the update -----------------------------------------------------------------------------
    def update(self, rollout: dict[str, np.ndarray],
               episode_cost: float | np.ndarray | None = None,
               policy_ready: Callable[[], None] | None = None) -> dict[str, Any]:
        """Run one policy and critic update from a rollout; return the iteration's figures.

        episode_cost: J_C of the policy that sampled the rollout (undiscounted cost per
        episode, one per constraint); measured from the rollout's finished episodes when not
        given. policy_ready, when given, is called once the new policy (and `version`) is
        final while the critics may still be fitting (on a thread, or in their process): the
        caller can sample the next rollout meanwhile. Nothing of the update depends on what it
        does, except that it must not change the policy. The figures include the seconds of
        each piece (time_*_s; time_policy_ready_s is spent in the callback) and, under
        'histograms', arrays for the logs (the policy's std, the advantages).
        """
        clock = _Clock()
        validate_rollout(rollout, self.obs_dim, self.act_dim, self.num_costs)
        estimate = self.estimate_constraint(rollout, episode_cost)
        batch = self.batch(rollout, estimate.costs)
        clock.lap('advantages')
        # The critics' fit needs nothing of the policy step: it runs beside it (same result).
        # A fresh critic starts from its targets' mean.
        critics = self._critic_fit = self._submit_fit(batch.norm_obs, batch.tgt_r, batch.tgt_c,
                                                      self.version > 0)
        self.rule.before_step(estimate)
        before = nn.utils.parameters_to_vector(self.policy.parameters()).detach().clone()
        # The rule's own state too (PPO's Adam moments): a non-finite step leaves it NaN, and
        # every later step would be refused the same way.
        rule_before = copy.deepcopy(self.rule.state_dict())
        step = self.rule.improve(self, batch, estimate, clock)
        if not bool(torch.isfinite(nn.utils.parameters_to_vector(self.policy.parameters())
                                   ).all()):
            # A step that made any weight NaN or inf is no step: the old policy stays.
            nn.utils.vector_to_parameters(before, self.policy.parameters())
            self.rule.load_state_dict(rule_before)
            warnings.warn(f'{self.rule.name}: the step made policy weights non-finite; the old '
                          f'policy is kept', RuntimeWarning, stacklevel=2)
            zeros = np.zeros_like(step.cost_change)
            step = PolicyStep(step.case, False, 0.0, 0.0, 0.0, zeros, zeros.copy())
        # The linear model's forecast of J_C's change, checked against the next measurement.
        self._last_cost, self._last_prediction = estimate.j_c.copy(), step.predicted
        self.rule.after_step(estimate)
        fold_critics = self._update_normalizer(rollout['obs'], critics_now=False)
        self.version += 1
        clock.lap('policy_rest')
        if policy_ready is not None:
            policy_ready()
            clock.lap('policy_ready')
        value_losses, fit_s = critics.result()
        fold_critics()
        noise = step.noise.result() if step.noise is not None else (math.nan, math.nan)
        if (self.config.cost_bias_denoise and self.config.cost_noise_discount <= 0.0
                and math.isfinite(noise[0])):  # with the discount the forecast has no noise
            # What the next measurement is compared with: a decrease without its noise part.
            forecast = self._last_prediction.copy()
            if forecast[0] < 0.0:
                forecast[0] *= 1.0 - min(max(noise[0], 0.0), 1.0)
            self._last_prediction = forecast
        clock.lap('critic_wait')
        return {**clock.figures(), 'time_critic_fit_s': fit_s,
                **self._figures(rollout, estimate, step, value_losses, noise),
                'histograms': self._histograms(batch)}

    def estimate_constraint(self, rollout: dict[str, np.ndarray],
                            episode_cost: float | np.ndarray | None = None
                            ) -> ConstraintEstimate:
        """Return J_C measured, the value the rule holds under the limit, and c = held - d.

        With cost shaping (paper section 6.3) each cost becomes C + w P, P fit to this batch
        (the policy whose J_C is measured): the held J adds w P summed over an episode, under
        the same limit. CPO's margins (c < 0) are divided by the rise factor: rises are
        under-predicted by it, so a step may predict only margin / rise_factor.
        """
        summary = episode_summary(rollout, self.max_episode_steps)
        j_c = summary['episode_costs'] if episode_cost is None else np.asarray(
            episode_cost, np.float64).reshape(self.num_costs)
        # The cost surrogate is a per-sample mean; c is per episode.
        ep_len = summary['episode_length']
        costs = cost_matrix(rollout['cost'], 2).astype(np.float64)
        held, estimate, held_se = self._constraint_value(j_c, summary['episode_cost_se'])
        shaping_loss = math.nan
        if self.shaper is not None:
            costs, shaping_term, shaping_loss = self._shaped_costs(rollout, costs)
            held = held + shaping_term * ep_len
        c, c_reliable = self._c(held), None
        cfg = self.config
        if self.rule.holds_upper_bound and cfg.cost_noise_gate > 0.0:
            c_reliable = self._c(held + (cfg.cost_confidence_reliable - self.confidence)
                                 * held_se)
        return ConstraintEstimate(j_c, held, c, costs, ep_len, summary, shaping_loss,
                                  c_reliable, estimate, held_se)

    def _c(self, held: np.ndarray) -> np.ndarray:
        """Return held - d, CPO's margins (c < 0) divided by the rise factor."""
        c = held - self.limits
        if self.rule.holds_upper_bound:
            c = np.where(c < 0.0, c / self.rise_factor, c)
        return c

    def batch(self, rollout: dict[str, np.ndarray], costs: np.ndarray) -> Batch:
        """Return the rollout as a Batch: flat rows, advantages, the sampling policy's outputs."""
        obs, adv_r, adv_c, tgt_r, tgt_c = self._advantages(rollout, costs)
        policy = self.policy
        u = torch.as_tensor(rollout['u'].reshape(-1, self.act_dim))
        with torch.no_grad():
            norm_obs = policy.norm(obs)  # before the normaliser moves on (after the step)
            old_mean, old_log_std = policy.mean(obs), policy.log_std.detach().clone()
            old_logp = gaussian_log_prob(u, old_mean, old_log_std)
        return Batch(obs=obs, norm_obs=norm_obs, u=u,
                     adv_r=(adv_r - adv_r.mean()) / (_spread(adv_r) + 1e-8),
                     adv_c=adv_c - adv_c.mean(0),  # centred, never scaled (see Batch)
                     gae_r=adv_r, gae_c=adv_c,
                     tgt_r=tgt_r, tgt_c=tgt_c, old_mean=old_mean, old_log_std=old_log_std,
                     old_logp=old_logp, shape=rollout['reward'].shape)

    def _shaped_costs(self, rollout: dict[str, np.ndarray],
                      costs: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Return C + w P per step, w times P's mean per constraint, and the predictor's loss."""
        t, n = rollout['reward'].shape
        with torch.no_grad():
            norm_obs = self.policy.norm(torch.as_tensor(rollout['obs'].reshape(t * n, -1)))
        loss = self.shaper.fit(norm_obs, costs, rollout['terminated'] | rollout['truncated'])
        prob = self.shaper.predict(norm_obs).reshape(t, n, self.num_costs)
        weight = self.config.shaping_weight
        return costs + weight * prob, weight * prob.mean(axis=(0, 1)), loss

    def _histograms(self, batch: Batch) -> dict[str, np.ndarray]:
        """Return the policy's std per action dimension and the batch's GAE advantages."""
        out = {'policy_std': self.policy.log_std.detach().exp().double().numpy(),
               'advantage_reward': batch.gae_r.double().numpy()}
        for i in range(self.num_costs):
            name = 'advantage_cost' if self.num_costs == 1 else f'advantage_cost_{i}'
            out[name] = batch.gae_c[:, i].double().numpy()
        return out

    def _figures(self, rollout: dict[str, np.ndarray], estimate: ConstraintEstimate,
                 step: PolicyStep, value_losses: tuple[float, float],
                 noise: tuple[float, float]) -> dict[str, Any]:
        """Return the iteration's figures (single-constraint keys are the first constraint's)."""
        summary, j_c = estimate.summary, estimate.j_c
        return {
            'episode_return': summary['episode_return'], 'episode_cost': float(j_c[0]),
            'episode_costs': [float(v) for v in j_c],
            'constrained_costs': [float(v) for v in estimate.held],
            'episode_length': estimate.episode_length, 'episodes': summary['episodes'],
            'cost_limit': float(self.limits[0]), 'cost_limits': [float(v) for v in self.limits],
            'kl': step.kl, 'case': step.case, 'accepted': step.accepted,
            'step_frac': step.step_frac, 'surrogate_reward_gain': step.reward_gain,
            'surrogate_cost_change': float(step.cost_change[0]),
            'lagrange': float(self.lagrange[0]), 'lagranges': [float(v) for v in self.lagrange],
            'value_loss_reward': value_losses[0], 'value_loss_cost': value_losses[1],
            'shaping_loss': estimate.shaping_loss,
            'policy_std': self.policy.log_std.exp().mean().item(),
            'samples': int(rollout['reward'].size), 'policy_version': self.version,
            'predicted_cost_change': float(step.predicted[0]),
            'predicted_cost_changes': [float(v) for v in step.predicted],
            'cost_bias': float(self.cost_bias[0]), 'cost_rise_factor': float(self.rise_factor[0]),
            'cost_estimate': float(estimate.estimate[0]),
            'cost_se': float(estimate.estimate_se[0]),
            'cost_confidence': (float(self.confidence[0]) if self.rule.holds_upper_bound
                                else math.nan),
            'cost_grad_noise': noise[0], 'cost_grad_cos': noise[1],
        }

    @property
    def rise_factor(self) -> np.ndarray:
        """Return how many times rises exceed their prediction, in [1, cost_rise_max]."""
        ratio = self._rise_measured / np.maximum(self._rise_predicted, 1e-12)
        return np.where(self._rise_predicted > 0.0,
                        np.clip(ratio, 1.0, self.config.cost_rise_max), 1.0)

    def _constraint_value(self, j_c: np.ndarray, j_c_se: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the J_C that CPO holds under the limit (an upper bound), and J_C and SE in it.

        Long episodes make the batch's J_C noisy (a few episodes that leave the safe area
        carry most of the cost) and the linear model of the cost optimistic (its error grows
        with the horizon, the term of the paper's bound that practical CPO drops). So CPO
        constrains J_C + z SE(J_C) + max(bias, 0), where bias is a running mean of the
        linear model's one-step errors: J_C measured now minus J_C predicted by the last step.
        With cost_filter, J_C and SE are the CostFilter's, over every batch so far, and the
        one-step errors those of its estimates. The baselines keep the point estimate.
        """
        cfg = self.config
        if not self.rule.holds_upper_bound:
            return j_c, j_c, j_c_se
        rate = cfg.cost_bias_rate
        predicted = expected = None
        if self._last_cost is not None:
            predicted = self._last_prediction
            if cfg.cost_bias_aim != 'none':  # a decrease beyond the limit's ask is no forecast
                floor = (np.minimum(self.limits - self._last_cost, 0.0)
                         if cfg.cost_bias_aim == 'limit' else
                         np.where(self._last_cost < self.limits, 0.0, -np.inf))
                predicted = np.maximum(predicted, floor)
            expected = np.where(predicted > 0.0, predicted * self.rise_factor, predicted)
        measured = None if self._last_cost is None else j_c - self._last_cost
        if measured is not None and cfg.cost_confidence_rate > 0.0:
            over = (j_c > self.limits).astype(np.float64)
            self.confidence = np.clip(self.confidence + cfg.cost_confidence_rate
                                      * (over - cfg.cost_over_share), 0.0, cfg.cost_confidence)
        if self.cost_filter is not None:
            j_c, j_c_se, measured = self.cost_filter.update(j_c, j_c_se, expected)
        if measured is not None and rate > 0.0:
            rose = predicted > 0.0
            self.cost_bias += rate * (measured - expected - self.cost_bias)
            if cfg.cost_rise_max > 1.0 and rose.any():
                self._rise_predicted[rose] += rate * (predicted[rose]
                                                      - self._rise_predicted[rose])
                self._rise_measured[rose] += rate * (measured[rose] - self._rise_measured[rose])
        held = j_c + self.confidence * j_c_se + np.maximum(self.cost_bias, 0.0)
        return held, j_c, j_c_se

    def cost_gradient_noise(self, obs: torch.Tensor, u: torch.Tensor, old_logp: torch.Tensor,
                             adv_c: torch.Tensor, shape: tuple[int, int], hvp: SolvedOperator,
                             b: np.ndarray, ep_len: float,
                             norm_obs: torch.Tensor | None = None) -> Any:
        """Start finding the share of s = b.H^-1.b that is noise, and the cosine of b's halves.

        b is estimated from each half of the batch (half the envs, or the two halves in time
        with one env), b_1 and b_2. Their difference is pure noise: with b = (b_1 + b_2) / 2,
        d = (b_1 - b_2) / 2 has the covariance of b's noise, so d.H^-1.d / b.H^-1.b estimates
        the part of s (CPO's measure of how far the cost can be lowered within the trust
        region) that noise makes up. Near 1, the step's cost direction is mostly noise.

        b (the whole batch's gradient, as the step used it) is the sample-weighted mean of
        b_1 and b_2, so b_2 follows from b and b_1 without a second pass; with halves of
        equal size (an even number of envs) H^-1 b is the step's own solve, and only d needs
        a CG solve of its own. The half-batch gradient is taken now, at the current parameters.
        The solves H^-1 v it still needs run in the critics' fit process, after the fit, when
        there is one and norm_obs (the normalised obs) is given; otherwise on a thread beside
        the line search (the Fisher product keeps its own weights). The returned object's
        result() is (noise share, cosine).
        """
        t, n = shape
        index = torch.arange(t * n)
        first = (index % n) < n // 2 if n >= 2 else index < (t * n) // 2
        n_1 = int(first.sum())
        n_2 = t * n - n_1
        ratio = torch.exp(self.policy.log_prob(obs[first], u[first]) - old_logp[first])
        b_1 = flat_grad((ratio * adv_c[first]).mean(), self.policy).double().numpy() * ep_len
        b_2 = ((n_1 + n_2) * b - n_1 * b_1) / n_2
        solve = numpy_solver(hvp, self.config.cg_iters)
        mean = b if n_1 == n_2 else (b_1 + b_2) / 2.0
        d = (b_1 - b_2) / 2.0
        cos = float(b_1 @ b_2 / (np.linalg.norm(b_1) * np.linalg.norm(b_2) + 1e-30))

        def shares(w_mean: np.ndarray, w_d: np.ndarray) -> tuple[float, float]:
            return float(d @ w_d) / max(float(mean @ w_mean), 1e-30), cos

        def here() -> tuple[float, float]:  # hvp keeps its own weights: any time, any thread
            return shares(solve(mean), solve(d))

        if self._fit_process is None or norm_obs is None:
            return BackgroundCall(here)
        # H^-1 b is the step's own solve (equal halves); the rest goes to the child.
        known = hvp.known(mean) if isinstance(hvp, SolvedOperator) else None
        try:
            pending = self._fit_process.submit_solve(self, norm_obs,
                                                     [d] if known is not None else [mean, d])
        except FitProcessLost:
            return BackgroundCall(here)

        def collect() -> tuple[float, float]:
            try:
                solutions = pending.result()
            except FitProcessLost:  # the child died before it answered
                return here()
            return shares(*([known] if known is not None else []), *solutions)

        return Deferred(collect)

    def _update_normalizer(self, obs: np.ndarray,
                           critics_now: bool = True) -> Callable[[], None]:
        """Fold obs into the running statistics without changing what the networks compute.

        A plain update would move the policy outside the trust region (and outside CPO's
        control of the cost: the measured cost then drifts above the limit). The first layer of
        each network absorbs the change instead: W (x - m) / s + c = W' (x - m') / s' + c' with
        W' = W s' / s and c' = c + W (m' - m) / s (exact for unclipped inputs). With
        critics_now False only the policy's (and the shaper's) first layers are folded now, and
        the critics', which may still be fitting, by the function returned, once their fit is
        done.
        """
        norm = self.policy.norm
        old_mean, old_std = norm.mean.clone(), torch.sqrt(norm.var + 1e-8)
        norm.update(obs)
        new_mean, new_std = norm.mean.clone(), torch.sqrt(norm.var + 1e-8)

        def fold(firsts: list[nn.Linear]) -> None:
            with torch.no_grad():
                for first in firsts:
                    w = first.weight.double()
                    first.bias.add_((w @ ((new_mean - old_mean) / old_std)).float())
                    first.weight.copy_((w * (new_std / old_std)).float())

        fold([self.policy.mean_net[0]] + ([self.shaper.net[0]] if self.shaper is not None
                                          else []))

        def fold_critics() -> None:
            fold([self.reward_critic.net[0], *(critic.net[0] for critic in self.cost_critics)])

        if critics_now:
            fold_critics()
            return lambda: None
        return fold_critics

    def _advantages(self, rollout: dict[str, np.ndarray], costs: np.ndarray):
        """Return flat torch obs, reward/cost advantages and value targets (GAE each).

        costs: (T, N, m) per-step costs (shaped when shaping is on); cost advantages and
        targets come back as (T * N, m).
        """
        cfg = self.config
        t, n = rollout['reward'].shape
        obs = torch.as_tensor(rollout['obs'].reshape(t * n, -1))
        # final_obs only counts where an episode was truncated (next_values): value those rows.
        ends = np.flatnonzero(rollout['truncated'].reshape(-1))
        extra = torch.as_tensor(np.concatenate(
            [rollout['final_obs'].reshape(t * n, -1)[ends], rollout['last_obs']], axis=0))
        dones = rollout['terminated'] | rollout['truncated']
        streams = [(self.reward_critic, cfg.gamma, cfg.lam,
                    rollout['reward'].astype(np.float64))]
        streams += [(critic, cfg.cost_gamma, cfg.cost_lam, costs[:, :, i])
                    for i, critic in enumerate(self.cost_critics)]
        with torch.no_grad():
            norm_obs, norm_extra = self.policy.norm(obs), self.policy.norm(extra)
            out = []
            for critic, gamma, lam, signal in streams:
                values = critic(norm_obs).double().numpy().reshape(t, n)
                extra_v = critic(norm_extra).double().numpy()
                final_v = np.zeros(t * n)
                final_v[ends] = extra_v[:ends.size]
                final_v, last_v = final_v.reshape(t, n), extra_v[ends.size:]
                nxt = next_values(values, last_v, final_v, rollout['terminated'],
                                  rollout['truncated'])
                adv, target = gae(signal, values, nxt, dones, gamma, lam)
                out.append((torch.as_tensor(adv.reshape(-1), dtype=torch.float32),
                            torch.as_tensor(target.reshape(-1), dtype=torch.float32)))
        (adv_r, tgt_r), cost_out = out[0], out[1:]
        adv_c = torch.stack([a for a, _ in cost_out], dim=1)
        tgt_c = torch.stack([tg for _, tg in cost_out], dim=1)
        return obs, adv_r, adv_c, tgt_r, tgt_c

    def _fit_critics(self, norm_obs: torch.Tensor, tgt_r: torch.Tensor, tgt_c: torch.Tensor,
                     fitted: bool = True) -> tuple[float, float]:
        """Fit both critics to their GAE targets with Adam; return the last epoch's mean losses.

        norm_obs: the observations normalised before this update's normaliser step. fitted:
        the critics were fit before (a fresh critic's values are arbitrary, so its first
        standardisation starts from the targets' mean instead of keeping its values).
        """
        cfg = self.config
        n = norm_obs.shape[0]
        mb = min(cfg.value_minibatch, n)
        loss_r_sum = loss_c_sum = 0.0
        batches = 0
        critics = [self.reward_critic, *self.cost_critics]
        targets = torch.cat([tgt_r[:, None], tgt_c], dim=1).double()
        first = {'off': len(critics), 'cost': 1, 'all': 0}[cfg.value_normalization]
        for critic, column in zip(critics[first:], targets.T[first:], strict=True):
            critic.rescale(float(column.mean()), max(_spread(column), 1e-3), preserve=fitted)
        shifts = torch.stack([c.shift for c in critics])
        scales = torch.stack([c.scale for c in critics])
        std_targets = ((targets - shifts) / scales).float()
        for _ in range(cfg.value_epochs):
            perm = torch.randperm(n)
            # One gather per epoch; each minibatch is then a contiguous slice.
            epoch_obs, epoch_targets = norm_obs[perm], std_targets[perm]
            loss_r_sum = loss_c_sum = 0.0
            batches = 0
            for start in range(0, n, mb):
                x, y = epoch_obs[start:start + mb], epoch_targets[start:start + mb]
                losses = [(critic.standardised(x) - y[:, i]).pow(2).mean()
                          for i, critic in enumerate(critics)]
                loss_r, loss_c = losses[0], sum(losses[1:])
                self.critic_optim.zero_grad()
                (loss_r + loss_c).backward()
                self.critic_optim.step()
                # Report in the values' units (squared), as before standardisation.
                loss_r_sum += loss_r.item() * float(scales[0]) ** 2
                loss_c_sum += sum(loss.item() * float(sc) ** 2
                                  for loss, sc in zip(losses[1:], scales[1:], strict=True))
                batches += 1
        if batches == 0:  # value_epochs 0: no fit, so no loss measured
            return math.nan, math.nan
        return loss_r_sum / batches, loss_c_sum / batches


class _Clock:
    """Seconds between laps, named after the piece of work each lap ends."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        """Add the seconds since the last lap to name's."""
        now = time.perf_counter()
        self._laps[name] = self._laps.get(name, 0.0) + now - self._last
        self._last = now

    def figures(self) -> dict[str, float]:
        """Return {'time_<name>_s': seconds} of every lap."""
        return {f'time_{name}_s': seconds for name, seconds in self._laps.items()}


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """Return fn(*args) and its wall-clock seconds."""
    t0 = time.perf_counter()
    return fn(*args), time.perf_counter() - t0
