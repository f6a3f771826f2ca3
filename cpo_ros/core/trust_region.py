"""Trust-region pieces shared by TRPO, PDO and CPO: flat parameters, Fisher-vector products, CG."""

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


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


def gaussian_fisher_product(policy: nn.Module, obs: torch.Tensor,
                            damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return v -> (H + damping I) v like fisher_vector_product, in closed form.

    For a GaussianPolicy (a tanh MLP `mean_net` on normalised observations, a state-independent
    `log_std`) the Hessian of the mean KL at the current parameters is exactly the Fisher
    J^T diag(1/sigma^2) J / N over the mean network's parameters (J: d mean / d theta per
    sample; the terms with second derivatives of the mean vanish because the KL's gradient is
    zero there), 2 I over log_std, and zero between the two. J v is one forward-mode pass and
    J^T u one backward pass, both written out with the activations of a single forward pass
    kept: about a quarter of the time of differentiating the KL twice, for the same product
    (tests/test_trust_region.py checks it against autograd).
    """
    layers = [m for m in policy.mean_net if isinstance(m, nn.Linear)]
    names = [name for name, _ in policy.named_parameters()]
    params = dict(policy.named_parameters())
    with torch.no_grad():
        acts = [policy.norm(obs).to(layers[0].weight.dtype)]
        slopes = []
        for lin in layers[:-1]:
            h = torch.tanh(torch.addmm(lin.bias, acts[-1], lin.weight.t()))
            acts.append(h)
            slopes.append(1.0 - h * h)
        # Mean over samples and 1/sigma^2 per action dimension in one factor.
        scale = torch.exp(-2.0 * params['log_std'].detach()) / acts[0].shape[0]
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
            dz = None
            for i, (lin, (kw, kb)) in enumerate(zip(layers, keys, strict=True)):
                step = torch.addmm(parts[kb], acts[i], parts[kw].t())
                dz = step if dz is None else step.addmm_(slopes[i - 1] * dz, lin.weight.t())
            grad = dz * scale
            out = {'log_std': 2.0 * parts['log_std']}
            for i in reversed(range(len(layers))):
                kw, kb = keys[i]
                out[kw] = grad.t() @ acts[i]
                out[kb] = grad.sum(0)
                if i:
                    grad = (grad @ layers[i].weight) * slopes[i - 1]
            return torch.cat([out[n].reshape(-1) for n in names]) + damping * v

    return product


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


def numpy_solver(h: np.ndarray | Callable[[np.ndarray], np.ndarray],
                 cg_iters: int) -> Callable[[np.ndarray], np.ndarray]:
    """Return v -> H^-1 v for a dense matrix (exact) or a matrix-vector callable (CG)."""
    if callable(h):
        def solve_cg(v: np.ndarray) -> np.ndarray:
            def matvec(t: torch.Tensor) -> torch.Tensor:
                return torch.as_tensor(np.asarray(h(t.numpy()), dtype=np.float64))
            return conjugate_gradient(matvec, torch.as_tensor(v, dtype=torch.float64),
                                      iters=cg_iters).numpy()
        return solve_cg
    matrix = np.asarray(h, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f'H must be a square matrix, got shape {matrix.shape}')
    return lambda v: np.linalg.solve(matrix, v)
