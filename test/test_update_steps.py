"""The update's named steps, each on its own: the rules by name, the constraint estimate, each
rule's direction and acceptance, and the backtracking line search."""

import math

import numpy as np
import pytest
import torch

from cpo_ros.algo.algorithm import ConstrainedTrustRegion
from cpo_ros.algo.cpo import CASE_RECOVERY, step_direction
from cpo_ros.algo.networks import GaussianPolicy
from cpo_ros.algo.registry import PRESETS, rule_class, RULES, variant
from cpo_ros.algo.rule import ConstraintEstimate, UpdateRule
from cpo_ros.algo.trust_region import flat_params, line_search, SolvedOperator
from cpo_ros.sim.make import make_vec_env
from cpo_ros.training.config import AlgoConfig
from cpo_ros.training.worker import RolloutWorker

DELTA = 0.01


def test_every_registered_rule_loads_under_its_name():
    for name in RULES:
        cls = rule_class(name)
        assert issubclass(cls, UpdateRule) and cls.name == name
        AlgoConfig(algo=name).validate()
    for name, (rule, settings) in PRESETS.items():
        assert variant(name) == (rule, settings) and rule in RULES
        AlgoConfig(algo=rule, **settings).validate()
    with pytest.raises(ValueError, match="'sac' is not one of"):
        AlgoConfig(algo='sac').validate()
    with pytest.raises(ValueError, match='unknown algorithm'):
        variant('sac')


def _rollout(algo, cost_per_step: float = 0.0, seed: int = 0):
    torch.manual_seed(seed)
    env = make_vec_env(task='circle', num_envs=8, seed=seed, max_episode_steps=20)
    worker = RolloutWorker(8, env.obs_dim, env.act_dim, 60, seed=seed)
    worker.use_policy(algo.policy, algo.version)
    obs, rollout = env.reset(seed=seed), None
    while rollout is None:
        obs, r, c, te, tr, info = env.step(worker.act(obs))
        worker.record(r, c, te, tr, info['final_obs'])
        rollout = worker.take_rollout(obs)
    if cost_per_step:
        rollout['cost'][:] = cost_per_step
        rollout['episode_cost'][:] = 20 * cost_per_step
    return rollout


def _algorithm(name: str, **settings) -> ConstrainedTrustRegion:
    return ConstrainedTrustRegion(6, 2, AlgoConfig(algo=name, **settings),
                                  np.array([-1.0, -1.0]), np.array([1.0, 1.0]), 20)


@pytest.mark.parametrize('name', ['trpo', 'pdo'])
def test_baselines_hold_the_point_estimate_of_the_cost(name):
    algo = _algorithm(name, cost_limit=3.0)
    estimate = algo.estimate_constraint(_rollout(algo, 0.5))
    np.testing.assert_allclose(estimate.j_c, [10.0])
    np.testing.assert_allclose(estimate.held, estimate.j_c)
    np.testing.assert_allclose(estimate.c, [7.0])
    assert estimate.episode_length == 20.0 and estimate.costs.shape == (60, 8, 1)


def test_cpo_holds_an_upper_bound_and_shrinks_its_margin_by_the_rise_factor():
    algo = _algorithm('cpo', cost_limit=30.0, cost_bias_rate=0.0)
    rollout = _rollout(algo, 0.5)
    rng = np.random.default_rng(0)
    rollout['episode_cost'] = rng.uniform(0.0, 20.0, np.shape(rollout['episode_cost']))
    algo._rise_predicted[:], algo._rise_measured[:] = 1.0, 4.0  # rises 4 times their forecast
    estimate = algo.estimate_constraint(rollout)
    se = estimate.summary['episode_cost_se'][0]
    assert se > 0.0
    assert estimate.held[0] == pytest.approx(estimate.j_c[0] + 2.0 * se)
    assert estimate.c[0] == pytest.approx((estimate.held[0] - 30.0) / 4.0)


