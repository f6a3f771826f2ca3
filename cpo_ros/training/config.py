"""Configuration dataclasses for training: one docstring per field, validated in one place."""

from dataclasses import asdict, dataclass, field, fields
import math
from typing import Any

from cpo_ros.algo.registry import RULES
from cpo_ros.tasks.registry import DEFAULT_TASK
from cpo_ros.validation import check_range

ALGOS = tuple(RULES)
VALUE_NORMALIZATIONS = ('off', 'cost', 'all')
COST_BIAS_AIMS = ('none', 'below', 'limit')


@dataclass(frozen=True)
class Range:
    """The allowed interval of a numeric setting (of each element, for a tuple).

    Integer bounds mean an integer setting (a count): 2.5 epochs is refused by name.
    """

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def check(self, name: str, value: Any) -> None:
        """Raise ValueError naming name unless value (each element of a tuple) is inside."""
        for v in value if isinstance(value, (tuple, list)) else (value,):
            check_range(name, v, self.low, self.high, self.low_open, self.high_open,
                        integer=isinstance(self.low, int) and isinstance(self.high, int))


# The one source of each setting's allowed values: validate() checks them, and the learner's
# ROS parameter descriptors (cpo_ros.ros.specs) show them.
ALGO_RANGES = {
    'cost_limit': Range(0.0, math.inf), 'cost_confidence': Range(0.0, 10.0),
    'cost_bias_rate': Range(0.0, 1.0), 'cost_rise_max': Range(1.0, 1000.0),
    'cost_step_share': Range(0.0, 1.0, low_open=True), 'cost_noise_gate': Range(0.0, 10.0),
    'cost_noise_discount': Range(0.0, 1.0),
    'cost_confidence_reliable': Range(0.0, 10.0),
    'cost_confidence_rate': Range(0.0, 10.0), 'cost_over_share': Range(0.0, 1.0),
    'gamma': Range(0.0, 1.0), 'lam': Range(0.0, 1.0), 'cost_gamma': Range(0.0, 1.0),
    'cost_lam': Range(0.0, 1.0), 'target_kl': Range(0.0, 1.0, low_open=True),
    'cg_iters': Range(1, 1000), 'cg_damping': Range(0.0, 10.0),
    'backtrack_ratio': Range(0.0, 1.0, True, True), 'backtrack_iters': Range(1, 100),
    'hidden_sizes': Range(1, 4096), 'value_hidden_sizes': Range(1, 4096),
    'init_log_std': Range(-10.0, 2.0), 'value_lr': Range(0.0, 1.0, low_open=True),
    'value_epochs': Range(0, 1000), 'value_minibatch': Range(1, 10_000_000),
    'pdo_lambda_lr': Range(0.0, 100.0), 'pdo_lambda_init': Range(0.0, 1e6),
    'ppo_lr': Range(0.0, 1.0, low_open=True), 'ppo_epochs': Range(1, 1000),
    'ppo_minibatch': Range(1, 10_000_000), 'ppo_clip': Range(0.0, 1.0, low_open=True),
    'ppo_target_kl': Range(0.0, 10.0), 'ppo_max_grad_norm': Range(0.0, 1e6),
    'lagrangian_lr': Range(0.0, 100.0), 'lagrangian_init': Range(0.0, 1e6),
    'pid_kp': Range(0.0, 100.0), 'pid_ki': Range(0.0, 100.0), 'pid_kd': Range(0.0, 100.0),
    'pid_p_ema': Range(0.0, 1.0, high_open=True), 'pid_d_ema': Range(0.0, 1.0, high_open=True),
    'pid_d_delay': Range(1, 1000),
    'obs_clip': Range(0.0, math.inf, low_open=True), 'shaping_horizon': Range(1, 100_000),
    'shaping_weight': Range(0.0, 1e6),
}
TRAIN_RANGES = {
    'iterations': Range(1, 10_000_000), 'num_envs': Range(1, 4096),
    'checkpoint_every': Range(1, 10_000_000), 'torch_threads': Range(1, 256),
}
"""steps_per_iteration is checked against num_envs in TrainConfig.validate()."""
CHOICES = {'algo': ALGOS, 'value_normalization': VALUE_NORMALIZATIONS,
           'cost_bias_aim': COST_BIAS_AIMS, 'lagrangian_optimizer': ('adam', 'sgd'),
           'lagrangian_cost_adv': ('center', 'standardize')}


