"""Trust-region pieces shared by TRPO, PDO and CPO.

Flat parameters, Fisher-vector products, CG, the backtracking line search, and the rule they
share (gradients, direction, line search).
"""

from collections.abc import Callable
from dataclasses import dataclass
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from cpo_ros.algo.rule import Batch, ConstraintEstimate, PolicyStep, surrogates, UpdateRule

CASE_TRPO = 'trpo'  # the constraint plays no part in the step: the natural-gradient step
_EPS = 1e-8


def flat_params(module: nn.Module) -> torch.Tensor:
    """Return all parameters of module as one detached 1-D tensor."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def set_flat_params(module: nn.Module, flat: torch.Tensor) -> None:
    """Copy a 1-D tensor into the parameters of module (the inverse of flat_params)."""
    offset = 0
    with torch.no_grad():
        for p in module.parameters():
            n = p.numel()
            p.copy_(flat[offset:offset + n].view_as(p))
            offset += n
    if offset != flat.numel():
        raise ValueError(f'flat vector has {flat.numel()} entries, the module {offset}')


def flat_grad(output: torch.Tensor, module: nn.Module, create_graph: bool = False,
              retain_graph: bool | None = None) -> torch.Tensor:
    """Return d output / d parameters as one 1-D tensor (zeros for unused parameters)."""
    params = list(module.parameters())
    grads = torch.autograd.grad(output, params, create_graph=create_graph,
                                retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params, strict=True)])


def fisher_vector_product(kl_fn: Callable[[], torch.Tensor], module: nn.Module,
                          damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return v -> (H + damping I) v, H the Hessian of the mean KL at the current parameters.

    kl_fn computes the mean KL between the (detached) current policy and the policy with the
    module's live parameters; its value and gradient are zero here, its Hessian is the Fisher.
    The gradient graph is built once and reused for every product.
    """
    grad_kl = flat_grad(kl_fn(), module, create_graph=True)

    def product(v: torch.Tensor) -> torch.Tensor:
        hv = flat_grad((grad_kl * v).sum(), module, retain_graph=True)
        return hv + damping * v

    return product


FISHER_CHUNK_ROWS = 4096
"""Samples per block of a Fisher-vector product: a block's intermediates stay in the cache."""