def _problem(seed: int, n: int = 6):
    rng = np.random.default_rng(seed)
    root = rng.normal(size=(n, n))
    h = root @ root.T + 0.5 * np.eye(n)
    return (torch.as_tensor(rng.normal(size=n), dtype=torch.float32),
            torch.as_tensor(rng.normal(size=n), dtype=torch.float32), h)


def _operator(h: np.ndarray) -> SolvedOperator:
    return SolvedOperator(lambda v: h @ v, 10)  # CG: exact in n <= 10 steps


def test_trpo_direction_is_the_natural_gradient_on_the_trust_region_edge():
    g, b, h = _problem(0)
    rule = rule_class('trpo')(AlgoConfig(algo='trpo'), 1, _policy())
    x, case = rule.direction(g, [b], b.double().numpy()[:, None], _operator(h), np.array([5.0]))
    v = np.linalg.solve(h, g.double().numpy())
    assert case == 'trpo'
    np.testing.assert_allclose(x, math.sqrt(2 * DELTA / (g.double().numpy() @ v)) * v, rtol=1e-6)
    assert 0.5 * x @ h @ x == pytest.approx(DELTA, rel=1e-6)


def test_pdo_direction_climbs_the_lagrangian():
    g, b, h = _problem(1)
    rule = rule_class('pdo')(AlgoConfig(algo='pdo', pdo_lambda_init=0.7), 1, _policy())
    x, _ = rule.direction(g, [b], b.double().numpy()[:, None], _operator(h), np.array([1.0]))
    lagrangian = (g - 0.7 * b).double().numpy()
    v = np.linalg.solve(h, lagrangian)
    np.testing.assert_allclose(x, math.sqrt(2 * DELTA / (lagrangian @ v)) * v, rtol=1e-5)
    rule.after_step(ConstraintEstimate(np.array([9.0]), np.array([9.0]), np.array([4.0]),
                                       np.zeros((1, 1, 1)), 20.0, {}))
    assert rule.multipliers[0] == pytest.approx(0.7 + 0.01 * 4.0)
    rule.after_step(ConstraintEstimate(np.array([0.0]), np.array([0.0]), np.array([-500.0]),
                                       np.zeros((1, 1, 1)), 20.0, {}))
    assert rule.multipliers[0] == 0.0  # projected onto lambda >= 0


@pytest.mark.parametrize('m', [1, 2])
def test_cpo_direction_is_the_cpo_step(m):
    g, b, h = _problem(2)
    bs = [b * (i + 1) for i in range(m)]
    b_mat = np.stack([v.double().numpy() for v in bs], axis=1)
    c = np.linspace(-0.05, -0.01, m)
    rule = rule_class('cpo')(AlgoConfig(), m, _policy())
    x, case = rule.direction(g, bs, b_mat, _operator(h), c)
    want, want_case = step_direction(g.double().numpy(), b_mat[:, 0] if m == 1 else b_mat, h,
                                     float(c[0]) if m == 1 else c, DELTA)
    assert case == want_case
    np.testing.assert_allclose(x, want, rtol=1e-4, atol=1e-8)


def test_each_rule_accepts_what_it_should():
    trpo = rule_class('trpo')(AlgoConfig(algo='trpo'), 1, _policy())
    assert trpo.acceptable(0.1, np.array([9.0]), np.array([90.0]), np.array([5.0]), 'trpo')
    assert not trpo.acceptable(-0.1, np.array([-9.0]), np.array([-90.0]), np.array([-5.0]),
                               'trpo')
    pdo = rule_class('pdo')(AlgoConfig(algo='pdo', pdo_lambda_init=2.0), 1, _policy())
    assert pdo.acceptable(0.1, np.array([0.04]), np.array([0.8]), np.array([1.0]), 'trpo')
    assert not pdo.acceptable(0.1, np.array([0.06]), np.array([1.2]), np.array([1.0]), 'trpo')
    cpo = rule_class('cpo')(AlgoConfig(), 2, _policy())
    margin = np.array([-1.0, -2.0])
    assert cpo.acceptable(0.1, None, np.array([0.9, 1.9]), margin, 'dual')
    assert not cpo.acceptable(0.1, None, np.array([1.1, 0.0]), margin, 'dual')  # above margin
    assert not cpo.acceptable(-0.1, None, np.array([0.0, 0.0]), margin, 'dual')  # no gain
    violated = np.array([1.0, -2.0])
    assert cpo.acceptable(-0.1, None, np.array([-0.5, 1.0]), violated, 'dual')
    assert not cpo.acceptable(-0.1, None, np.array([0.1, 1.0]), violated, 'dual')  # must not rise
    assert cpo.acceptable(-0.1, None, np.array([-0.5, -1.0]), np.array([3.0, 1.0]),
                          CASE_RECOVERY)


