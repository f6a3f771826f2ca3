"""PPO-Lagrangian and PID-Lagrangian: their multipliers, their policy step, their settings."""

import numpy as np
import pytest
import torch

from cpo_ros.algo.algorithm import ConstrainedTrustRegion
from cpo_ros.algo.networks import GaussianPolicy
from cpo_ros.algo.pid_lag import PIDLagrangian
from cpo_ros.algo.ppo_lag import PPOLagrangian
from cpo_ros.algo.rule import ConstraintEstimate, surrogates
from cpo_ros.sim.make import make_vec_env
from cpo_ros.training.config import AlgoConfig
from cpo_ros.training.worker import RolloutWorker


def _estimate(cost, limit):
    cost = np.atleast_1d(np.asarray(cost, np.float64))
    return ConstraintEstimate(cost, cost, cost - np.asarray(limit, np.float64),
                              np.zeros((1, 1, cost.size)), 50.0, {})


def _rule(cls, num_costs=1, **settings):
    return cls(AlgoConfig(**settings), num_costs, GaussianPolicy(6, 2))


def test_ppo_lag_multiplier_rises_above_the_limit_and_falls_to_zero_below():
    rule = _rule(PPOLagrangian, 2, lagrangian_lr=0.05, cost_limit=(5.0, 2.0),
                 lagrangian_optimizer='sgd', lagrangian_init=0.0)
    seen = []
    for cost in ([15.0, 2.0], [11.0, 2.0], [9.0, 6.0], [5.0, 1.0], [0.0, 0.0], [0.0, 0.0]):
        rule.before_step(_estimate(cost, [5.0, 2.0]))
        seen.append(rule.multipliers.copy())
    first = [s[0] for s in seen]
    # 0.05 (J_C - d) per iteration: 0.5, 0.8, 1.0, 1.0, then down by 0.25 per iteration to 0.
    np.testing.assert_allclose(first, [0.5, 0.8, 1.0, 1.0, 0.75, 0.5])
    np.testing.assert_allclose([s[1] for s in seen], [0.0, 0.0, 0.2, 0.15, 0.05, 0.0])
    for _ in range(3):
        rule.before_step(_estimate([0.0, 0.0], [5.0, 2.0]))
    np.testing.assert_array_equal(rule.multipliers, [0.0, 0.0])  # at 0, never below


