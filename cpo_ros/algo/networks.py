"""Networks: the Gaussian policy (with its observation normaliser and action scale) and critics."""

import math

import numpy as np
import torch
from torch import nn

from cpo_ros.validation import InvalidField


def mlp(sizes: tuple[int, ...], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Return a tanh MLP; the last layer is linear."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class _SigmoidTanh(torch.autograd.Function):
    """tanh(x) as 2 sigmoid(2x) - 1; the gradient 1 - y^2 from the output, as tanh's own."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - autograd.Function API
        y = torch.sigmoid(2.0 * x).mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class SigmoidTanh(nn.Module):
    """tanh computed as 2 sigmoid(2x) - 1: within 2e-7 of torch.tanh, about 5 times faster.

    torch's CPU tanh (2.x, float32) runs near 2 ns per element against 0.2 ns for sigmoid,
    and the critics' tanh layers were a third of their fit, the policy's two thirds of a forward
    pass over a batch. The two forms agree to float32 rounding in absolute terms (a few units in
    the last place of values near 1). The executor (numpy) and the exported policy (TorchScript)
    compute the policy with a plain tanh, the same function to that rounding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return tanh(x)."""
        return _SigmoidTanh.apply(x)


class RunningNorm(nn.Module):
    """Running mean and variance of observations (Chan et al. parallel update), kept as buffers."""

    def __init__(self, dim: int, clip: float = 10.0) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer('mean', torch.zeros(dim, dtype=torch.float64))
        self.register_buffer('var', torch.ones(dim, dtype=torch.float64))
        self.register_buffer('count', torch.tensor(1e-4, dtype=torch.float64))

    def update(self, batch: np.ndarray) -> None:
        """Fold a batch of observations (n, dim) into the statistics."""
        x = torch.as_tensor(np.asarray(batch, dtype=np.float64).reshape(-1, self.mean.numel()))
        n = x.shape[0]
        if n == 0:
            return
        mean, var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        new_mean = self.mean + delta * n / total
        m2 = self.var * self.count + var * n + delta.pow(2) * self.count * n / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Return clipped normalised observations in obs's float type (float32 otherwise)."""
        dtype = obs.dtype if obs.is_floating_point() else torch.float32
        std = torch.sqrt(self.var + 1e-8)
        out = (obs.to(torch.float64) - self.mean) / std
        return out.clamp(-self.clip, self.clip).to(dtype)


def gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Return the log-density of u (N, d) under N(mean, diag exp(log_std)^2), summed over d.

    torch.distributions.Normal's log_prob in closed form, without expanding the state-independent
    log_std to the batch (the expanded copies were a fifth of a policy pass over 50,000 samples).
    """
    z = (u - mean) * torch.exp(-log_std)
    return (-0.5 * z * z).sum(-1) - (log_std.sum() + 0.5 * mean.shape[-1] * math.log(2 * math.pi))


def gaussian_kl(mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor,
                log_std_q: torch.Tensor) -> torch.Tensor:
    """Return KL(p || q) per sample (N,) for diagonal Gaussians with state-independent stds."""
    var_ratio = torch.exp(2.0 * (log_std_p - log_std_q))
    diff = (mean_p - mean_q) * torch.exp(-log_std_q)
    return 0.5 * (diff * diff).sum(-1) + (0.5 * (var_ratio - 1.0) - (log_std_p - log_std_q)).sum()


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian policy with a state-independent learned log-std.

    The network works in a unit action space; `action_scale` and `action_bias` map a sample u to
    the environment's units (a = bias + scale * u), so the initial exploration is the same on
    every action dimension. Log-probabilities are of u.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...] = (64, 32),
                 init_log_std: float = -0.5, action_low: np.ndarray | None = None,
                 action_high: np.ndarray | None = None, obs_clip: float = 10.0) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.norm = RunningNorm(obs_dim, obs_clip)
        self.mean_net = mlp((obs_dim, *self.hidden_sizes, act_dim), SigmoidTanh)
        # Small last layer: the initial policy is near the centre of the action range.
        with torch.no_grad():
            self.mean_net[-1].weight.mul_(0.01)
            self.mean_net[-1].bias.zero_()
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))
        low, high = _finite_bounds(action_low, action_high, act_dim)
        self.register_buffer('action_scale',
                             torch.as_tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer('action_bias', torch.as_tensor((high + low) / 2, dtype=torch.float32))

    def mean(self, obs: torch.Tensor) -> torch.Tensor:
        """Return the Gaussian's mean over unit-space actions for raw observations."""
        return self.mean_net(self.norm(obs))

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        """Return the Gaussian over unit-space actions for raw observations."""
        mean = self.mean(obs)
        return torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean))

    def log_prob(self, obs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Return log pi(u | obs) summed over action dimensions."""
        return gaussian_log_prob(u, self.mean(obs), self.log_std)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return every weight and buffer as numpy arrays (for the wire and for export)."""
        arrays = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}
        # The constructor arguments the weights do not carry: with these the copy samples
        # exactly this policy (obs_dim, act_dim and the action range follow from the arrays).
        arrays['hidden_sizes'] = np.asarray(self.hidden_sizes, dtype=np.int64)
        arrays['obs_clip'] = np.asarray(self.norm.clip, dtype=np.float64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], obs_dim: int | None = None,
                    act_dim: int | None = None) -> 'GaussianPolicy':
        """Build a policy of the architecture the arrays describe and load them.

        The arrays are checked first (validate_policy_arrays): nothing is built from sizes
        that are negative, huge or inconsistent, or from non-finite parameters.
        """
        hidden, obs_dim, act_dim = validate_policy_arrays(arrays, obs_dim, act_dim)
        policy = cls(obs_dim, act_dim, hidden, obs_clip=_obs_clip(arrays))
        policy.load_arrays(arrays)
        return policy

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Load weights from to_arrays() output, refusing any shape or key mismatch."""
        hidden = tuple(int(h) for h in arrays.get('hidden_sizes', ()))
        if hidden != self.hidden_sizes:
            raise ValueError(f'policy hidden sizes {hidden} do not match {self.hidden_sizes}')
        own = self.state_dict()
        missing = sorted(set(own) - set(arrays))
        if missing:
            raise ValueError(f'policy arrays lack {missing}')
        tensors = {}
        for key, value in own.items():
            array = np.asarray(arrays[key])
            if tuple(array.shape) != tuple(value.shape):
                raise ValueError(f'policy array {key} has shape {array.shape}, '
                                 f'expected {tuple(value.shape)}')
            if not np.all(np.isfinite(array)):
                raise ValueError(f'policy array {key} holds non-finite values')
            tensors[key] = torch.as_tensor(array, dtype=value.dtype)
        self.load_state_dict(tensors)


def _obs_clip(arrays: dict[str, np.ndarray]) -> float:
    """Return the arrays' obs_clip; InvalidField unless a positive finite float scalar."""
    clip = np.asarray(arrays.get('obs_clip', np.nan))
    if 'obs_clip' not in arrays or clip.shape != () or clip.dtype.kind != 'f' or not (
            np.isfinite(clip) and clip > 0):
        raise InvalidField('obs_clip', f'need a positive float scalar, got '
                           f'{arrays.get("obs_clip")!r}')
    return float(clip)