def _policy():
    torch.manual_seed(0)
    return GaussianPolicy(3, 2, (4,))


def test_line_search_takes_the_longest_acceptable_fraction():
    policy = _policy()
    old = flat_params(policy)
    step = torch.ones_like(old)

    def frac_now() -> float:
        return float((flat_params(policy) - old).mean())

    # The KL allows fractions up to 0.7, the improvement up to 0.5: 0.8^4 = 0.4096 is taken.
    result = line_search(policy, step,
                         lambda: (0.5 - frac_now(), np.array([frac_now()]), 0.01 * frac_now()),
                         lambda d_r, d_c_sample, d_c: d_r > 0.0, 0.007, 0.8, 15, cost_scale=20.0)
    assert result.accepted and result.frac == pytest.approx(0.8 ** 4)
    assert result.kl == pytest.approx(0.01 * 0.8 ** 4, rel=1e-5)
    np.testing.assert_allclose(result.cost_change, [20.0 * 0.8 ** 4], rtol=1e-5)
    torch.testing.assert_close(flat_params(policy), old + 0.8 ** 4 * step)


def test_line_search_skips_invalid_parameters_and_keeps_the_old_ones_when_nothing_passes():
    policy = _policy()
    old = flat_params(policy)
    step = torch.ones_like(old)
    tried = []

    def evaluate():
        frac = float((flat_params(policy) - old).mean())
        tried.append(frac)
        if frac > 0.6:
            raise ValueError('invalid distribution')
        return -1.0, np.array([0.0]), 0.0

    result = line_search(policy, step, evaluate, lambda d_r, *_: d_r > 0.0, DELTA, 0.8, 5)
    assert len(tried) == 5 and not result.accepted
    assert (result.frac, result.kl, result.reward_gain) == (0.0, 0.0, 0.0)
    torch.testing.assert_close(flat_params(policy), old)


def test_the_noise_gate_gives_cpo_a_second_constraint_value():
    settings = dict(cost_limit=30.0, cost_bias_rate=0.0, cost_confidence_reliable=0.5)
    algo = _algorithm('cpo', **settings)
    rollout = _rollout(algo, 0.5)
    rollout['episode_cost'] = np.random.default_rng(1).uniform(
        20.0, 60.0, np.shape(rollout['episode_cost']))
    assert algo.estimate_constraint(rollout).c_reliable is None  # no gate
    estimate = _algorithm('cpo', cost_noise_gate=0.5, **settings).estimate_constraint(rollout)
    se = estimate.summary['episode_cost_se'][0]
    assert estimate.c[0] == pytest.approx(estimate.j_c[0] + 2.0 * se - 30.0)
    assert estimate.c_reliable[0] == pytest.approx(estimate.j_c[0] + 0.5 * se - 30.0)
    assert _algorithm('pdo', cost_noise_gate=0.5, cost_limit=30.0).estimate_constraint(
        rollout).c_reliable is None  # the baselines hold the point estimate


