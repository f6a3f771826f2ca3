"""The policy update of CPO and of the TRPO and PDO baselines, which share every piece.

One iteration: GAE for reward and cost from the critics, the surrogate gradients g (reward) and
b (cost, rescaled to the per-episode scale of c = J_C - d by the mean episode length), a Fisher
matrix through Fisher-vector products, a step direction (`cpo.step_direction`), a backtracking
line search, then the critics. The measured J_C of the newest batch is passed in explicitly.
"""

import math
from typing import Any

import numpy as np
import torch

from cpo_ros.core.buffer import episode_summary, gae, next_values, validate_rollout
from cpo_ros.core.config import AlgoConfig
from cpo_ros.core.cpo import CASE_RECOVERY, step_direction
from cpo_ros.core.networks import Critic, GaussianPolicy
from cpo_ros.core.trust_region import (
    fisher_vector_product,
    flat_grad,
    flat_params,
    set_flat_params,
)


class ConstrainedTrustRegion:
    """Own the policy and critics and update them from rollouts (algo: cpo, trpo or pdo)."""

    def __init__(self, obs_dim: int, act_dim: int, config: AlgoConfig,
                 action_low: np.ndarray | None = None, action_high: np.ndarray | None = None,
                 max_episode_steps: int | None = None) -> None:
        config.validate()
        self.config = config
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.max_episode_steps = max_episode_steps
        self.policy = GaussianPolicy(obs_dim, act_dim, config.hidden_sizes, config.init_log_std,
                                     action_low, action_high, config.obs_clip)
        self.reward_critic = Critic(obs_dim, config.value_hidden_sizes)
        self.cost_critic = Critic(obs_dim, config.value_hidden_sizes)
        self.critic_optim = torch.optim.Adam(
            list(self.reward_critic.parameters()) + list(self.cost_critic.parameters()),
            lr=config.value_lr)
        self.lagrange = float(config.pdo_lambda_init)
        self.version = 0

    # -- state for checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return everything an exact resume needs (tensors and plain numbers only)."""
        return {'policy': self.policy.state_dict(),
                'reward_critic': self.reward_critic.state_dict(),
                'cost_critic': self.cost_critic.state_dict(),
                'critic_optim': self.critic_optim.state_dict(), 'lagrange': self.lagrange,
                'version': self.version}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from state_dict() output (shapes are checked by torch)."""
        self.policy.load_state_dict(state['policy'])
        self.reward_critic.load_state_dict(state['reward_critic'])
        self.cost_critic.load_state_dict(state['cost_critic'])
        self.critic_optim.load_state_dict(state['critic_optim'])
        self.lagrange = float(state['lagrange'])
        self.version = int(state['version'])

    # -- the update -----------------------------------------------------------------------------
    def update(self, rollout: dict[str, np.ndarray], episode_cost: float | None = None
               ) -> dict[str, Any]:
        """Run one policy and critic update from a rollout; return the iteration's figures.

        episode_cost: J_C of the policy that sampled the rollout (undiscounted cost per
        episode); measured from the rollout's finished episodes when not given.
        """
        cfg = self.config
        validate_rollout(rollout, self.obs_dim, self.act_dim)
        summary = episode_summary(rollout, self.max_episode_steps)
        j_c = summary['episode_cost'] if episode_cost is None else float(episode_cost)
        c = j_c - cfg.cost_limit
        # The cost surrogate is a per-sample mean; c is per episode.
        ep_len = summary['episode_length']

        obs, adv_r, adv_c, tgt_r, tgt_c = self._advantages(rollout)
        u = torch.as_tensor(rollout['u'].reshape(-1, self.act_dim))
        adv_r = (adv_r - adv_r.mean()) / (adv_r.std() + 1e-8)
        adv_c = adv_c - adv_c.mean()  # centred, never scaled: its size carries the cost

        policy = self.policy
        with torch.no_grad():
            old_dist = policy.distribution(obs)
            old_logp = old_dist.log_prob(u).sum(-1)

        def surrogates() -> tuple[torch.Tensor, torch.Tensor]:
            ratio = torch.exp(policy.log_prob(obs, u) - old_logp)
            return (ratio * adv_r).mean(), (ratio * adv_c).mean()

        def mean_kl() -> torch.Tensor:
            dist = policy.distribution(obs)
            return torch.distributions.kl_divergence(old_dist, dist).sum(-1).mean()

        loss_r, loss_c = surrogates()
        g = flat_grad(loss_r, policy, retain_graph=True)
        b = flat_grad(loss_c, policy)
        if cfg.algo == 'pdo':
            g = g - self.lagrange * b
        fvp = fisher_vector_product(mean_kl, policy, cfg.cg_damping)

        def hvp(v: np.ndarray) -> np.ndarray:
            return fvp(torch.as_tensor(v, dtype=torch.float32)).double().numpy()

        g_np = g.double().numpy()
        if cfg.algo == 'cpo':
            b_np = b.double().numpy() * ep_len
            step, case = step_direction(g_np, b_np, hvp, c, cfg.target_kl, cfg.cg_iters)
        else:
            step, case = step_direction(g_np, np.zeros_like(g_np), hvp, 0.0, cfg.target_kl,
                                        cfg.cg_iters)

        accepted, frac, kl, d_r, d_c = self._line_search(
            torch.as_tensor(step, dtype=torch.float32), surrogates, mean_kl,
            loss_r.item(), loss_c.item(), c, ep_len, case)
        if cfg.algo == 'pdo':
            self.lagrange = max(0.0, self.lagrange + cfg.pdo_lambda_lr * c)
        value_loss_r, value_loss_c = self._fit_critics(obs, tgt_r, tgt_c)
        self._update_normalizer(rollout['obs'])
        self.version += 1
        return {
            'episode_return': summary['episode_return'], 'episode_cost': j_c,
            'episode_length': ep_len, 'episodes': summary['episodes'],
            'cost_limit': cfg.cost_limit, 'kl': kl, 'case': case, 'accepted': accepted,
            'step_frac': frac, 'surrogate_reward_gain': d_r, 'surrogate_cost_change': d_c,
            'lagrange': self.lagrange, 'value_loss_reward': value_loss_r,
            'value_loss_cost': value_loss_c, 'policy_std': policy.log_std.exp().mean().item(),
            'samples': int(rollout['reward'].size), 'policy_version': self.version,
        }

    def _update_normalizer(self, obs: np.ndarray) -> None:
        """Fold obs into the running statistics without changing what the networks compute.

        A plain update would move the policy outside the trust region (and outside CPO's
        control of the cost: the measured cost then drifts above the limit). The first layer of
        each network absorbs the change instead: W (x - m) / s + c = W' (x - m') / s' + c' with
        W' = W s' / s and c' = c + W (m' - m) / s (exact for unclipped inputs).
        """
        norm = self.policy.norm
        old_mean, old_std = norm.mean.clone(), torch.sqrt(norm.var + 1e-8)
        norm.update(obs)
        new_mean, new_std = norm.mean, torch.sqrt(norm.var + 1e-8)
        with torch.no_grad():
            for first in (self.policy.mean_net[0], self.reward_critic.net[0],
                          self.cost_critic.net[0]):
                w = first.weight.double()
                first.bias.add_((w @ ((new_mean - old_mean) / old_std)).float())
                first.weight.copy_((w * (new_std / old_std)).float())

    def _advantages(self, rollout: dict[str, np.ndarray]):
        """Return flat torch obs, reward/cost advantages and value targets (GAE each)."""
        cfg = self.config
        t, n = rollout['reward'].shape
        obs = torch.as_tensor(rollout['obs'].reshape(t * n, -1))
        extra = torch.as_tensor(np.concatenate(
            [rollout['final_obs'].reshape(t * n, -1), rollout['last_obs']], axis=0))
        with torch.no_grad():
            norm_obs, norm_extra = self.policy.norm(obs), self.policy.norm(extra)
            out = []
            for critic, gamma, lam, key in (
                    (self.reward_critic, cfg.gamma, cfg.lam, 'reward'),
                    (self.cost_critic, cfg.cost_gamma, cfg.cost_lam, 'cost')):
                values = critic(norm_obs).double().numpy().reshape(t, n)
                extra_v = critic(norm_extra).double().numpy()
                final_v, last_v = extra_v[:t * n].reshape(t, n), extra_v[t * n:]
                nxt = next_values(values, last_v, final_v, rollout['terminated'],
                                  rollout['truncated'])
                dones = rollout['terminated'] | rollout['truncated']
                adv, target = gae(rollout[key].astype(np.float64), values, nxt, dones, gamma, lam)
                out.append((torch.as_tensor(adv.reshape(-1), dtype=torch.float32),
                            torch.as_tensor(target.reshape(-1), dtype=torch.float32)))
        (adv_r, tgt_r), (adv_c, tgt_c) = out
        return obs, adv_r, adv_c, tgt_r, tgt_c

    def _line_search(self, step: torch.Tensor, surrogates, mean_kl, loss_r: float,
                     loss_c: float, c: float, ep_len: float,
                     case: str) -> tuple[bool, float, float, float, float]:
        """Backtrack along step; keep the old parameters when no fraction is acceptable.

        Accept when the mean KL is within delta, the cost surrogate (per episode) rose no more
        than max(-c, 0) (CPO only), and the reward surrogate improved — required unless the
        batch violates the constraint (c >= 0), where a step that lowers the cost may cost
        reward, and in recovery, which ignores the reward.
        """
        cfg = self.config
        old = flat_params(self.policy)
        need_reward_gain = cfg.algo != 'cpo' or (case != CASE_RECOVERY and c < 0.0)
        frac = 1.0
        for _ in range(cfg.backtrack_iters):
            set_flat_params(self.policy, old + frac * step)
            with torch.no_grad():
                new_r, new_c = surrogates()
                kl = float(mean_kl())
            d_r, d_c = float(new_r) - loss_r, (float(new_c) - loss_c) * ep_len
            ok = math.isfinite(kl) and kl <= cfg.target_kl
            if need_reward_gain:
                # PDO climbs the Lagrangian, not the reward alone.
                gain = d_r - self.lagrange * (float(new_c) - loss_c) if cfg.algo == 'pdo' else d_r
                ok = ok and gain > 0.0
            if cfg.algo == 'cpo':
                ok = ok and d_c <= max(-c, 0.0)
            if ok:
                return True, frac, kl, d_r, d_c
            frac *= cfg.backtrack_ratio
        set_flat_params(self.policy, old)
        return False, 0.0, 0.0, 0.0, 0.0

    def _fit_critics(self, obs: torch.Tensor, tgt_r: torch.Tensor,
                     tgt_c: torch.Tensor) -> tuple[float, float]:
        """Fit both critics to their GAE targets with Adam; return the last epoch's mean losses."""
        cfg = self.config
        with torch.no_grad():
            norm_obs = self.policy.norm(obs)
        n = norm_obs.shape[0]
        mb = min(cfg.value_minibatch, n)
        loss_r_sum = loss_c_sum = 0.0
        batches = 0
        for _ in range(cfg.value_epochs):
            perm = torch.randperm(n)
            loss_r_sum = loss_c_sum = 0.0
            batches = 0
            for start in range(0, n, mb):
                idx = perm[start:start + mb]
                loss_r = (self.reward_critic(norm_obs[idx]) - tgt_r[idx]).pow(2).mean()
                loss_c = (self.cost_critic(norm_obs[idx]) - tgt_c[idx]).pow(2).mean()
                self.critic_optim.zero_grad()
                (loss_r + loss_c).backward()
                self.critic_optim.step()
                loss_r_sum += loss_r.item()
                loss_c_sum += loss_c.item()
                batches += 1
        if batches == 0:
            return 0.0, 0.0
        return loss_r_sum / batches, loss_c_sum / batches
