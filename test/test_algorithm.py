"""The policy update: normalisation that keeps the policy, trust region respected per case."""

import numpy as np
import pytest
import torch

from cpo_ros.algo.algorithm import ConstrainedTrustRegion
from cpo_ros.algo.trust_region import flat_params
from cpo_ros.sim.make import vec_env
from cpo_ros.training.config import AlgoConfig
from cpo_ros.training.worker import RolloutWorker


def test_normaliser_update_leaves_policy_and_critics_unchanged():
    algo = ConstrainedTrustRegion(4, 2, AlgoConfig())
    rng = np.random.default_rng(0)
    algo.policy.norm.update(rng.normal(size=(500, 4)))
    obs = torch.as_tensor(rng.normal(size=(64, 4)) * 2, dtype=torch.float32)

    def outputs():
        with torch.no_grad():
            norm = algo.policy.norm(obs)
            return (algo.policy.distribution(obs).loc, algo.reward_critic(norm),
                    algo.cost_critics[0](norm))
    before = outputs()
    algo._update_normalizer(rng.normal(loc=3.0, scale=5.0, size=(2000, 4)))
    assert not torch.allclose(algo.policy.norm.mean, torch.zeros(4, dtype=torch.float64),
                              atol=0.5)
    for a, b in zip(before, outputs(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def _update(algo_name, limit, cost_per_step, flat_cost_critic=False):
    """Return the algorithm after one update on a Circle batch with the given cost, and figures."""
    torch.manual_seed(0)
    env = vec_env('circle', 8, seed=0, max_episode_steps=20)
    algo = ConstrainedTrustRegion(env.obs_dim, env.act_dim,
                                  AlgoConfig(algo=algo_name, cost_limit=limit, value_epochs=1),
                                  env.single_action_space.low, env.single_action_space.high, 20)
    if flat_cost_critic:  # values 0: with no cost, the cost advantages and b are exactly 0
        with torch.no_grad():
            for p in algo.cost_critics[0].net[-1].parameters():
                p.zero_()
    worker = RolloutWorker(8, env.obs_dim, env.act_dim, 100, seed=0)
    worker.use_policy(algo.policy, algo.version)
    obs, rollout = env.reset(seed=0), None
    while rollout is None:
        obs, r, c, te, tr, info = env.step(worker.act(obs))
        worker.record(r, c, te, tr, info['final_obs'])
        rollout = worker.take_rollout(obs)
    # Every step costs cost_per_step: J_C = 20 cost_per_step per episode, with no spread.
    rollout['cost'][:] = cost_per_step
    rollout['episode_cost'][:] = 20.0 * cost_per_step
    return algo, algo.update(rollout)


# Each case of the CPO step on a real batch (J_C = 20 when every step costs 1), and the
# baselines. dual_nu0 and inactive are the TRPO step; so is 'trpo' (no cost gradient at all).
CASES = [('cpo', 0.5, 1.0, 'recovery'), ('cpo', 19.5, 1.0, 'dual'),
         ('cpo', 20.0, 1.0, 'dual_nu0'), ('cpo', 50.0, 1.0, 'inactive'),
         ('cpo', 5.0, 0.0, 'trpo'), ('trpo', 0.5, 1.0, 'trpo'), ('pdo', 0.5, 1.0, 'trpo')]


@pytest.mark.parametrize('algo_name,limit,cost,case', CASES)
def test_each_case_of_one_update_on_point_circle(algo_name, limit, cost, case):
    algo, result = _update(algo_name, limit, cost, flat_cost_critic=cost == 0.0)
    assert result['case'] == case
    # The step was taken (a rejected one reports kl 0), within the trust region.
    assert result['accepted'] and 0.0 < result['kl'] <= 0.01 + 1e-9
    assert algo.version == 1
    c = 20.0 * cost - limit
    if case == 'recovery':  # far above the limit: the step lowers the cost, whatever the return
        assert result['predicted_cost_change'] < 0.0 and result['surrogate_cost_change'] < 0.0
    if case == 'dual':  # the constraint is active: the step's linear model lands on the limit
        # (to CG's accuracy; the TRPO step would predict -0.21 here, recovery -1.84)
        assert result['predicted_cost_change'] == pytest.approx(-c * result['step_frac'],
                                                                rel=0.1)
    if algo_name == 'cpo' and case in ('dual_nu0', 'inactive', 'trpo'):
        twin, twin_result = _update('trpo', limit, cost, flat_cost_critic=cost == 0.0)
        torch.testing.assert_close(flat_params(algo.policy), flat_params(twin.policy))
        assert result['kl'] == pytest.approx(twin_result['kl'])
    if algo_name == 'pdo':  # above the limit: the multiplier rose by lr (J_C - d)
        assert result['lagrange'] == pytest.approx(0.01 * c)
