"""The CPO step: the closed-form solution of the linearised trust-region problem.

Ascent form throughout. With g the gradient of the reward surrogate, b the gradient of the cost
surrogate (on the per-episode scale of c), c = J_C - d and H the Fisher, the step solves

    max_x  g.x   subject to   c + b.x <= 0,   1/2 x.H.x <= delta.

Writing q = g.H^-1.g, r = g.H^-1.b, s = b.H^-1.b, the KKT conditions give
x = (H^-1 g - nu H^-1 b) / lambda with nu = max(0, lambda c + r) / s, and the dual

    lambda c + r > 0 :  D_a(lambda) = A / (2 lambda) + lambda B / 2 - r c / s,
                        A = q - r^2/s, B = 2 delta - c^2/s,
    lambda c + r <= 0:  D_b(lambda) = q / (2 lambda) + lambda delta,

to be minimised over lambda > 0. Each piece is convex in lambda, so its minimiser on its own
interval is the unconstrained minimiser clipped to that interval (this is the paper's projection,
with the sign of r that belongs to the ascent form: several public ports get this wrong).
"""

from collections.abc import Callable
import math

import numpy as np
import torch

from cpo_ros.algo.trust_region import (
    CASE_TRPO,  # constraint ignored: no usable cost gradient
    numpy_solver,
    SolvedOperator,
    trust_region_step,
    TrustRegionRule,
)

CASE_INACTIVE = 'inactive'          # c < 0 and the whole trust region satisfies the constraint
CASE_DUAL = 'dual'                  # constraint active at the optimum (nu > 0)
CASE_DUAL_INACTIVE = 'dual_nu0'     # dual solution with nu = 0: the TRPO step is feasible
CASE_RECOVERY = 'recovery'          # infeasible: step that decreases the cost the most
CASES = (CASE_TRPO, CASE_INACTIVE, CASE_DUAL, CASE_DUAL_INACTIVE, CASE_RECOVERY)

_EPS = 1e-8
_A_TOL = 1e-9       # A = q - r^2/s below this fraction of q: g and b are parallel
_TR_SLACK = 1.01    # steps up to 1% outside the trust region pass (CG rounding)