def gaussian_fisher_product(policy: nn.Module, obs: torch.Tensor, damping: float,
                            chunk_rows: int = FISHER_CHUNK_ROWS, normalised: bool = False
                            ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return v -> (H + damping I) v like fisher_vector_product, in closed form.

    For a GaussianPolicy (a tanh MLP `mean_net` on normalised observations, a state-independent
    `log_std`) the Hessian of the mean KL at the current parameters is exactly the Fisher
    J^T diag(1/sigma^2) J / N over the mean network's parameters (J: d mean / d theta per
    sample; the terms with second derivatives of the mean vanish because the KL's gradient is
    zero there), 2 I over log_std, and zero between the two. J v is one forward-mode pass and
    J^T u one backward pass, both written out with the activations of a single forward pass
    kept: about a quarter of the time of differentiating the KL twice, for the same product
    (tests/test_trust_region.py checks it against autograd). The samples are taken in blocks of
    chunk_rows, summing the blocks' J^T u: the same sum in another order, about 1.7 times
    faster at 50,000 samples because a block's forward-mode intermediates stay in the cache
    instead of streaming through memory. The product keeps its own copy of the weights: it
    stays the Fisher at these parameters while a line search moves them (on another thread).
    normalised: obs are already policy.norm(obs).
    """
    layers = [m for m in policy.mean_net if isinstance(m, nn.Linear)]
    names = [name for name, _ in policy.named_parameters()]
    params = dict(policy.named_parameters())
    with torch.no_grad():
        acts = [(obs if normalised else policy.norm(obs)).to(layers[0].weight.dtype)]
        slopes = []
        h = acts[0]
        for module in list(policy.mean_net)[:-1]:  # the policy's own tanh layers
            h = module(h)
            if not isinstance(module, nn.Linear):
                acts.append(h)
                slopes.append(1.0 - h * h)
        # Mean over samples and 1/sigma^2 per action dimension in one factor.
        scale = torch.exp(-2.0 * params['log_std'].detach()) / acts[0].shape[0]
        weights = [lin.weight.detach().clone() for lin in layers]
    blocks = [([a[start:start + chunk_rows] for a in acts],
               [s[start:start + chunk_rows] for s in slopes])
              for start in range(0, acts[0].shape[0], max(1, chunk_rows))]
    prefix = {id(m): k for k, m in policy.mean_net.named_children()}
    keys = [(f'mean_net.{prefix[id(lin)]}.weight', f'mean_net.{prefix[id(lin)]}.bias')
            for lin in layers]
    sizes = [params[n].numel() for n in names]
    if set(names) != {'log_std', *(k for pair in keys for k in pair)}:
        raise ValueError(f'not a Gaussian MLP policy: parameters {names}')

    def product(v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            parts = {n: p.view_as(params[n]) for n, p in zip(names, torch.split(v, sizes),
                                                               strict=True)}
            out = {n: torch.zeros_like(params[n]) for n in names}
            for block_acts, block_slopes in blocks:
                dz = None
                for i, (weight, (kw, kb)) in enumerate(zip(weights, keys, strict=True)):
                    step = torch.addmm(parts[kb], block_acts[i], parts[kw].t())
                    dz = step if dz is None else step.addmm_(block_slopes[i - 1] * dz,
                                                             weight.t())
                grad = dz * scale
                for i in reversed(range(len(layers))):
                    kw, kb = keys[i]
                    out[kw].addmm_(grad.t(), block_acts[i])
                    out[kb] += grad.sum(0)
                    if i:
                        grad = (grad @ weights[i]) * block_slopes[i - 1]
            out['log_std'] = 2.0 * parts['log_std']
            return torch.cat([out[n].reshape(-1) for n in names]) + damping * v

    return product


def fisher_operator(policy: nn.Module, obs: torch.Tensor, damping: float, cg_iters: int,
                    normalised: bool = False) -> 'SolvedOperator':
    """Return the damped Fisher of a Gaussian MLP policy at its parameters now, on numpy vectors.

    float64 vectors in and out (CG runs in float64); the product itself is float32.
    """
    product = gaussian_fisher_product(policy, obs, damping, normalised=normalised)

    def matvec(v: np.ndarray) -> np.ndarray:
        return product(torch.as_tensor(v, dtype=torch.float32)).double().numpy()

    return SolvedOperator(matvec, cg_iters)


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                       iters: int = 10, residual_tol: float = 1e-10) -> torch.Tensor:
    """Solve A x = b for symmetric positive-definite A given only x -> A x."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < residual_tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


class SolvedOperator:
    """A matrix-vector callable v -> H v that keeps its CG solutions H^-1 v per vector.

    The step direction and the split-half noise diagnostic both need H^-1 b for the same b:
    handed this operator, numpy_solver solves each right-hand side once. Solutions are keyed
    by the vector's exact float64 values, so a hit returns what a new solve would have.
    """

    def __init__(self, matvec: Callable[[np.ndarray], np.ndarray], cg_iters: int) -> None:
        self.matvec, self.cg_iters = matvec, cg_iters
        self._solutions: dict[bytes, np.ndarray] = {}
        self.solves = 0

    def __call__(self, v: np.ndarray) -> np.ndarray:
        """Return H v."""
        return self.matvec(v)

    @staticmethod
    def _key(v: np.ndarray) -> bytes:
        return v.tobytes() + str(v.shape).encode()

    def known(self, v: np.ndarray) -> np.ndarray | None:
        """Return H^-1 v when it was solved already, else None."""
        solution = self._solutions.get(self._key(np.asarray(v, dtype=np.float64)))
        return None if solution is None else solution.copy()

    def remember(self, v: np.ndarray, solution: np.ndarray) -> None:
        """Keep solution as H^-1 v (a combination of solutions found, by linearity)."""
        v = np.asarray(v, dtype=np.float64)
        self._solutions[self._key(v)] = np.asarray(solution, dtype=np.float64).copy()

    def solve(self, v: np.ndarray) -> np.ndarray:
        """Return H^-1 v by CG (cg_iters iterations), once per distinct v."""
        v = np.asarray(v, dtype=np.float64)
        key = self._key(v)
        if key not in self._solutions:
            self._solutions[key] = _cg_solver(self.matvec, self.cg_iters)(v)
            self.solves += 1
        return self._solutions[key].copy()