def test_cpo_caps_its_cost_decrease_only_where_the_gradient_is_reliable():
    g, b, h = _problem(3)
    b_mat, c = b.double().numpy()[:, None], np.array([10.0])  # far outside: recovery
    rule = rule_class('cpo')(AlgoConfig(cost_step_share=0.5), 1, _policy())
    paper, case = rule.direction(g, [b], b_mat, _operator(h), c, reliable=False)
    capped, _ = rule.direction(g, [b], b_mat, _operator(h), c, reliable=True)
    want, _ = step_direction(g.double().numpy(), b_mat[:, 0], h, 10.0, DELTA)
    assert case == CASE_RECOVERY
    np.testing.assert_allclose(paper, want, rtol=1e-5, atol=1e-9)
    assert g.double().numpy() @ capped > g.double().numpy() @ paper  # climbs the reward too


def _cost_where_rewarded(rollout):
    """Cost 1 on the steps of above-median reward: a cost gradient that is not zero."""
    rollout['cost'][:] = (rollout['reward'] > np.median(rollout['reward'])).astype(np.float32)
    return rollout


def _one_update(**settings) -> np.ndarray:
    torch.manual_seed(0)
    algo = _algorithm('cpo', cost_limit=10.0, **settings)
    rollout = _cost_where_rewarded(_rollout(algo, seed=3))
    rollout['episode_cost'] = np.random.default_rng(3).uniform(
        4.0, 18.0, np.shape(rollout['episode_cost']))  # J_C near d: z decides the case
    figures = algo.update(rollout)
    assert math.isfinite(figures['cost_grad_noise'])
    return flat_params(algo.policy).double().numpy()


@pytest.mark.parametrize('lever', [dict(cost_step_share=0.5), dict(cost_confidence=0.0)])
def test_the_gate_takes_the_default_step_when_noisy_and_the_lever_when_reliable(lever):
    default, levered = _one_update(), _one_update(**lever)
    assert np.abs(default - levered).max() > 1e-4  # the lever changes this step
    gated = dict(cost_step_share=lever.get('cost_step_share', 1.0),
                 cost_confidence_reliable=lever.get('cost_confidence', 2.0))
    # Every noise share is above 1e-9 and below 10.
    np.testing.assert_array_equal(_one_update(cost_noise_gate=1e-9, **gated), default)
    np.testing.assert_array_equal(_one_update(cost_noise_gate=10.0, **gated), levered)


def test_the_bias_term_takes_a_predicted_decrease_less_its_noise_share():
    algos, figures = {}, {}
    for denoise in (False, True):
        torch.manual_seed(0)
        algo = _algorithm('cpo', cost_limit=2.0, cost_bias_denoise=denoise)
        # Far above the limit: a step down the cost.
        rollout = _cost_where_rewarded(_rollout(algo, 1.0, seed=4))
        figures[denoise] = algo.update(rollout)
        algos[denoise] = algo
    raw = figures[False]
    assert raw['predicted_cost_change'] == figures[True]['predicted_cost_change'] < 0.0
    share = raw['cost_grad_noise']
    assert 0.0 < share < 1.0
    later = _rollout(algos[False], 0.5, seed=5)
    measured = {k: a.estimate_constraint(later).j_c[0] - 20.0 for k, a in algos.items()}
    rate, predicted = AlgoConfig().cost_bias_rate, raw['predicted_cost_change']
    assert algos[False].cost_bias[0] == pytest.approx(rate * (measured[False] - predicted))
    assert algos[True].cost_bias[0] == pytest.approx(
        rate * (measured[True] - predicted * (1.0 - share)))