def _interval_clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def step_direction(g: np.ndarray, b: np.ndarray,
                   H: np.ndarray | Callable[[np.ndarray], np.ndarray],  # noqa: N803 - paper's name
                   c: float, delta: float, cg_iters: int = 10,
                   cost_step_share: float = 1.0) -> tuple[np.ndarray, str]:
    """Return the CPO step x for the linearised problem and the name of the case taken.

    g, b: 1-D gradients of the reward and cost surrogates (b already on the scale of c); a
    matrix b (n, m) with a vector c (m,) solves the problem with m constraints (see
    step_direction_multi); m = 1 as a matrix gives the closed form's answer.
    H: dense symmetric positive-definite matrix, or a callable v -> H v (solved by CG).
    c: J_C - d, the measured constraint value of the newest batch. delta: the KL bound.
    cost_step_share: at most this share of the largest cost decrease the trust region allows,
    sqrt(2 delta s), is asked of a step (c above it is capped to it): the rest of the trust
    region climbs the reward. 1 is the paper's step, whose recovery spends all of it on the cost.
    """
    g = np.asarray(g, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if b.ndim == 2:
        return step_direction_multi(g, b, H, np.asarray(c, dtype=np.float64).reshape(-1),
                                    delta, cg_iters, cost_step_share)
    if g.ndim != 1 or g.shape != b.shape:
        raise ValueError(f'g and b must be 1-D of the same length, got {g.shape} and {b.shape}')
    if not (delta > 0 and math.isfinite(c)):
        raise ValueError(f'need delta > 0 and a finite c, got delta={delta}, c={c}')
    solve = numpy_solver(H, cg_iters)
    v = solve(g)
    q = float(g @ v)
    if float(b @ b) < _EPS ** 2:
        return trust_region_step(v, q, delta), CASE_TRPO
    w = solve(b)
    r = float(g @ w)
    s = float(b @ w)
    if s < _EPS:
        return trust_region_step(v, q, delta), CASE_TRPO
    infeasible = c > 0.0 and c * c / s > 2.0 * delta
    cap = cost_step_share * math.sqrt(2.0 * delta * s)
    if cost_step_share < 1.0 and c > cap:
        # The cost decrease asked is capped: the step is the dual's with c = cap, feasible, so
        # it climbs the reward in what the trust region has left (an infeasible batch still
        # names it recovery).
        x, case = step_direction(g, b, H, cap, delta, cg_iters)
        return x, CASE_RECOVERY if infeasible else case
    big_a = max(q - r * r / s, 0.0)
    big_b = 2.0 * delta - c * c / s
    if big_b < 0.0:
        if c < 0.0:
            return trust_region_step(v, q, delta), CASE_INACTIVE
        return -math.sqrt(2.0 * delta / s) * w, CASE_RECOVERY

    # Intervals of lambda > 0 where nu > 0 (a) or nu = 0 (b): split at lambda = -r / c.
    inf = math.inf
    if c > 0.0:
        split = -r / c
        interval_a = (max(split, 0.0), inf)
        interval_b = (0.0, split) if split > 0.0 else None
    elif c < 0.0:
        split = -r / c
        interval_a = (0.0, split) if split > 0.0 else None
        interval_b = (max(split, 0.0), inf)
    else:
        interval_a, interval_b = ((0.0, inf), None) if r > 0.0 else (None, (0.0, inf))

    candidates = []
    if interval_a is not None:
        lam_a = _interval_clip(math.sqrt(big_a / max(big_b, _EPS)), *interval_a)
        lam_a = max(lam_a, _EPS)
        candidates.append((big_a / (2 * lam_a) + lam_a * big_b / 2 - r * c / s, lam_a))
    if interval_b is not None:
        lam_b = max(_interval_clip(math.sqrt(q / (2.0 * delta)), *interval_b), _EPS)
        candidates.append((q / (2 * lam_b) + lam_b * delta, lam_b))
    _dual_value, lam = min(candidates)
    nu = max(0.0, lam * c + r) / s
    if nu > 0.0:
        # x = (v - nu w) / lam = u / lam - (c / s) w with u = v - (r / s) w, u.H.u = A. When g
        # is parallel to b (A -> 0; CG can even make it slightly negative) the limit is
        # x = -(c / s) w, not the noise in u divided by a vanishing lam.
        u = v - (r / s) * w
        x = (u / lam if big_a > _A_TOL * q else 0.0) - (c / s) * w
    else:
        x = v / lam
    return _within_trust_region(x, H, delta), (CASE_DUAL if nu > 0.0 else CASE_DUAL_INACTIVE)


def _within_trust_region(x: np.ndarray, H, delta: float) -> np.ndarray:  # noqa: N803
    """Return x, scaled back onto 1/2 x.H.x = delta if inexact solves carried it outside.

    The closed form and the dual put x inside the trust region in exact arithmetic; CG's
    approximate H^-1 can break that when g and b are nearly parallel. A step far outside would
    leave the policy with absurd parameters before the line search could look at it.
    """
    if not np.all(np.isfinite(x)):
        return np.zeros_like(x)  # no step: the line search keeps the old policy
    hx = H(x) if callable(H) else np.asarray(H, dtype=np.float64) @ x
    quad = 0.5 * float(x @ np.asarray(hx, dtype=np.float64))
    if not math.isfinite(quad):
        return np.zeros_like(x)
    if quad > delta * _TR_SLACK:
        return x * math.sqrt(delta / quad)
    return x


def step_direction_multi(g: np.ndarray, B: np.ndarray,  # noqa: N803 - the paper's names
                         H: np.ndarray | Callable[[np.ndarray], np.ndarray],
                         c: np.ndarray, delta: float, cg_iters: int = 10,
                         cost_step_share: float = 1.0) -> tuple[np.ndarray, str]:
    """Return the CPO step for m constraints c + B.T x <= 0 (the paper's dual, eq. 12).

    With r = B.T H^-1 g, S = B.T H^-1 B, minimising the dual over lambda in closed form leaves

        min over nu >= 0 of  sqrt(2 delta (q - 2 nu.r + nu.S.nu)) - nu.c,

    a convex problem in m variables (the square root is a norm of g - B nu), solved
    numerically; then x = H^-1 (g - B nu) / lambda. The linearised problem is infeasible when
    even the best step in the trust region leaves max_i (c_i + b_i.x) > 0: its value is
    max over the simplex of mu.c - sqrt(2 delta mu.S.mu), and the recovery step
    -sqrt(2 delta / mu.S.mu) H^-1 B mu lowers the worst constraint the most (for m = 1 the
    single-constraint recovery step). cost_step_share caps each c_i at that share of
    sqrt(2 delta S_ii), as step_direction does for one constraint.
    """
    from scipy.optimize import minimize

    g = np.asarray(g, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)  # noqa: N806
    if B.ndim != 2 or B.shape[0] != g.shape[0] or c.shape != (B.shape[1],):
        raise ValueError(f'B must be (n, m) with n = len(g) and c of length m, got g '
                         f'{g.shape}, B {B.shape}, c {c.shape}')
    if not (delta > 0 and np.all(np.isfinite(c))):
        raise ValueError(f'need delta > 0 and finite c, got delta={delta}, c={c}')
    m = B.shape[1]
    solve = numpy_solver(H, cg_iters)
    v = solve(g)
    q = float(g @ v)
    W = np.stack([solve(B[:, i]) for i in range(m)], axis=1)  # noqa: N806 - H^-1 B
    r = B.T @ v
    S = B.T @ W  # noqa: N806
    S = 0.5 * (S + S.T)  # noqa: N806
    active = np.diag(S) > _EPS
    if not active.any():
        return trust_region_step(v, q, delta), CASE_TRPO
    if cost_step_share < 1.0:
        c = np.minimum(c, cost_step_share * np.sqrt(2.0 * delta * np.maximum(np.diag(S), 0.0))
                       + np.where(active, 0.0, np.inf))

    # Feasibility: the smallest worst-case constraint value reachable in the trust region.
    def worst(mu: np.ndarray) -> float:
        return -(mu @ c - math.sqrt(max(2.0 * delta * mu @ S @ mu, 0.0)))
    starts = [np.eye(m)[i] for i in range(m)] + [np.full(m, 1.0 / m)]
    best = min((minimize(worst, mu0, method='SLSQP', bounds=[(0.0, 1.0)] * m,
                         constraints=[{'type': 'eq', 'fun': lambda mu: mu.sum() - 1.0}],
                         options={'ftol': 1e-14, 'maxiter': 500}) for mu0 in starts),
               key=lambda res: res.fun)
    mu = np.clip(best.x, 0.0, None)
    if -best.fun > 0.0:
        quad = float(mu @ S @ mu)
        return -math.sqrt(2.0 * delta / max(quad, _EPS)) * (W @ mu), CASE_RECOVERY

    def dual(nu: np.ndarray) -> float:
        return math.sqrt(max(2.0 * delta * (q - 2.0 * nu @ r + nu @ S @ nu), _EPS ** 2)) - nu @ c

    def dual_grad(nu: np.ndarray) -> np.ndarray:
        root = math.sqrt(max(2.0 * delta * (q - 2.0 * nu @ r + nu @ S @ nu), _EPS ** 2))
        return delta * (2.0 * S @ nu - 2.0 * r) / root - c

    res = minimize(dual, np.zeros(m), jac=dual_grad, method='L-BFGS-B',
                   bounds=[(0.0, None)] * m, options={'ftol': 1e-15, 'gtol': 1e-12,
                                                      'maxiter': 1000})
    nu = np.clip(res.x, 0.0, None)
    quad = max(q - 2.0 * nu @ r + nu @ S @ nu, _EPS)
    lam = math.sqrt(quad / (2.0 * delta))
    x = _within_trust_region((v - W @ nu) / lam, H, delta)
    if np.all(nu <= 1e-12):
        case = CASE_INACTIVE if np.all(c + B.T @ x < 0.0) and np.all(c < 0.0) else (
            CASE_DUAL_INACTIVE)
        return x, case
    return x, CASE_DUAL


def noise_aware_cost_gradient(g: np.ndarray, b: np.ndarray,
                              solve: Callable[[np.ndarray], np.ndarray],
                              noise_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Return b' and H^-1 b': the cost gradient of a linear model that discounts b's noise.

    b is measured on one batch: b = b* + n. Along a direction chosen without n (the reward's,
    H^-1 g) b forecasts the cost's change without bias. Along its own direction H^-1 b it
    forecasts s = b.H^-1.b, but only b*.H^-1.b = (1 - eta) s of it comes, eta being the
    share of s that is noise (E[n.H^-1.n] = eta s, the split-half estimate). b' is the
    vector of span{g, b} with b'.H^-1.g = r and b'.H^-1.b = (1 - eta) s: the CPO step then
    plans the cost decrease a step along H^-1 b brings, not the one its noise promises. eta
    = 0 gives b; g parallel to b leaves nothing to separate, and b is returned.
    """
    v, w = solve(g), solve(b)
    q, r, s = float(g @ v), float(g @ w), float(b @ w)
    eta = min(max(noise_share, 0.0), 1.0) if math.isfinite(noise_share) else 0.0
    det = q * s - r * r
    if not (eta > 0.0 and s > _EPS and det > _A_TOL * q * s):
        return b, w
    # a1 q + a2 r = r and a1 r + a2 s = (1 - eta) s, for b' = a1 g + a2 b.
    a1 = (r * s - r * (1.0 - eta) * s) / det
    a2 = (q * (1.0 - eta) * s - r * r) / det
    return a1 * g + a2 * b, a1 * v + a2 * w


class CPO(TrustRegionRule):
    """Constrained Policy Optimization: the step above, a line search that holds each cost."""

    name = 'cpo'
    holds_upper_bound = True

    def direction(self, g: torch.Tensor, bs: list[torch.Tensor], b_mat: np.ndarray,
                  hvp: SolvedOperator, c: np.ndarray,
                  reliable: bool = True) -> tuple[np.ndarray, str]:
        """Return the CPO step: the closed form for one constraint, the dual for several.

        cost_step_share applies where the cost gradient is reliable (see cost_noise_gate).
        """
        cfg = self.config
        share = cfg.cost_step_share if reliable else 1.0
        if b_mat.shape[1] == 1:
            return step_direction(g.double().numpy(), b_mat[:, 0], hvp, float(c[0]),
                                  cfg.target_kl, cfg.cg_iters, share)
        return step_direction(g.double().numpy(), b_mat, hvp, c, cfg.target_kl, cfg.cg_iters,
                              share)

    @property
    def noise_before_step(self) -> bool:
        """Whether the noise-aware cost model is on (AlgoConfig.cost_noise_discount)."""
        return self.config.cost_noise_discount > 0.0

    def cost_model(self, g: torch.Tensor, b_mat: np.ndarray, hvp: SolvedOperator,
                   noise_share: float) -> np.ndarray:
        """Return b_mat, or with cost_noise_discount the noise-aware b' (one constraint).

        The share discounted is the measured noise share, at most cost_noise_discount. H^-1 b'
        is a combination of the solves made for g and b, kept in hvp for the step.
        """
        cap = self.config.cost_noise_discount
        if cap <= 0.0 or b_mat.shape[1] != 1:
            return b_mat
        solve = numpy_solver(hvp, self.config.cg_iters)
        share = min(noise_share, cap) if math.isfinite(noise_share) else math.nan
        b_model, w_model = noise_aware_cost_gradient(g.double().numpy(), b_mat[:, 0], solve,
                                                     share)
        if isinstance(hvp, SolvedOperator):
            hvp.remember(b_model, w_model)
        return b_model[:, None]

    def acceptable(self, reward_gain: float, cost_change_sample: np.ndarray,
                   cost_change: np.ndarray, c: np.ndarray, case: str) -> bool:
        """Each cost rose no more than its margin max(-c_i, 0); the reward improved when safe.

        The reward must improve unless the batch violates a constraint (some c_i >= 0), where a
        step that lowers the cost may cost reward, or in recovery, which ignores the reward.
        """
        need_reward_gain = case != CASE_RECOVERY and bool(np.all(c < 0.0))
        return ((reward_gain > 0.0 or not need_reward_gain)
                and bool(np.all(cost_change <= np.maximum(-c, 0.0))))