# Bounds on a policy from the wire, checked before any network is built.
MAX_POLICY_LAYERS = 16
MAX_POLICY_WIDTH = 4096
MAX_POLICY_DIM = 10_000


def policy_array_shapes(obs_dim: int, act_dim: int, hidden: tuple[int, ...]
                        ) -> dict[str, tuple[int, ...]]:
    """Return the name and shape of every array of a GaussianPolicy's to_arrays()."""
    shapes: dict[str, tuple[int, ...]] = {'norm.mean': (obs_dim,), 'norm.var': (obs_dim,),
                                          'norm.count': ()}
    sizes = (obs_dim, *hidden, act_dim)
    for i in range(len(sizes) - 1):  # nn.Sequential: Linear at 0, 2, 4 ... (tanh between)
        shapes[f'mean_net.{2 * i}.weight'] = (sizes[i + 1], sizes[i])
        shapes[f'mean_net.{2 * i}.bias'] = (sizes[i + 1],)
    shapes.update({'log_std': (act_dim,), 'action_scale': (act_dim,),
                   'action_bias': (act_dim,)})
    return shapes


def validate_policy_arrays(arrays: dict[str, np.ndarray], obs_dim: int | None = None,
                           act_dim: int | None = None) -> tuple[tuple[int, ...], int, int]:
    """Return (hidden sizes, obs_dim, act_dim) of policy arrays; InvalidField when they are off.

    Checks, without building anything: the architecture (integer hidden sizes, 1 to
    MAX_POLICY_LAYERS layers of 1 to MAX_POLICY_WIDTH units), the sizes against obs_dim and
    act_dim when given, every array's presence, float dtype, shape and finiteness, and a
    positive normaliser variance and count.
    """
    def get(key: str) -> np.ndarray:
        if key not in arrays:
            raise InvalidField(key, 'missing from the policy')
        return np.asarray(arrays[key])

    hidden_array = get('hidden_sizes')
    if hidden_array.ndim != 1 or hidden_array.dtype.kind not in 'iu':
        raise InvalidField('hidden_sizes', f'need a 1-D integer array, got dtype '
                           f'{hidden_array.dtype} shape {hidden_array.shape}')
    hidden = tuple(int(h) for h in hidden_array)
    if not 1 <= len(hidden) <= MAX_POLICY_LAYERS or not all(
            1 <= h <= MAX_POLICY_WIDTH for h in hidden):
        raise InvalidField('hidden_sizes', f'{list(hidden)}: need 1 to {MAX_POLICY_LAYERS} '
                           f'layers of 1 to {MAX_POLICY_WIDTH} units')
    dims = {}
    for key, expected in (('norm.mean', obs_dim), ('log_std', act_dim)):
        array = get(key)
        size = array.shape[0] if array.ndim == 1 else -1
        if not 1 <= size <= MAX_POLICY_DIM:
            raise InvalidField(key, f'shape {array.shape}: need a 1-D array of 1 to '
                               f'{MAX_POLICY_DIM} values')
        if expected is not None and size != expected:
            raise InvalidField(key, f'policy is for size {size}, this task has {expected} '
                               f'({"observation" if key == "norm.mean" else "action"} size)')
        dims[key] = size
    shapes = policy_array_shapes(dims['norm.mean'], dims['log_std'], hidden)
    for key, shape in shapes.items():
        array = get(key)
        if array.dtype.kind != 'f':
            raise InvalidField(key, f'dtype {array.dtype}, need a float type')
        if tuple(array.shape) != shape:
            raise InvalidField(key, f'shape {array.shape}, expected {shape}')
        if not np.all(np.isfinite(array)):
            raise InvalidField(key, 'holds non-finite values')
    if np.any(get('norm.var') < 0) or float(get('norm.count')) <= 0:
        raise InvalidField('norm.var', 'normaliser variance below 0 or count not positive')
    _obs_clip(arrays)
    return hidden, dims['norm.mean'], dims['log_std']