def test_ppo_lag_multiplier_by_adam_steps_as_torch_adam_on_the_lagrangian():
    # OmniSafe's and SafePO's Lagrange: Adam on the loss -lambda (J_C - d), lambda clamped at 0.
    rule = _rule(PPOLagrangian, lagrangian_lr=0.035, cost_limit=5.0)
    lam = torch.tensor(0.001, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([lam], lr=0.035)
    for cost in (60.0, 80.0, 40.0, 7.0, 0.0, 0.0, 1.0, 30.0):
        rule.before_step(_estimate(cost, 5.0))
        adam.zero_grad()
        (-lam * (cost - 5.0)).backward()
        adam.step()
        with torch.no_grad():
            lam.clamp_(min=0.0)
        assert rule.multipliers[0] == pytest.approx(lam.item(), rel=1e-9, abs=1e-12), cost
    # A step near the learning rate whatever the violation: about 0.001 + 3 x 0.035 after
    # three (plain steps of 0.035 (J_C - d) would have reached 5.2).
    first = _rule(PPOLagrangian, cost_limit=5.0)
    for cost in (60.0, 80.0, 40.0):
        first.before_step(_estimate(cost, 5.0))
    assert 0.09 < first.multipliers[0] < 0.11


def test_pid_with_smoothing_and_delay_against_a_hand_computation():
    rule = _rule(PIDLagrangian, pid_kp=1.0, pid_ki=0.1, pid_kd=1.0, pid_p_ema=0.5,
                 pid_d_ema=0.5, pid_d_delay=2, lagrangian_init=0.0, cost_limit=5.0)
    # By hand, d = 5: I = max(0, I + 0.1 delta); P = P/2 + delta/2; S = S/2 + J_C/2;
    # D = max(0, S - S two iterations before, 0 before the first); lambda = max(0, P + I + D).
    #  J_C  delta    I     P       S        D       lambda
    #   9     4     0.4    2      4.5      4.5     6.9
    #  13     8     1.2    5      8.75     8.75    14.95
    #   5     0     1.2    2.5    6.875    2.375   6.075
    #   0    -5     0.7   -1.25   3.4375   0       0 (clipped from -0.55)
    for cost, lam in zip([9, 13, 5, 0], [6.9, 14.95, 6.075, 0.0], strict=True):
        rule.before_step(_estimate(float(cost), 5.0))
        assert rule.multipliers[0] == pytest.approx(lam, abs=1e-12), cost


def test_pid_terms_against_a_hand_computation():
    # Without smoothing or delay: the paper's Algorithm 2 as written.
    rule = _rule(PIDLagrangian, pid_kp=0.2, pid_ki=0.05, pid_kd=0.3, cost_limit=5.0,
                 pid_p_ema=0.0, pid_d_ema=0.0, pid_d_delay=1, lagrangian_init=0.0)
    # By hand, d = 5: delta = J_C - 5; D = max(0, J_C - J_prev) with J_prev = 0 at first;
    # I = max(0, I + delta); lambda = max(0, 0.2 delta + 0.05 I + 0.3 D).
    #  J_C   delta   D    I     lambda
    #   8      3     8    3     0.6 + 0.15 + 2.4 = 3.15
    #  12      7     4   10     1.4 + 0.5  + 1.2 = 3.1
    #   9      4     0   14     0.8 + 0.7  + 0   = 1.5
    #   3     -2     0   12    -0.4 + 0.6  + 0   = 0.2
    #   1     -4     0    8    -0.8 + 0.4  + 0   = 0 (clipped from -0.4)
    #   0     -5     0    3    -1.0 + 0.15 + 0   = 0 (clipped)
    #   0     -5     0    0     0 (I clipped at 0 from -2)
    #   6      1     6    1     0.2 + 0.05 + 1.8 = 2.05
    want = [3.15, 3.1, 1.5, 0.2, 0.0, 0.0, 0.0, 2.05]
    integrals = [3, 10, 14, 12, 8, 3, 0, 1]
    for cost, lam, integral in zip([8, 12, 9, 3, 1, 0, 0, 6], want, integrals, strict=True):
        rule.before_step(_estimate(float(cost), 5.0))
        assert rule.multipliers[0] == pytest.approx(lam, abs=1e-12), cost
        assert rule.integral[0] == pytest.approx(0.05 * integral), cost  # K_I I


def test_pid_state_survives_a_checkpoint():
    rule = _rule(PIDLagrangian, cost_limit=5.0)
    for cost in (9.0, 14.0, 3.0):
        rule.before_step(_estimate(cost, 5.0))
    clone = _rule(PIDLagrangian, cost_limit=5.0)
    clone.load_state_dict(rule.state_dict())
    clone.multipliers = rule.multipliers.copy()
    for cost in (7.0, 20.0, 0.0):
        for r in (rule, clone):
            r.before_step(_estimate(cost, 5.0))
        np.testing.assert_array_equal(clone.multipliers, rule.multipliers)
    # And the multiplier's Adam moments of ppo_lag.
    ppo, twin = _rule(PPOLagrangian, cost_limit=5.0), _rule(PPOLagrangian, cost_limit=5.0)
    for cost in (9.0, 30.0):
        ppo.before_step(_estimate(cost, 5.0))
    twin.load_state_dict(ppo.state_dict())
    twin.multipliers = ppo.multipliers.copy()
    for r in (ppo, twin):
        r.before_step(_estimate(2.0, 5.0))
    np.testing.assert_array_equal(twin.multipliers, ppo.multipliers)


def _rollout(algo, cost_per_step):
    torch.manual_seed(0)
    env = make_vec_env(task='circle', num_envs=8, seed=0, max_episode_steps=20)
    worker = RolloutWorker(8, env.obs_dim, env.act_dim, 100, seed=0)
    worker.use_policy(algo.policy, algo.version)
    obs, rollout = env.reset(seed=0), None
    while rollout is None:
        obs, r, c, te, tr, info = env.step(worker.act(obs))
        worker.record(r, c, te, tr, info['final_obs'])
        rollout = worker.take_rollout(obs)
    # Cost 1 in the half plane y > 0: a cost the policy can lower by its actions.
    rollout['cost'][:] = cost_per_step * (rollout['obs'][..., 1] > 0.0)
    return rollout


@pytest.mark.parametrize('lam', [0.0, 50.0])
def test_ppo_step_climbs_the_penalised_surrogate(lam):
    torch.manual_seed(0)
    algo = ConstrainedTrustRegion(6, 2, AlgoConfig(algo='ppo_lag', lagrangian_init=lam,
                                                   lagrangian_lr=0.0, value_epochs=1),
                                  np.array([-1.0, -1.0]), np.array([1.0, 1.0]), 20)
    rollout = _rollout(algo, 1.0)
    estimate = algo.estimate_constraint(rollout)
    batch = algo.batch(rollout, estimate.costs)
    rule = algo.rule
    with torch.no_grad():
        adv = rule.penalised_advantages(batch)
        before = surrogates(algo.policy, batch)
    result = algo.update(rollout)
    assert result['case'] == 'ppo' and result['accepted'] and result['lagrange'] == lam
    assert 0.0 < result['kl'] < 0.1
    with torch.no_grad():
        ratio = torch.exp(algo.policy.log_prob(batch.obs, batch.u) - batch.old_logp)
        # The normaliser moved after the step; the fold keeps what the policy computes.
        penalised_gain = float((ratio * adv).mean() - adv.mean())
        after = surrogates(algo.policy, batch)
    assert penalised_gain > 0.0
    if lam == 0.0:
        assert float(after[0] - before[0]) > 0.0  # the reward alone
    else:
        assert float(after[1][0] - before[1][0]) < 0.0  # mostly the cost, lowered
        assert result['surrogate_cost_change'] < 0.0


def test_lagrangian_settings_are_range_checked():
    for name, value in (('ppo_clip', 0.0), ('ppo_epochs', 0), ('ppo_lr', -1.0),
                        ('lagrangian_lr', -0.1), ('pid_kp', -1.0), ('pid_kd', float('nan')),
                        ('pid_p_ema', 1.0), ('pid_d_delay', 0), ('pid_d_delay', 2.5),
                        ('ppo_epochs', 3.5), ('lagrangian_optimizer', 'sdg'),
                        ('lagrangian_cost_adv', 'scale')):
        with pytest.raises(ValueError, match=name):
            AlgoConfig(algo='pid_lag', **{name: value}).validate()


def test_a_run_of_the_old_rules_resumes_by_them():
    # A ppo_lag or pid_lag run recorded before the smoothing and Adam settings existed resumes
    # with the rules it was trained with, its controller state carried over.
    from cpo_ros.training.checkpoint import with_settings_before
    from cpo_ros.training.config import TrainConfig
    old = TrainConfig().to_dict()
    for key in ('lagrangian_optimizer', 'lagrangian_cost_adv', 'pid_p_ema', 'pid_d_ema',
                'pid_d_delay'):
        old['algo'].pop(key)
    old['algo'].update(algo='pid_lag', lagrangian_init=0.0, pid_kp=0.2, pid_ki=0.05,
                       pid_kd=0.3, cost_limit=5.0)
    algo = TrainConfig.from_dict(with_settings_before(old)).algo
    assert (algo.lagrangian_optimizer, algo.lagrangian_cost_adv) == ('sgd', 'standardize')
    assert (algo.pid_p_ema, algo.pid_d_ema, algo.pid_d_delay) == (0.0, 0.0, 1)
    cpo = dict(old, algo={**old['algo'], 'algo': 'cpo'})
    assert 'lagrangian_optimizer' not in with_settings_before(cpo)['algo']
    # The old controller after J_C 8 and 12 (d = 5): I = 3 + 7 = 10 unscaled, J_prev = 12.
    rule = PIDLagrangian(algo, 1, GaussianPolicy(6, 2))
    rule.load_state_dict({'integral': [10.0], 'previous_cost': [12.0]})
    rule.before_step(_estimate(9.0, 5.0))
    assert rule.multipliers[0] == pytest.approx(1.5)  # the hand computation's third row
