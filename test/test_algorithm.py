"""The policy update: normalisation that keeps the policy, trust region respected per case."""

import numpy as np
import pytest
import torch

from cpo_ros.algo.algorithm import ConstrainedTrustRegion
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


@pytest.mark.parametrize('algo_name,limit', [('cpo', 0.5), ('cpo', 50.0), ('trpo', 0.5),
                                             ('pdo', 0.5)])
def test_one_update_on_point_circle_stays_in_the_trust_region(algo_name, limit):
    torch.manual_seed(0)
    env = vec_env('circle', 8, seed=0, max_episode_steps=20)
    algo = ConstrainedTrustRegion(env.obs_dim, env.act_dim,
                                  AlgoConfig(algo=algo_name, cost_limit=limit, value_epochs=1),
                                  env.single_action_space.low, env.single_action_space.high, 20)
    worker = RolloutWorker(8, env.obs_dim, env.act_dim, 100, seed=0)
    worker.use_policy(algo.policy, algo.version)
    obs, rollout = env.reset(seed=0), None
    while rollout is None:
        obs, r, c, te, tr, info = env.step(worker.act(obs))
        worker.record(r, c, te, tr, info['final_obs'])
        rollout = worker.take_rollout(obs)
    # Make the batch violate a small limit: every step outside the strip costs 1.
    rollout['cost'][:] = 1.0
    rollout['episode_cost'][:] = 20.0
    result = algo.update(rollout)
    assert result['kl'] <= 0.01 + 1e-9
    assert algo.version == 1
    if algo_name == 'cpo' and limit == 0.5:
        assert result['case'] == 'recovery'  # far above the limit: cost-reducing step only
    if algo_name == 'cpo' and limit == 50.0:
        assert result['case'] in ('inactive', 'dual_nu0', 'trpo')
    if algo_name == 'pdo':
        assert result['lagrange'] > 0.0