class NumpyActor:
    """A frozen copy of a GaussianPolicy that acts with numpy.

    Sampling calls the network on a handful of observations per step; torch's per-operation
    overhead (and its thread pool, shared with an update running on another thread) costs far
    more than the arithmetic there, so acting happens in numpy.
    """

    def __init__(self, policy: GaussianPolicy) -> None:
        with torch.no_grad():
            self.mean = policy.norm.mean.numpy().astype(np.float64)
            self.std = np.sqrt(policy.norm.var.numpy() + 1e-8)
            self.clip = float(policy.norm.clip)
            linears = [m for m in policy.mean_net if isinstance(m, nn.Linear)]
            self.layers = [(m.weight.numpy().T.astype(np.float32).copy(),
                            m.bias.numpy().astype(np.float32).copy()) for m in linears]
            self.log_std = policy.log_std.numpy().astype(np.float32).copy()
            self.scale = policy.action_scale.numpy().copy()
            self.bias = policy.action_bias.numpy().copy()
        self.act_std = np.exp(self.log_std)
        self._logp_const = float(-self.log_std.sum() - 0.5 * len(self.log_std)
                                 * math.log(2 * math.pi))

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        """Return the mean of the unit-space action for raw observations (N, obs_dim)."""
        x = np.clip((np.asarray(obs, np.float64) - self.mean) / self.std, -self.clip,
                    self.clip).astype(np.float32)
        for i, (w, b) in enumerate(self.layers):
            x = x @ w + b
            if i < len(self.layers) - 1:
                x = np.tanh(x)
        return x

    def log_prob(self, obs: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Return log pi(u | obs) (N,) for raw observations and unit-space samples."""
        z = (np.asarray(u, np.float32) - self.mean_action(obs)) / self.act_std
        return (self._logp_const - 0.5 * np.square(z).sum(-1)).astype(np.float32)

    def act(self, obs: np.ndarray, deterministic: bool = False,
            rng: np.random.Generator | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (u, log-prob, action in env units) like GaussianPolicy.act."""
        mean = self.mean_action(obs)
        if deterministic:
            noise = np.zeros_like(mean)
        else:
            noise = (rng or np.random.default_rng()).standard_normal(mean.shape).astype(
                np.float32)
        u = mean + self.act_std * noise
        logp = (self._logp_const - 0.5 * np.square(noise).sum(-1)).astype(np.float32)
        return u, logp, (self.bias + self.scale * u).astype(np.float32)


class Critic(nn.Module):
    """State-value network over normalised observations (the normaliser is the policy's).

    The network predicts a standardised value; `shift` and `scale` map it to the value's units
    (v = shift + scale * net(x)). Long episodes give values in the hundreds: fitted raw, Adam's
    per-step change (about the learning rate per weight) would need hundreds of iterations to
    reach them, and an unfit cost critic makes the cost gradient mostly noise. The fit sets
    shift and scale to its targets' mean and spread first (rescale: the last layer absorbs the
    change, so the values stay as they were, Pop-Art as in van Hasselt et al. 2016), so it
    always regresses targets of unit size.
    """

    def __init__(self, obs_dim: int, hidden_sizes: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.net = mlp((obs_dim, *hidden_sizes, 1), SigmoidTanh)
        self.register_buffer('shift', torch.zeros((), dtype=torch.float64))
        self.register_buffer('scale', torch.ones((), dtype=torch.float64))

    def forward(self, norm_obs: torch.Tensor) -> torch.Tensor:
        """Return values (n,) for normalised observations (n, obs_dim)."""
        out = self.net(norm_obs).squeeze(-1)
        return out * self.scale.to(out.dtype) + self.shift.to(out.dtype)

    def rescale(self, shift: float, scale: float, preserve: bool = True) -> None:
        """Set shift and scale; preserve: fold the change into the last layer (values stay)."""
        last = self.net[-1]
        with torch.no_grad():
            if preserve:
                last.weight.mul_(float(self.scale) / scale)
                last.bias.copy_(((last.bias.double() * float(self.scale) + float(self.shift)
                                  - shift) / scale).float())
            self.shift.fill_(shift)
            self.scale.fill_(scale)

    def standardised(self, norm_obs: torch.Tensor) -> torch.Tensor:
        """Return the network's output before shift and scale (what the fit regresses)."""
        return self.net(norm_obs).squeeze(-1)


def _finite_bounds(low: np.ndarray | None, high: np.ndarray | None,
                   dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Return finite action bounds for the Gaussian's centre and scale.

    A missing or infinite bound pair becomes [-1, 1]; a half-infinite one keeps its finite
    side: [low, low + 2] or [high - 2, high] (the env's Box still clips each action sent).
    """
    lo = np.full(dim, -1.0) if low is None else np.asarray(low, dtype=np.float64).reshape(dim)
    hi = np.full(dim, 1.0) if high is None else np.asarray(high, dtype=np.float64).reshape(dim)
    lo_ok, hi_ok = np.isfinite(lo), np.isfinite(hi)
    new_lo = np.where(lo_ok, lo, np.where(hi_ok, hi - 2.0, -1.0))
    new_hi = np.where(hi_ok, hi, np.where(lo_ok, lo + 2.0, 1.0))
    return new_lo, new_hi