ALGO_ONLY = {'pdo_': ('pdo',), 'ppo_': ('ppo_lag', 'pid_lag'), 'pid_': ('pid_lag',),
             'lagrangian_lr': ('ppo_lag',), 'lagrangian_optimizer': ('ppo_lag',),
             'lagrangian_init': ('ppo_lag', 'pid_lag'),
             'lagrangian_cost_adv': ('ppo_lag', 'pid_lag')}
"""Settings (by name or prefix) that only some update rules read."""


@dataclass
class AlgoConfig:
    """Settings of the policy update (CPO and the TRPO and PDO baselines that share its parts)."""

    algo: str = 'cpo'
    """Update rule: 'cpo', 'trpo' (ignores the cost), 'pdo' (primal-dual, trust-region step),
    'ppo_lag' (PPO-Lagrangian) or 'pid_lag' (PPO with a PID-controlled multiplier)."""
    cost_limit: float | tuple[float, ...] = 5.0
    """Limit d on the expected undiscounted cost per episode; one per constraint when the task
    has several (e.g. Circle with a speed limit: (5.0, 2.0))."""
    cost_confidence: float = 2.0
    """z of the constraint value: CPO holds J_C + z SE(J_C) under the limit, SE the standard error
    of the batch's mean episode cost (0: the paper's point estimate). With cost_confidence_rate
    above 0 this is z's start and its ceiling."""
    cost_confidence_rate: float = 0.0
    """CPO: how fast z follows the measured cost's record (0: z fixed at cost_confidence). After
    each batch, z += rate (1[J_C > d] - cost_over_share), clipped to [0, cost_confidence]: each
    batch under the limit lowers z a little, each above raises it more: z falls until about
    cost_over_share of the batches measure above d (an online quantile calibration, as adaptive
    conformal inference), never above its start. Where the unconstrained learner stays safe the
    margin melts away; where the cost breaks through z stays near cost_confidence."""
    cost_over_share: float = 0.2
    """CPO with cost_confidence_rate above 0: the share of batches above the limit that z is
    calibrated to (per constraint)."""
    cost_bias_rate: float = 0.3
    """Weight of the newest one-step prediction error (measured J_C minus J_C predicted by the
    last step's b.x) in the running estimate of the linear cost model's bias, which is added to
    the constraint value when positive (0: off, the paper's linear model)."""
    cost_filter: bool = False
    """CPO: hold J_C and SE(J_C) filtered over every batch so far (algo.cost_filter, a Kalman
    filter whose forecast is each step's predicted change and whose process variance is learned
    at rate cost_bias_rate) instead of the newest batch's alone; the bias term and the rise
    calibration then compare the filtered changes (false: the newest batch)."""
    cost_bias_denoise: bool = False
    """Before the bias term compares a predicted cost decrease with the measured change, shrink
    it by the share of s that is noise (cost_grad_noise, first constraint): a step along a
    noisy b predicts a decrease its noise part does not bring (E[n.H^-1.n] is that share of
    s), and on tasks whose cost gradient is mostly noise the bias grew with every step and held
    CPO in recovery far below the limit (false: compare with the raw prediction)."""
    cost_noise_discount: float = 0.0
    """CPO, one constraint: the largest share of s = b.H^-1.b that the step's linear cost model
    discounts as noise (0: off, the paper's model). Along its own direction H^-1 b a noisy b
    promises a decrease of s of which the noise share (cost_grad_noise, measured before the
    step) never comes; the model keeps b's forecast along the reward's direction and
    discounts min(noise share, this) of s along b's own (cpo.noise_aware_cost_gradient). The
    bias term then compares the measured change with this model's forecast (cost_bias_denoise
    is moot). The split-half share is itself noisy (above 1 on batches whose recovery
    worked), hence the cap."""
    cost_bias_aim: str = 'none'
    """Which part of a predicted cost decrease the bias term compares with the measured change:
    'none' (all of it), 'below' (none of it from J_C below the limit, where the step was not
    asked to lower the cost; all of it from above) or 'limit' (as 'below', and from above only
    down to the limit, d - J_C). A recovery asks for the largest decrease the trust region
    allows; where its cost gradient is noise that decrease never comes, and counted whole it
    grew the bias until CPO stayed in recovery far below the limit (docs/algorithm.md)."""
    cost_rise_max: float = 10.0
    """Largest calibration factor of predicted cost rises: the ratio of measured to predicted
    J_C change after steps predicted to raise the cost (a running mean, rate cost_bias_rate),
    clipped to [1, cost_rise_max], divides the rise a step may predict (1: off)."""
    cost_step_share: float = 1.0
    """CPO: the largest share of the cost decrease the trust region allows that a step asks for;
    the rest of the trust region climbs the reward, in recovery too (1: the paper's step, whose
    recovery only lowers the cost). Below 1 only where the cost gradient is reliable: with a
    noisy one the cost ran away (docs/benchmarks.md, small batches)."""
    cost_noise_gate: float = 0.0
    """CPO: when above 0, a step's cost gradient is reliable when the share of it that is noise
    (the split-half estimate, cost_grad_noise, measured before the step) is below this; only
    reliable steps take cost_step_share and cost_confidence_reliable, the others the paper's
    step (share 1) and cost_confidence. 0: no gate (cost_step_share applies to every step)."""
    cost_confidence_reliable: float = 2.0
    """CPO with cost_noise_gate above 0: z of the constraint value (as cost_confidence) in steps
    whose cost gradient is reliable."""
    gamma: float = 0.995
    """Discount of the reward."""
    lam: float = 0.95
    """GAE lambda of the reward."""
    cost_gamma: float = 0.995
    """Discount of the cost (for its advantages; the constraint itself is undiscounted)."""
    cost_lam: float = 0.95
    """GAE lambda of the cost (the paper uses 1 for Point; with a fitted cost critic 0.95 cuts
    the cost gradient's noise several-fold on long episodes)."""
    target_kl: float = 0.01
    """Trust-region size delta on the mean KL divergence."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for H^-1 g and H^-1 b."""
    cg_damping: float = 0.01
    """Damping added to the Fisher-vector product (H + damping I)."""
    backtrack_ratio: float = 0.8
    """Shrink factor of the backtracking line search."""
    backtrack_iters: int = 15
    """Maximum line-search steps before the old parameters are kept."""
    hidden_sizes: tuple[int, ...] = (64, 32)
    """Hidden layers of the policy (tanh)."""
    value_hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layers of the reward and cost critics (tanh)."""
    init_log_std: float = -0.5
    """Initial log standard deviation of the Gaussian policy (actions scaled to [-1, 1])."""
    value_lr: float = 1e-3
    """Adam learning rate of the critics."""
    value_epochs: int = 10
    """Passes over the batch when fitting the critics."""
    value_minibatch: int = 4096
    """Minibatch size when fitting the critics."""
    value_normalization: str = 'cost'
    """Which critics regress standardised targets: 'cost' (the cost critics), 'all' (the reward
    critic too) or 'off'. The value's shift and scale are folded into the last layer (Pop-Art),
    so long-horizon costs in the hundreds are fit as fast as small ones; the reward critic is
    left raw by default (standardised, it cost Point-Circle return: docs/algorithm.md)."""
    pdo_lambda_lr: float = 0.01
    """Dual step size of PDO: lambda <- max(0, lambda + lr (J_C - d))."""
    pdo_lambda_init: float = 0.0
    """Initial Lagrange multiplier of PDO."""
    ppo_lr: float = 3e-4
    """Adam learning rate of the policy (ppo_lag, pid_lag)."""
    ppo_epochs: int = 10
    """Passes over the batch per update (ppo_lag, pid_lag)."""
    ppo_minibatch: int = 1024
    """Minibatch size of the policy's Adam steps (ppo_lag, pid_lag)."""
    ppo_clip: float = 0.2
    """Clip range epsilon of the probability ratio in the PPO surrogate (ppo_lag, pid_lag)."""
    ppo_target_kl: float = 0.02
    """Early stop: no further epoch once the mean KL to the sampling policy exceeds this
    (ppo_lag, pid_lag; 0: always run ppo_epochs)."""
    ppo_max_grad_norm: float = 0.5
    """Clip of the policy gradient's norm per Adam step (ppo_lag, pid_lag; 0: off)."""
    lagrangian_lr: float = 0.035
    """Learning rate of the ppo_lag multiplier, which climbs J_C - d once per iteration before
    the policy step (see lagrangian_optimizer)."""
    lagrangian_optimizer: str = 'adam'
    """How the ppo_lag multiplier climbs: 'adam' (OmniSafe's and SafePO's: Adam on the loss
    -lambda (J_C - d), a step near lagrangian_lr per iteration whatever the violation's size)
    or 'sgd' (lambda <- lambda + lagrangian_lr (J_C - d), a step as large as the violation);
    lambda >= 0 after each step."""
    lagrangian_init: float = 0.001
    """Initial multiplier of ppo_lag and initial integral term of pid_lag (OmniSafe's 0.001)."""
    lagrangian_cost_adv: str = 'center'
    """The cost advantage in the ppo_lag and pid_lag surrogate: 'center' (the batch mean
    subtracted, OmniSafe's, SafePO's and Stooke et al.'s: lambda weighs the cost in its own
    units) or 'standardize' (divided by its standard deviation too)."""
    pid_kp: float = 0.1
    """Proportional gain K_P of the pid_lag multiplier (Stooke et al. 2020):
    lambda = max(0, K_P P + I + K_D D), P the smoothed J_C - d (pid_p_ema)."""
    pid_ki: float = 0.01
    """Integral gain K_I of pid_lag: I <- max(0, I + K_I (J_C - d)) each iteration."""
    pid_kd: float = 0.01
    """Derivative gain K_D of pid_lag, on D = max(0, the smoothed J_C less its value
    pid_d_delay iterations ago)."""
    pid_p_ema: float = 0.95
    """Smoothing of pid_lag's proportional input: P <- a P + (1 - a) (J_C - d) (OmniSafe's
    and Stooke et al.'s 0.95; 0: the raw violation, the paper's Algorithm 2 as written)."""
    pid_d_ema: float = 0.95
    """Smoothing of the J_C pid_lag's derivative reads (0: the raw J_C)."""
    pid_d_delay: int = 10
    """pid_lag's derivative compares the smoothed J_C with its value this many iterations
    before (OmniSafe's 10; 1: the last iteration's)."""
    obs_clip: float = 10.0
    """Clip on normalised observations."""
    cost_shaping: bool = False
    """Paper section 6.3: constrain C + w P(violation within shaping_horizon steps), with P a
    learned predictor and the same limit (conservative: the shaped cost bounds the cost)."""
    shaping_horizon: int = 10
    """Look-ahead T of the violation predictor [steps]."""
    shaping_weight: float = 1.0
    """Weight w of the predicted violation probability in the shaped cost."""

    @property
    def limits(self) -> tuple[float, ...]:
        """Return the cost limits as a tuple (one per constraint)."""
        if isinstance(self.cost_limit, (tuple, list)):
            return tuple(float(v) for v in self.cost_limit)
        return (float(self.cost_limit),)

    def idle_settings(self) -> list[str]:
        """Return 'key = value (read by ...)' of each changed setting the algo does not read.

        A setting is changed when it differs from its default; `--algo cpo --set ppo_lr=0.1`
        trains as without it.
        """
        default = AlgoConfig()
        idle = []
        for key in (f.name for f in fields(self)):
            algos = next((a for prefix, a in ALGO_ONLY.items() if key.startswith(prefix)), None)
            if (algos is not None and self.algo not in algos
                    and getattr(self, key) != getattr(default, key)):
                idle.append(f'{key} = {getattr(self, key)!r} (read by {", ".join(algos)} only)')
        return idle

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f'{name} = {getattr(self, name)!r} is not one of {choices}')
        if not self.limits:
            raise ValueError('cost_limit = (): need one limit per constraint')
        for name in ('hidden_sizes', 'value_hidden_sizes'):
            sizes = getattr(self, name)
            if not sizes or any(int(h) < 1 for h in sizes):
                raise ValueError(f'{name} = {sizes!r}: need one or more positive layer sizes')
        for name, allowed in ALGO_RANGES.items():
            allowed.check(name, self.limits if name == 'cost_limit' else getattr(self, name))


