"""Conjugate gradients, the Fisher-vector product and flat parameter helpers."""

import numpy as np
import pytest
import torch

from cpo_ros.algo.cpo import step_direction
from cpo_ros.algo.networks import GaussianPolicy
from cpo_ros.algo.trust_region import (
    conjugate_gradient,
    FISHER_CHUNK_ROWS,
    fisher_vector_product,
    flat_params,
    gaussian_fisher_product,
    numpy_solver,
    set_flat_params,
    SolvedOperator,
)


def test_cg_matches_direct_solve():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(20, 20))
    a = torch.as_tensor(m @ m.T + np.eye(20))
    b = torch.as_tensor(rng.normal(size=20))
    x = conjugate_gradient(lambda v: a @ v, b, iters=60, residual_tol=1e-28)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(a.numpy(), b.numpy()), rtol=1e-6,
                               atol=1e-8)


def test_flat_params_round_trip():
    policy = GaussianPolicy(4, 2, (8, 8))
    flat = flat_params(policy)
    set_flat_params(policy, flat + 1.0)
    assert torch.allclose(flat_params(policy), flat + 1.0)
    with pytest.raises(ValueError):
        set_flat_params(policy, torch.zeros(flat.numel() + 3))


def test_fisher_vector_product_is_the_hessian_of_the_mean_kl():
    torch.manual_seed(0)
    policy = GaussianPolicy(3, 2, (5, 4)).double()
    obs = torch.randn(64, 3, dtype=torch.float64)
    with torch.no_grad():
        old = policy.distribution(obs)
        old = torch.distributions.Normal(old.loc.clone(), old.scale.clone())
    theta0 = flat_params(policy).clone()

    def kl_at(theta):
        # Functional KL(old || pi_theta) for the autograd Hessian.
        set_flat_params(policy, theta.detach())
        names = [n for n, _ in policy.named_parameters()]
        shapes = [p.shape for p in policy.parameters()]
        params, offset = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            n = int(np.prod(shape))
            params[name] = theta[offset:offset + n].view(shape)
            offset += n
        mean = torch.func.functional_call(policy.mean_net, {
            k.removeprefix('mean_net.'): v for k, v in params.items()
            if k.startswith('mean_net.')}, (policy.norm(obs),))
        std = params['log_std'].exp().expand_as(mean)
        dist = torch.distributions.Normal(mean, std)
        return torch.distributions.kl_divergence(old, dist).sum(-1).mean()

    hessian = torch.autograd.functional.hessian(kl_at, theta0)
    set_flat_params(policy, theta0)

    def mean_kl():
        return torch.distributions.kl_divergence(old, policy.distribution(obs)).sum(-1).mean()

    fvp = fisher_vector_product(mean_kl, policy, damping=0.0)
    for _ in range(3):
        v = torch.randn_like(theta0)
        np.testing.assert_allclose(fvp(v).numpy(), (hessian @ v).numpy(), rtol=1e-6, atol=1e-9)
    damped = fisher_vector_product(mean_kl, policy, damping=0.1)
    v = torch.randn_like(theta0)
    np.testing.assert_allclose(damped(v).numpy(), (hessian @ v + 0.1 * v).numpy(), rtol=1e-6,
                               atol=1e-9)


@pytest.mark.parametrize('hidden', [(5,), (5, 4), (6, 5, 4)])
def test_closed_form_fisher_product_matches_differentiating_the_kl_twice(hidden):
    torch.manual_seed(1)
    policy = GaussianPolicy(3, 2, hidden).double()
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([-0.3, 0.4], dtype=torch.float64))
        policy.mean_net[-1].weight.normal_()
    policy.norm.update(np.random.default_rng(1).normal(2.0, 3.0, size=(100, 3)))
    obs = torch.randn(257, 3, dtype=torch.float64) * 4.0
    with torch.no_grad():
        old = policy.distribution(obs)
        old = torch.distributions.Normal(old.loc.clone(), old.scale.clone())

    def mean_kl():
        return torch.distributions.kl_divergence(old, policy.distribution(obs)).sum(-1).mean()

    # 257 samples: one block, and five blocks of 64 with a partial last one.
    for damping, rows in ((0.0, FISHER_CHUNK_ROWS), (0.1, FISHER_CHUNK_ROWS), (0.1, 64)):
        reference = fisher_vector_product(mean_kl, policy, damping)
        closed = gaussian_fisher_product(policy, obs, damping, chunk_rows=rows)
        for _ in range(3):
            v = torch.randn_like(flat_params(policy))
            np.testing.assert_allclose(closed(v).numpy(), reference(v).numpy(), rtol=1e-9,
                                       atol=1e-12)


def test_fisher_product_stays_at_the_parameters_it_was_built_for():
    """A line search may move the policy while a CG solve runs on another thread."""
    torch.manual_seed(2)
    policy = GaussianPolicy(3, 2, (8, 4))
    obs = torch.randn(300, 3)
    product = gaussian_fisher_product(policy, obs, 0.01, chunk_rows=128)
    v = torch.randn_like(flat_params(policy))
    before = product(v)
    set_flat_params(policy, flat_params(policy) + 0.5)
    torch.testing.assert_close(product(v), before, rtol=0.0, atol=0.0)
    assert not torch.allclose(gaussian_fisher_product(policy, obs, 0.01)(v), before)


def test_solved_operator_solves_each_vector_once_and_changes_no_step():
    rng = np.random.default_rng(4)
    m = rng.normal(size=(30, 30))
    h = m @ m.T / 30 + 0.1 * np.eye(30)
    g, b = rng.normal(size=30), rng.normal(size=30)
    products = []

    def matvec(v):
        products.append(1)
        return h @ v

    operator = SolvedOperator(matvec, 10)
    for c in (-0.5, 0.3, 5.0):  # inactive or dual, and recovery
        plain = step_direction(g, b, lambda v: h @ v, c, 0.01, 10)
        kept = step_direction(g, b, operator, c, 0.01, 10)
        np.testing.assert_array_equal(kept[0], plain[0])
        assert kept[1] == plain[1]
    assert operator.solves == 2  # g and b, solved for the first c only
    count = len(products)
    np.testing.assert_array_equal(numpy_solver(operator, 10)(np.stack([b, g], axis=1)[:, 0]),
                                  numpy_solver(lambda v: h @ v, 10)(b))
    assert len(products) == count  # a strided view of b is the same vector: no new solve
    numpy_solver(operator, 10)(b + 1e-12)
    assert operator.solves == 3
