"""cpo.step_direction against an independent numerical solution of the trust-region QP."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from cpo_ros.algo.cpo import (
    CASE_DUAL,
    CASE_DUAL_INACTIVE,
    CASE_INACTIVE,
    CASE_RECOVERY,
    CASE_TRPO,
    noise_aware_cost_gradient,
    step_direction,
)

DELTA = 0.01


def random_problem(rng: np.random.Generator, n: int = 5):
    m = rng.normal(size=(n, n))
    h = m @ m.T + 0.5 * np.eye(n)
    return rng.normal(size=n), rng.normal(size=n), h


def qp_reference(g, b, h, c, delta):
    """Solve max g.x s.t. c + b.x <= 0, x.H.x / 2 <= delta with SLSQP from several starts."""
    cons = [{'type': 'ineq', 'fun': lambda x: delta - 0.5 * x @ h @ x,
             'jac': lambda x: -h @ x},
            {'type': 'ineq', 'fun': lambda x: -(c + b @ x), 'jac': lambda x: -b}]
    best = None
    for x0 in (np.zeros_like(g), 1e-3 * g, -1e-3 * b):
        res = minimize(lambda x: -g @ x, x0, jac=lambda x: -g, constraints=cons,
                       method='SLSQP', options={'ftol': 1e-14, 'maxiter': 500})
        feasible = (0.5 * res.x @ h @ res.x <= delta * (1 + 1e-6)
                    and c + b @ res.x <= 1e-7)
        if feasible and (best is None or g @ res.x > g @ best):
            best = res.x
    return best


def recovery_reference(b, h, delta):
    """Solve min b.x s.t. x.H.x / 2 <= delta numerically."""
    cons = [{'type': 'ineq', 'fun': lambda x: delta - 0.5 * x @ h @ x, 'jac': lambda x: -h @ x}]
    res = minimize(lambda x: b @ x, -1e-3 * b, jac=lambda x: b, constraints=cons,
                   method='SLSQP', options={'ftol': 1e-14, 'maxiter': 500})
    return res.x


def c_for(kind: str, b, h, rng) -> float:
    """Return a constraint value that puts the problem in the requested regime."""
    s = b @ np.linalg.solve(h, b)
    edge = math.sqrt(2 * DELTA * s)  # B = 0 here: the trust region just touches c + b.x = 0
    return {'inactive': -edge * rng.uniform(1.2, 3.0),
            'near_neg': -edge * rng.uniform(0.05, 0.95),
            'zero': 0.0,
            'near_pos': edge * rng.uniform(0.05, 0.95),
            'infeasible': edge * rng.uniform(1.2, 3.0)}[kind]


@pytest.mark.parametrize('kind', ['inactive', 'near_neg', 'zero', 'near_pos'])
@pytest.mark.parametrize('seed', range(12))
def test_feasible_cases_match_qp(kind, seed):
    rng = np.random.default_rng([seed, len(kind), ord(kind[-1])])
    g, b, h = random_problem(rng)
    c = c_for(kind, b, h, rng)
    x, case = step_direction(g, b, h, c, DELTA)
    ref = qp_reference(g, b, h, c, DELTA)
    assert ref is not None
    # Same optimum value, and the step itself satisfies both constraints of the linear problem.
    assert g @ x == pytest.approx(g @ ref, rel=1e-4, abs=1e-7)
    np.testing.assert_allclose(x, ref, rtol=2e-3, atol=2e-5)
    assert 0.5 * x @ h @ x <= DELTA * (1 + 1e-6)
    assert c + b @ x <= 1e-7
    if kind == 'inactive':
        assert case == CASE_INACTIVE
    else:
        assert case in (CASE_DUAL, CASE_DUAL_INACTIVE)


@pytest.mark.parametrize('seed', range(12))
def test_infeasible_recovery_minimises_cost(seed):
    rng = np.random.default_rng(seed)
    g, b, h = random_problem(rng)
    c = c_for('infeasible', b, h, rng)
    x, case = step_direction(g, b, h, c, DELTA)
    assert case == CASE_RECOVERY
    ref = recovery_reference(b, h, DELTA)
    np.testing.assert_allclose(x, ref, rtol=1e-3, atol=1e-6)
    # The recovery uses the whole trust region.
    assert 0.5 * x @ h @ x == pytest.approx(DELTA, rel=1e-6)


@pytest.mark.parametrize('share', [0.3, 0.8])
@pytest.mark.parametrize('kind', ['infeasible', 'near_pos', 'near_neg'])
@pytest.mark.parametrize('seed', range(6))
def test_cost_step_share_climbs_the_reward_with_the_capped_decrease(share, kind, seed):
    """With cost_step_share < 1 the step is the QP's optimum for c capped at share sqrt(2 delta s).

    An infeasible batch then lowers the cost by that share of the most the trust region allows
    and climbs the reward with the rest, instead of the paper's recovery, which gains nothing.
    """
    rng = np.random.default_rng([seed, len(kind), int(share * 10)])
    g, b, h = random_problem(rng)
    c = c_for(kind, b, h, rng)
    edge = math.sqrt(2 * DELTA * (b @ np.linalg.solve(h, b)))
    x, case = step_direction(g, b, h, c, DELTA, cost_step_share=share)
    ref = qp_reference(g, b, h, min(c, share * edge), DELTA)
    assert g @ x == pytest.approx(g @ ref, rel=1e-4, abs=1e-7)
    assert 0.5 * x @ h @ x <= DELTA * (1 + 1e-6)
    assert b @ x <= -min(c, share * edge) + 1e-7
    assert (case == CASE_RECOVERY) == (kind == 'infeasible')
    if kind == 'infeasible':
        paper, _ = step_direction(g, b, h, c, DELTA)
        assert g @ x > g @ paper  # the reward climbs where the paper's recovery gains less
    if c <= share * edge:  # the cap leaves this problem alone
        np.testing.assert_allclose(x, step_direction(g, b, h, c, DELTA)[0], atol=1e-12)


def test_every_dual_case_is_reached():
    """Random instances in the feasible regimes reach both nu > 0 and nu = 0."""
    seen = set()
    rng = np.random.default_rng(7)
    for _ in range(200):
        g, b, h = random_problem(rng)
        _, case = step_direction(g, b, h, c_for(str(rng.choice(['near_neg', 'near_pos'])),
                                                b, h, rng), DELTA)
        seen.add(case)
    assert {CASE_DUAL, CASE_DUAL_INACTIVE} <= seen


def test_nu_zero_case_is_the_trpo_step():
    rng = np.random.default_rng(3)
    g, b, h = random_problem(rng)
    # Make the cost gradient point against the reward gradient: the TRPO step lowers the cost.
    b = -np.linalg.solve(np.linalg.inv(h), g) * 0.3 + 0.01 * rng.normal(size=g.size)
    c = -0.1 * math.sqrt(2 * DELTA * (b @ np.linalg.solve(h, b)))
    x, case = step_direction(g, b, h, c, DELTA)
    v = np.linalg.solve(h, g)
    assert case == CASE_DUAL_INACTIVE
    np.testing.assert_allclose(x, math.sqrt(2 * DELTA / (g @ v)) * v, rtol=1e-9)


def test_zero_cost_gradient_is_trpo():
    rng = np.random.default_rng(0)
    g, _, h = random_problem(rng)
    x, case = step_direction(g, np.zeros_like(g), h, 3.0, DELTA)
    assert case == CASE_TRPO
    v = np.linalg.solve(h, g)
    np.testing.assert_allclose(x, math.sqrt(2 * DELTA / (g @ v)) * v)


def test_callable_h_matches_dense():
    rng = np.random.default_rng(11)
    g, b, h = random_problem(rng, n=8)
    c = c_for('near_pos', b, h, rng)
    x_dense, case_dense = step_direction(g, b, h, c, DELTA)
    x_cg, case_cg = step_direction(g, b, lambda v: h @ v, c, DELTA, cg_iters=50)
    assert case_cg == case_dense
    np.testing.assert_allclose(x_cg, x_dense, rtol=1e-6, atol=1e-9)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match='same length'):
        step_direction(np.ones(3), np.ones(2), np.eye(3), 0.0, DELTA)
    with pytest.raises(ValueError, match='delta'):
        step_direction(np.ones(3), np.ones(3), np.eye(3), 0.0, -1.0)
    with pytest.raises(ValueError, match='square'):
        step_direction(np.ones(3), np.ones(3), np.ones((3, 2)), 0.0, DELTA)


@pytest.mark.parametrize('seed', range(6))
def test_nearly_parallel_gradients_with_inexact_cg_stay_in_the_trust_region(seed):
    """g = k b + tiny noise makes A = q - r^2/s vanish; CG's error can make it negative.

    The step must still be finite, inside the trust region and satisfy the constraint (a
    huge step here once sent a training run's log-std to infinity).
    """
    rng = np.random.default_rng(seed)
    n = 40
    m = rng.normal(size=(n, n))
    h = m @ m.T / n + np.diag(np.geomspace(1e-3, 10.0, n))
    b = rng.normal(size=n)
    g = 3.0 * b + 1e-6 * rng.normal(size=n)
    c, delta = -0.05 * math.sqrt(b @ np.linalg.solve(h, b)), 0.01
    x, case = step_direction(g, b, lambda v: h @ v, c, delta, cg_iters=4)
    assert np.all(np.isfinite(x))
    assert 0.5 * x @ h @ x <= delta * 1.011, case
    assert c + b @ x <= 1e-3 * abs(c), case


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('eta', [0.25, 0.6, 0.95])
def test_noise_aware_cost_gradient_keeps_the_reward_forecast_and_discounts_its_own(seed, eta):
    g, b, h = random_problem(np.random.default_rng(seed))
    inv = np.linalg.inv(h)
    b_model, w_model = noise_aware_cost_gradient(g, b, lambda v: inv @ v, eta)
    np.testing.assert_allclose(w_model, inv @ b_model, rtol=1e-9, atol=1e-12)
    assert b_model @ inv @ g == pytest.approx(b @ inv @ g, rel=1e-9, abs=1e-12)
    assert b_model @ inv @ b == pytest.approx((1.0 - eta) * (b @ inv @ b), rel=1e-9)
    # Lowering the cost is harder in the discounted model: a recovery comes sooner.
    s_model, s = b_model @ inv @ b_model, b @ inv @ b
    assert s_model < s
    c = 0.9 * math.sqrt(2.0 * DELTA * s)  # feasible with b, and with b' only when s' is
    _, case = step_direction(g, b_model, h, c, DELTA)
    assert (case == CASE_RECOVERY) == (c * c / s_model > 2.0 * DELTA)


@pytest.mark.parametrize('eta', [0.0, -0.3, math.nan])
def test_noise_aware_cost_gradient_without_a_share_is_b(eta):
    g, b, h = random_problem(np.random.default_rng(7))
    inv = np.linalg.inv(h)
    b_model, w_model = noise_aware_cost_gradient(g, b, lambda v: inv @ v, eta)
    np.testing.assert_array_equal(b_model, b)
    np.testing.assert_allclose(w_model, inv @ b)
    parallel, _ = noise_aware_cost_gradient(g, 3.0 * g, lambda v: inv @ v, 0.5)
    np.testing.assert_array_equal(parallel, 3.0 * g)  # nothing to tell noise from signal