@dataclass
class TrainConfig:
    """A whole training run: task, budget, sampling and the update settings."""

    task: str | None = DEFAULT_TASK
    """Task: a registered name or a dotted path 'pkg.module:Class' (cpo_ros.tasks.registry),
    or None when env_id is given."""
    env_id: str | None = None
    """Any Gymnasium id whose step reports info['cost'], or a Safety-Gymnasium id."""
    iterations: int = 100
    """Policy updates to run."""
    steps_per_iteration: int = 50_000
    """Environment samples per update (all envs together; `cpo-ros train` needs each env's
    share to hold an episode)."""
    num_envs: int = 16
    """Copies of the environment stepped together."""
    env_workers: int = 1
    """Processes that step the envs of an env_id: 1 steps them one after another in this
    process; N >= 2 splits the num_envs envs over N worker processes (shared memory, the same
    results as 1). A task (rather than an env_id) steps all its robots in one MuJoCo model and
    takes 1."""
    seed: int = 0
    """Seed of torch, numpy and the environments."""
    out: str = 'runs/circle_cpo'
    """Directory for progress.csv, config.yaml, curves.png and checkpoints."""
    checkpoint_every: int = 1
    """Write a checkpoint every this many iterations (and always at the end)."""
    torch_threads: int = 1
    """Threads torch may use for the update."""
    tensorboard: bool = True
    """Write TensorBoard logs to out/tb/: every progress.csv column, and histograms of the
    policy's std and of the advantages (`tensorboard --logdir runs/`)."""
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    """Update settings."""
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    """Overrides of the task's parameters and the robot's (e.g. {'x_limit': 3.0})."""
    robot: dict[str, Any] = field(default_factory=dict)
    """The robot profile trained for (config/robots/<name>.yaml parameters; empty: the
    simulator's defaults). Its limits, control period and task scale are also in task_kwargs;
    its dr_* keys randomise the simulated robot; exports record it for the deployment check."""

    @property
    def steps_per_env(self) -> int:
        """Return each env's steps an iteration: its share of steps_per_iteration (at least 1)."""
        return max(1, self.steps_per_iteration // self.num_envs)

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        if (self.task is None) == (self.env_id is None):
            raise ValueError('give exactly one of task and env_id')
        for name, allowed in TRAIN_RANGES.items():
            allowed.check(name, getattr(self, name))
        check_range('env_workers', self.env_workers, 1, 256, integer=True)
        if self.env_workers > self.num_envs:
            raise ValueError(f'env_workers = {self.env_workers} exceeds num_envs = '
                             f'{self.num_envs}: each worker steps one env or more')
        if self.env_workers > 1 and self.task is not None:
            raise ValueError(f'env_workers = {self.env_workers}: the task {self.task} '
                             f'steps all its robots in one MuJoCo model, in this process '
                             f'(env_workers is for env_id; set it to 1)')
        check_range('steps_per_iteration', self.steps_per_iteration, self.num_envs, 100_000_000)
        self.algo.validate()

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (lists, not tuples) for YAML and checkpoints."""
        def plain(value: Any) -> Any:
            if isinstance(value, tuple):
                return list(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value
        return plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> 'TrainConfig':
        """Build from to_dict() output; unknown keys are an error, not silently dropped."""
        data = dict(data)
        algo = dict(data.pop('algo', {}))
        _reject_unknown(AlgoConfig, algo, 'algo.')
        _reject_unknown(cls, data, '')
        for name in ('hidden_sizes', 'value_hidden_sizes'):
            if name in algo:
                algo[name] = tuple(int(h) for h in algo[name])
        if isinstance(algo.get('cost_bias_aim'), bool):  # a run written before the choice
            algo['cost_bias_aim'] = 'limit' if algo['cost_bias_aim'] else 'none'
        if isinstance(algo.get('cost_limit'), list):
            algo['cost_limit'] = tuple(float(v) for v in algo['cost_limit'])
        return cls(algo=AlgoConfig(**algo), **data)


def _reject_unknown(kind: type, data: dict[str, Any], prefix: str) -> None:
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f'unknown configuration keys: {", ".join(prefix + k for k in unknown)}')