def _cg_solver(h: Callable[[np.ndarray], np.ndarray],
               cg_iters: int) -> Callable[[np.ndarray], np.ndarray]:
    def solve_cg(v: np.ndarray) -> np.ndarray:
        def matvec(t: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(np.asarray(h(t.numpy()), dtype=np.float64))
        return conjugate_gradient(matvec, torch.as_tensor(v, dtype=torch.float64),
                                  iters=cg_iters).numpy()
    return solve_cg


def numpy_solver(h: np.ndarray | Callable[[np.ndarray], np.ndarray],
                 cg_iters: int) -> Callable[[np.ndarray], np.ndarray]:
    """Return v -> H^-1 v for a dense matrix (exact) or a matrix-vector callable (CG).

    A SolvedOperator with the same cg_iters answers from its solutions already found.
    """
    if isinstance(h, SolvedOperator) and h.cg_iters == cg_iters:
        return h.solve
    if callable(h):
        return _cg_solver(h, cg_iters)
    matrix = np.asarray(h, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f'H must be a square matrix, got shape {matrix.shape}')
    return lambda v: np.linalg.solve(matrix, v)


def trust_region_step(v: np.ndarray, q: float, delta: float) -> np.ndarray:
    """Return sqrt(2 delta / q) v: v = H^-1 g scaled onto the trust region's edge (q = g.v)."""
    return math.sqrt(2.0 * delta / max(q, _EPS)) * v


@dataclass
class LineSearchResult:
    """Where a backtracking line search stopped."""

    accepted: bool
    frac: float
    """Fraction of the step taken (0 when none was acceptable)."""
    kl: float
    """Mean KL at the accepted parameters (0 when none was acceptable)."""
    reward_gain: float
    cost_change: np.ndarray
    """Change of each cost surrogate, per episode."""


def line_search(policy: nn.Module, step: torch.Tensor,
                evaluate: Callable[[], tuple[float, np.ndarray, float]],
                acceptable: Callable[[float, np.ndarray, np.ndarray], bool], target_kl: float,
                ratio: float, iters: int, cost_scale: float = 1.0) -> LineSearchResult:
    """Backtrack along step; keep the old parameters when no fraction is acceptable.

    evaluate() returns, at the parameters set, the reward surrogate's change, each cost
    surrogate's change (per sample) and the mean KL. A fraction is taken when its KL is within
    target_kl and acceptable(reward change, cost changes per sample, cost changes times
    cost_scale, i.e. per episode) holds; each try shrinks the fraction by ratio. A rejected
    step reports kl 0 and no cost change (an empty array).
    """
    old = flat_params(policy)
    frac = 1.0
    for _ in range(iters):
        set_flat_params(policy, old + frac * step)
        try:
            with torch.no_grad():
                d_r, d_c_sample, kl = evaluate()
        except ValueError:  # parameters so far off that the distribution is invalid
            frac *= ratio
            continue
        d_c = d_c_sample * cost_scale
        if math.isfinite(kl) and kl <= target_kl and acceptable(d_r, d_c_sample, d_c):
            return LineSearchResult(True, frac, kl, d_r, d_c)
        frac *= ratio
    set_flat_params(policy, old)
    return LineSearchResult(False, 0.0, 0.0, 0.0, np.zeros(0))


class TrustRegionRule(UpdateRule):
    """A step in the KL trust region: gradients, a direction, then a backtracking line search.

    Subclasses say which direction (`direction`) and which improvement a fraction of it must
    bring (`acceptable`); TRPO, PDO and CPO differ in nothing else.
    """

    def direction(self, g: torch.Tensor, bs: list[torch.Tensor], b_mat: np.ndarray,
                  hvp: 'SolvedOperator', c: np.ndarray,
                  reliable: bool = True) -> tuple[np.ndarray, str]:
        """Return the step (float64) and its case from the reward and cost gradients.

        g and bs are the gradients of the reward and cost surrogates (per sample); b_mat is bs
        as columns on the per-episode scale of c. reliable: whether the cost gradient passed
        the noise gate (AlgoConfig.cost_noise_gate; True without the gate).
        """
        raise NotImplementedError

    def acceptable(self, reward_gain: float, cost_change_sample: np.ndarray,
                   cost_change: np.ndarray, c: np.ndarray, case: str) -> bool:
        """Return whether a fraction of the step improves enough (its KL is checked apart)."""
        raise NotImplementedError

    def cost_model(self, g: torch.Tensor, b_mat: np.ndarray, hvp: 'SolvedOperator',
                   noise_share: float) -> np.ndarray:
        """Return the cost gradients (columns, per episode) of the step's linear cost model.

        They are b_mat as measured here; the step's forecast of each J_C's change is their
        product with the step taken.
        """
        return b_mat

    def improve(self, algorithm: Any, batch: Batch, estimate: ConstraintEstimate,
                clock: Any) -> PolicyStep:
        """Take the rule's step in the trust region, backtracked until acceptable."""
        cfg, policy, ep_len, m = self.config, algorithm.policy, estimate.episode_length, \
            estimate.c.size
        loss_r, loss_c = surrogates(policy, batch)
        g = flat_grad(loss_r, policy, retain_graph=True)
        bs = [flat_grad(loss_c[i], policy, retain_graph=i < m - 1) for i in range(m)]
        # Solves are kept: the noise diagnostic reuses the step's H^-1 b.
        hvp = fisher_operator(policy, batch.norm_obs, cfg.cg_damping, cfg.cg_iters,
                              normalised=True)
        b_mat = np.stack([b.double().numpy() for b in bs], axis=1) * ep_len  # (n, m)

        def cost_noise(before_step: bool = False) -> Any:
            # Needed before the step, its solves run here: the critics' process would answer
            # only after its fit, and the step would wait for the fit.
            return algorithm.cost_gradient_noise(batch.obs, batch.u, batch.old_logp,
                                                 batch.adv_c[:, 0], batch.shape, hvp,
                                                 b_mat[:, 0], ep_len,
                                                 None if before_step else batch.norm_obs)

        c, reliable, noise, share = estimate.c, True, None, math.nan
        if estimate.c_reliable is not None or self.noise_before_step:
            # The gate (CPO with cost_noise_gate) and the noise-aware cost model need the
            # noise share before the step.
            noise = cost_noise(before_step=True)
            share = noise.result()[0]
            if estimate.c_reliable is not None:
                reliable = bool(share < cfg.cost_noise_gate)
                c = estimate.c_reliable if reliable else estimate.c
            clock.lap('noise')
        b_mat = self.cost_model(g, b_mat, hvp, share)
        step, case = self.direction(g, bs, b_mat, hvp, c, reliable)
        clock.lap('direction')
        if noise is None:
            noise = cost_noise()
            clock.lap('noise')
        start_r, start_c = loss_r.item(), loss_c.detach().double().numpy()

        def evaluate() -> tuple[float, np.ndarray, float]:
            new_r, new_c, kl = surrogates(policy, batch, kl=True)
            return float(new_r) - start_r, new_c.double().numpy() - start_c, float(kl)

        def acceptable(d_r: float, d_c_sample: np.ndarray, d_c: np.ndarray) -> bool:
            return self.acceptable(d_r, d_c_sample, d_c, c, case)

        search = line_search(policy, torch.as_tensor(step, dtype=torch.float32), evaluate,
                             acceptable, cfg.target_kl, cfg.backtrack_ratio,
                             cfg.backtrack_iters, ep_len)
        clock.lap('line_search')
        cost_change = search.cost_change if search.accepted else np.zeros(m)
        return PolicyStep(case, search.accepted, search.frac, search.kl, search.reward_gain,
                          cost_change, b_mat.T @ (search.frac * step), noise)