def test_the_noise_aware_cost_model_forecasts_less_of_a_decrease_along_its_own_gradient():
    figures, algos = {}, {}
    for cap in (0.0, 1.0):
        torch.manual_seed(0)
        algo = _algorithm('cpo', cost_limit=2.0, cost_noise_discount=cap)
        rollout = _cost_where_rewarded(_rollout(algo, 1.0, seed=4))  # far above: recovery
        figures[cap] = algo.update(rollout)
        algos[cap] = algo
    raw, model = figures[0.0], figures[1.0]
    share = raw['cost_grad_noise']
    assert 0.0 < share < 1.0 and model['cost_grad_noise'] == share  # measured before the step
    assert raw['case'] == model['case'] == CASE_RECOVERY
    # Both take the whole recovery step. The model forecasts a smaller decrease than the
    # paper's, yet at least the (1 - share) of it that the paper's direction brings in the
    # model: its own recovery direction is the model's best.
    assert raw['step_frac'] == model['step_frac'] == 1.0
    assert (raw['predicted_cost_change'] < model['predicted_cost_change']
            <= (1.0 - share) * raw['predicted_cost_change'] < 0.0)
    # The bias term compares the measured change with that forecast.
    later = _rollout(algos[1.0], 0.5, seed=5)
    measured = algos[1.0].estimate_constraint(later).j_c[0] - 20.0
    assert algos[1.0].cost_bias[0] == pytest.approx(
        AlgoConfig().cost_bias_rate * (measured - model['predicted_cost_change']))
    with pytest.raises(ValueError, match='cost_noise_discount works with one constraint'):
        ConstrainedTrustRegion(6, 2, AlgoConfig(cost_limit=(1.0, 2.0), cost_noise_discount=0.5),
                               num_costs=2)


@pytest.mark.parametrize('limit', [2.0, 19.9, 30.0])
def test_the_bias_term_takes_a_predicted_decrease_only_as_far_as_the_limit_asked(limit):
    # J_C is 20. 'limit': above the limit a step was asked to come down to it (d - 20), below
    # it not at all. 'below': not at all below the limit, all of it above. A rise is compared
    # whole.
    # (19.9 asks a decrease of 0.1, well short of the step's predicted one: near 0.5 the clip
    # acted or not by the CPU's rounding.)
    algos, figures = {}, {}
    for aim in ('none', 'below', 'limit'):
        torch.manual_seed(0)
        algo = _algorithm('cpo', cost_limit=limit, cost_bias_aim=aim)
        rollout = _cost_where_rewarded(_rollout(algo, 1.0, seed=4))
        figures[aim] = algo.update(rollout)
        algos[aim] = algo
    predicted = figures['none']['predicted_cost_change']
    assert predicted == figures['limit']['predicted_cost_change'] < 0.0
    assert predicted == figures['below']['predicted_cost_change']
    later = _rollout(algos['none'], 0.5, seed=5)
    measured = {k: a.estimate_constraint(later).j_c[0] - 20.0 for k, a in algos.items()}
    rate = AlgoConfig().cost_bias_rate
    asked = {'none': predicted, 'limit': max(predicted, min(limit - 20.0, 0.0)),
             'below': 0.0 if limit > 20.0 else predicted}
    assert (asked['limit'] > predicted) == (limit > 2.0)  # the clip acts but far above the limit
    for aim, value in asked.items():
        assert algos[aim].cost_bias[0] == pytest.approx(rate * (measured[aim] - value)), aim


@pytest.mark.parametrize('name', ['ppo_lag', 'pid_lag'])
def test_a_non_finite_step_leaves_the_rule_able_to_step_again(name):
    """A step that overflows the weights keeps the old policy and the rule's own state.

    PPO's Adam moments, NaN after the overflow, would make every later step non-finite: the
    policy frozen for the rest of the run.
    """
    import warnings

    torch.manual_seed(0)
    algo = _algorithm(name, value_epochs=1, ppo_minibatch=64)
    rollout = _rollout(algo)
    for group in algo.rule.optim.param_groups:
        group['lr'] = 1e30  # the first Adam step makes the next minibatch's pass overflow
    with pytest.warns(RuntimeWarning, match='non-finite'):
        algo.update(rollout)
    for group in algo.rule.optim.param_groups:
        group['lr'] = 3e-4  # a sane rate from here on
    with warnings.catch_warnings():
        warnings.simplefilter('error', RuntimeWarning)
        figures = algo.update(_rollout(algo))
    assert figures['kl'] > 0.0
    weights = torch.nn.utils.parameters_to_vector(algo.policy.parameters())
    assert bool(torch.isfinite(weights).all())
