"""CPO with several constraints (the paper's dual, eq. 12) against independent QP solutions."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from cpo_ros.algo.cpo import CASE_RECOVERY, step_direction

DELTA = 0.01


def problem(rng, n=6, m=2):
    a = rng.normal(size=(n, n))
    return rng.normal(size=n), rng.normal(size=(n, m)), a @ a.T + 0.5 * np.eye(n)


def qp(g, B, h, c):  # noqa: N803
    cons = [{'type': 'ineq', 'fun': lambda x: DELTA - 0.5 * x @ h @ x, 'jac': lambda x: -h @ x},
            {'type': 'ineq', 'fun': lambda x: -(c + B.T @ x), 'jac': lambda x: -B.T}]
    best = None
    for x0 in (np.zeros_like(g), 1e-3 * g, -1e-3 * B.sum(1)):
        res = minimize(lambda x: -g @ x, x0, jac=lambda x: -g, constraints=cons,
                       method='SLSQP', options={'ftol': 1e-15, 'maxiter': 1000})
        ok = 0.5 * res.x @ h @ res.x <= DELTA * (1 + 1e-6) and np.all(c + B.T @ res.x <= 1e-7)
        if ok and (best is None or g @ res.x > g @ best):
            best = res.x
    return best


def minmax(B, h, c):  # noqa: N803
    """Return min over the trust region of max_i (c_i + b_i.x)."""
    n = B.shape[0]
    cons = [{'type': 'ineq', 'fun': lambda z: DELTA - 0.5 * z[:n] @ h @ z[:n]},
            {'type': 'ineq', 'fun': lambda z: z[n] - (c + B.T @ z[:n])}]
    res = minimize(lambda z: z[n], np.concatenate([np.zeros(n), [np.max(c)]]),
                   constraints=cons, method='SLSQP', options={'ftol': 1e-15, 'maxiter': 1000})
    return res.fun


def scaled_c(rng, B, h, low, high):  # noqa: N803
    s = np.sqrt(np.einsum('im,ij,jm->m', B, np.linalg.inv(h), B))
    return math.sqrt(2 * DELTA) * s * rng.uniform(low, high, B.shape[1])


@pytest.mark.parametrize('m', [2, 3])
@pytest.mark.parametrize('seed', range(10))
@pytest.mark.parametrize('low,high', [(-2.0, -1.2), (-0.9, 0.3), (0.0, 0.6)])
def test_feasible_steps_match_the_qp(m, seed, low, high):
    rng = np.random.default_rng([m, seed, int(10 * low) + 50])
    g, B, h = problem(rng, m=m)
    c = scaled_c(rng, B, h, low, high)
    if minmax(B, h, c) > -1e-6:
        pytest.skip('this draw is infeasible')
    x, case = step_direction(g, B, h, c, DELTA)
    ref = qp(g, B, h, c)
    assert ref is not None and case != CASE_RECOVERY
    assert g @ x == pytest.approx(g @ ref, rel=1e-4, abs=1e-7)
    np.testing.assert_allclose(x, ref, rtol=5e-3, atol=5e-5)
    assert 0.5 * x @ h @ x <= DELTA * (1 + 1e-5)
    assert np.all(c + B.T @ x <= 1e-6)


@pytest.mark.parametrize('m', [2, 3])
@pytest.mark.parametrize('seed', range(8))
def test_infeasible_recovery_lowers_the_worst_constraint_the_most(m, seed):
    rng = np.random.default_rng([m, seed, 99])
    g, B, h = problem(rng, m=m)
    c = scaled_c(rng, B, h, 1.2, 3.0)
    x, case = step_direction(g, B, h, c, DELTA)
    assert case == CASE_RECOVERY
    assert 0.5 * x @ h @ x <= DELTA * (1 + 1e-6)
    assert np.max(c + B.T @ x) == pytest.approx(minmax(B, h, c), rel=1e-4, abs=1e-7)


@pytest.mark.parametrize('kind', ['inactive', 'active', 'infeasible'])
def test_one_constraint_as_a_matrix_is_the_closed_form(kind):
    rng = np.random.default_rng(5)
    g, B, h = problem(rng, m=1)
    edge = math.sqrt(2 * DELTA * (B[:, 0] @ np.linalg.solve(h, B[:, 0])))
    c = {'inactive': -2 * edge, 'active': 0.5 * edge, 'infeasible': 2 * edge}[kind]
    x1, case1 = step_direction(g, B[:, 0], h, c, DELTA)
    xm, _case = step_direction(g, B, h, np.array([c]), DELTA)
    np.testing.assert_allclose(xm, x1, rtol=1e-4, atol=1e-7)
    assert (case1 == CASE_RECOVERY) == (kind == 'infeasible')


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match='B must be'):
        step_direction(np.ones(3), np.ones((3, 2)), np.eye(3), np.ones(3), DELTA)
