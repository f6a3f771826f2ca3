"""The schema of every message between the nodes: each field's dtype, shape and range.

One home for what a subscriber may accept. Numpy only (the learner's bookkeeping in
training/fleet.py checks chunks with it too); cpo_ros.ros.conversions turns the ROS messages
into the arrays checked here. Every check raises InvalidField naming the field, so that the
node counts the refusal under that field (cpo_ros.ros.faults) and never raises out of a
callback.

.npz messages (std_msgs/UInt8MultiArray, read by conversions.msg_to_arrays with a size cap):

`cpo/rollout`, a rollout chunk (executor -> learner; CHUNK_FIELDS):
    the rollout arrays of cpo_ros.algo.buffer (obs (T, N, D) ... policy_version ()), checked
    by buffer.validate_rollout, plus episode_end (E, 2) integer [step, env] of each finished
    episode with 0 <= step < T, 0 <= env < N, executor_id () str of 1 to 256 characters,
    executor_session () integer, chunk_seq () integer >= 0 and samples () = T * N;
    optionally (a robot's executor; CHUNK_FLAG_FIELDS) late (T, N) and intervened (T, N)
    bool flags per sample and dropped_samples () integer >= 0, the steps left out.
`cpo/policy` (learner -> executors; POLICY_FIELDS): version () integer >= 0, session ()
    integer in [1, 2**31], obs_clip () float > 0, task () str (the learner's task class and a
    digest of its parameters: an executor of another refuses it), hidden_sizes and every weight and
    buffer of algo.networks.GaussianPolicy (validate_policy_arrays: shapes from obs_dim,
    act_dim and hidden_sizes, float, finite).
`cpo/iteration` (learner -> executors; STATUS_FIELDS): version, session, needed, collected,
    more () integers, executors (K,) str, shares (K,) integers >= 0, 1 <= K <= 4096,
    policy_digest (32,) uint8: the SHA-256 of the `cpo/policy` message of this version and
    session, the only policy executors load (training/announcements.py).

Float32MultiArray messages (conversions.encode_batch / decode_batch):

`batch/state` (sim_bridge -> executor): N rows of state_fields(); every value
    finite, terminated and truncated 0 or 1, seq an integer in [0, 2**24) equal on every row,
    N the executor's num_envs.
`batch/cmd_vel` (executor -> sim_bridge): N rows of linear_x, angular_z (finite) and seq.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from cpo_ros.validation import InvalidField

SEQ_MODULO = 2 ** 24
MAX_SESSION = 2 ** 31
MAX_NAME_CHARS = 256
MAX_EXECUTORS = 4096
MAX_VERSION = 2 ** 62


@dataclass(frozen=True)
class Field:
    """One field of a wire message: dtype kind, shape (None: checked elsewhere) and range."""

    name: str
    kinds: str
    """numpy dtype kinds accepted: 'iu' integers, 'f' floats, 'b' bool, 'U' str."""
    shape: tuple | None = ()
    low: float | None = None
    high: float | None = None
    doc: str = ''

    def check(self, arrays: dict[str, np.ndarray], message: str) -> np.ndarray:
        """Return the field's array from arrays; InvalidField when absent or out of schema."""
        if self.name not in arrays:
            raise InvalidField(self.name, f'{message} lacks {self.name}')
        value = np.asarray(arrays[self.name])
        if value.dtype.kind not in self.kinds:
            raise InvalidField(self.name, f'{message} {self.name} has dtype {value.dtype}, '
                               f'need kind {self.kinds!r}')
        if self.shape is not None and value.shape != self.shape:
            raise InvalidField(self.name, f'{message} {self.name} has shape {value.shape}, '
                               f'need {self.shape}')
        if value.dtype.kind == 'U':
            lengths = np.char.str_len(value) if value.size else np.zeros(0)
            if np.any(lengths > MAX_NAME_CHARS):
                raise InvalidField(self.name, f'{message} {self.name}: names of at most '
                                   f'{MAX_NAME_CHARS} characters')
        elif value.size:
            if value.dtype.kind == 'f' and not np.all(np.isfinite(value)):
                raise InvalidField(self.name, f'{message} {self.name} holds non-finite values')
            if (self.low is not None and np.min(value) < self.low) or (
                    self.high is not None and np.max(value) > self.high):
                raise InvalidField(self.name, f'{message} {self.name} out of range '
                                   f'[{self.low}, {self.high}]')
        return value


POLICY_FIELDS = (
    Field('version', 'iu', (), 0, MAX_VERSION, 'policy version: one per update'),
    Field('session', 'iu', (), 1, MAX_SESSION, "the learner process's session: a new one "
          'after a restart or a re-publication'),
    Field('obs_clip', 'f', (), 1e-6, 1e9, 'the observation normaliser clip'),
    Field('task', 'U', (), doc="the learner's task: its class and a digest of its parameters "
          '(ros.params.task_identity); an executor of another task refuses the policy'),
)
"""The policy's own fields; the weights are checked by networks.validate_policy_arrays."""

STATUS_FIELDS = (
    Field('version', 'iu', (), 0, MAX_VERSION, 'the version the learner gathers samples of'),
    Field('session', 'iu', (), 1, MAX_SESSION, "the learner's session"),
    Field('needed', 'iu', (), 1, None, 'samples per iteration'),
    Field('collected', 'iu', (), 0, None, 'samples of this version so far'),
    Field('more', 'iu', (), 0, None, 'samples wanted beyond what expected executors bring'),
    Field('executors', 'U', None, doc='executor ids that delivered this iteration'),
    Field('shares', 'iu', None, 0, None, "each executor's samples"),
    Field('policy_digest', 'u', (32,), 0, 255, 'SHA-256 of the cpo/policy message the learner '
          'published for this version and session'),
)

CHUNK_META_FIELDS = (
    Field('executor_id', 'U', (), doc="the executor's id (non-empty)"),
    Field('executor_session', 'iu', (), 0, None, "the executor process's session"),
    Field('chunk_seq', 'iu', (), 0, None, 'chunk counter of that session'),
    Field('samples', 'iu', (), 1, None, 'T * N'),
    Field('policy_version', 'iu', (), 0, MAX_VERSION, 'the policy that sampled the chunk'),
)
"""A chunk's fields beyond the rollout arrays (buffer.ROLLOUT_KEYS) and episode_end."""

CHUNK_FLAG_FIELDS = (
    Field('late', 'b', None, doc='(T, N): the control step came late (realtime sampling)'),
    Field('intervened', 'b', None, doc='(T, N): the shield replaced the command'),
    Field('dropped_samples', 'iu', (), 0, None, 'steps the shield replaced that the chunk '
          'leaves out (shield_samples drop)'),
)
"""Optional chunk fields of a robot's executor, counted per iteration in progress.csv."""


def check_fields(arrays: dict[str, np.ndarray], fields: tuple[Field, ...],
                 message: str) -> dict[str, np.ndarray]:
    """Return {name: array} of fields after checking each; InvalidField on the first bad one."""
    if not isinstance(arrays, dict):
        raise InvalidField('payload', f'{message} is not a set of named arrays')
    return {f.name: f.check(arrays, message) for f in fields}


def check_policy(arrays: dict[str, np.ndarray], task: str | None = None
                 ) -> tuple[int, int, float]:
    """Return (version, session, obs_clip) of a `cpo/policy` message; weights checked later.

    task: the receiver's task identity; a policy of another task is refused (InvalidField).
    """
    values = check_fields(arrays, POLICY_FIELDS, 'policy')
    if task is not None and str(values['task']) != task:
        raise InvalidField('task', f"policy of task '{values['task']}', this node runs "
                           f"'{task}' (the task's class and a digest of its parameters): "
                           f'set the same task and task parameters for every node')
    return int(values['version']), int(values['session']), float(values['obs_clip'])


def check_status(arrays: dict[str, np.ndarray]) -> dict[str, object]:
    """Return a `cpo/iteration` status as Python values; InvalidField naming a bad field."""
    values = check_fields(arrays, STATUS_FIELDS, 'iteration status')
    names, shares = values['executors'], values['shares']
    if names.ndim != 1 or not 1 <= names.size <= MAX_EXECUTORS:
        raise InvalidField('executors', f'shape {names.shape}: need 1 to {MAX_EXECUTORS} names')
    if shares.shape != names.shape:
        raise InvalidField('shares', f'shape {shares.shape}, need {names.shape} (one per '
                           f'executor)')
    out: dict[str, object] = {k: int(values[k]) for k in
                              ('version', 'session', 'needed', 'collected', 'more')}
    out['counted'] = dict(zip([str(n) for n in names], [int(s) for s in shares], strict=True))
    out['policy_digest'] = values['policy_digest'].astype(np.uint8).tobytes()
    return out


def check_chunk(chunk: dict[str, np.ndarray], obs_dim: int, act_dim: int,
                num_costs: int = 1) -> tuple[str, int, int, int, int]:
    """Return (executor id, session, chunk seq, samples, version) of a valid rollout chunk.

    Checks everything an update reads: the rollout arrays (buffer.validate_rollout), the
    chunk's own fields and episode_end, so that a chunk that passes cannot fail the merge or
    the update for its form.
    """
    from cpo_ros.algo.buffer import validate_rollout

    if not isinstance(chunk, dict):
        raise InvalidField('payload', 'rollout chunk is not a set of named arrays')
    validate_rollout(chunk, obs_dim, act_dim, num_costs)
    meta = check_fields(chunk, CHUNK_META_FIELDS, 'rollout chunk')
    executor = str(meta['executor_id'])
    if not executor:
        raise InvalidField('executor_id', 'rollout chunk executor_id is empty')
    t, n = chunk['reward'].shape
    if int(meta['samples']) != t * n:
        raise InvalidField('samples', f'rollout chunk says {int(meta["samples"])} samples, '
                           f'holds {t * n}')
    end = Field('episode_end', 'iu', None, 0, None).check(chunk, 'rollout chunk')
    episodes = len(chunk['episode_length'])
    if end.shape != (episodes, 2):
        raise InvalidField('episode_end', f'shape {end.shape}, need ({episodes}, 2): the step '
                           f'and env of each finished episode')
    for flag in CHUNK_FLAG_FIELDS:
        if flag.name in chunk:
            value = flag.check(chunk, 'rollout chunk')
            if flag.shape is None and value.shape != (t, n):
                raise InvalidField(flag.name, f'rollout chunk {flag.name} has shape '
                                   f'{value.shape}, need ({t}, {n})')
    if episodes and (end[:, 0].max() >= t or end[:, 1].max() >= n):
        raise InvalidField('episode_end', f'a step or env outside the chunk ({t} x {n})')
    if episodes:
        # Each end must be a step the chunk marks as an episode end.
        done = chunk['terminated'] | chunk['truncated']
        if not np.all(done[end[:, 0], end[:, 1]]):
            raise InvalidField('episode_end', 'names a step that ends no episode')
    return (executor, int(meta['executor_session']), int(meta['chunk_seq']), t * n,
            int(meta['policy_version']))


# The dtypes the update computes in: a chunk of any float type is converted to these once it
# passed the checks, so that no dtype can fail the update (torch refuses float64 samples
# against float32 weights).
CHUNK_DTYPES = {'obs': np.float32, 'u': np.float32, 'logp': np.float32, 'reward': np.float32,
                'cost': np.float32, 'final_obs': np.float32, 'last_obs': np.float32,
                'terminated': np.bool_, 'truncated': np.bool_, 'episode_return': np.float64,
                'episode_cost': np.float64, 'episode_length': np.int64,
                'episode_end': np.int64, 'policy_version': np.int64, 'late': np.bool_,
                'intervened': np.bool_, 'dropped_samples': np.int64}


def canonical_chunk(chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return a checked chunk with every array in the dtype the update computes in.

    InvalidField for a finite value beyond that dtype's range (a float64 1e300 is inf in
    float32): checked here, so that it never reaches the update.
    """
    out = {}
    for k, v in chunk.items():
        if k in CHUNK_DTYPES:
            with np.errstate(over='ignore'):
                v = np.asarray(v, CHUNK_DTYPES[k])
            if v.dtype.kind == 'f' and not np.all(np.isfinite(v)):
                raise InvalidField(k, f'rollout chunk {k} holds values beyond the range of '
                                   f'{v.dtype}')
        out[k] = v
    return out


LOGP_SAMPLES = 32
LOGP_TOLERANCE = (1e-3, 1e-4)
"""(absolute, relative): float32 rounding between two copies of one policy stays far below."""
_rng = np.random.default_rng()


def check_logp(chunk: dict[str, np.ndarray], actor, version: int) -> None:
    """Raise InvalidField unless a random sample of the chunk's logp fits actor's policy.

    actor: the learner's copy (networks.NumpyActor) of policy `version` as it was published,
    None when it published no such version. The executors act with the same class on the
    policy rebuilt from the wire, so a chunk of that policy agrees to float32 rounding; a
    chunk from any other policy (another obs_clip, forged weights, a forged version number)
    does not. The sample is drawn afresh for every chunk, so a forger cannot tell which
    samples are checked.
    """
    if actor is None:
        raise InvalidField('policy_version', f'version {version} was never published by this '
                           f'learner')
    obs, u, logp = chunk['obs'], chunk['u'], chunk['logp']
    t, n = logp.shape
    flat = _rng.choice(t * n, size=min(LOGP_SAMPLES, t * n), replace=False)
    rows, cols = np.divmod(flat, n)
    expected = actor.log_prob(obs[rows, cols], u[rows, cols])
    got = logp[rows, cols].astype(np.float64)
    atol, rtol = LOGP_TOLERANCE
    if not np.all(np.abs(got - expected) <= atol + rtol * np.abs(expected)):
        worst = float(np.max(np.abs(got - expected)))
        raise InvalidField('logp', f'the log-probabilities differ from those of policy '
                           f'version {version} by up to {worst:.3g}: sampled by another policy')


class BatchRows:
    """The row checks of one batch/state or batch/cmd_vel layout, its flag columns found once.

    `check` is check_batch_rows in one vectorised pass over both episode flags (adjacent in
    every state layout: one view, no copy).
    """

    def __init__(self, fields: tuple[str, ...], num_envs: int | None = None) -> None:
        self.num_envs = num_envs
        flags = [(name, fields.index(name)) for name in ('terminated', 'truncated')
                 if name in fields]
        self.flag_names = tuple(name for name, _ in flags)
        columns = [column for _, column in flags]
        self._flags: slice | list[int] | None = columns or None
        if columns and columns == list(range(columns[0], columns[0] + len(columns))):
            self._flags = slice(columns[0], columns[-1] + 1)

    def check(self, array: np.ndarray) -> None:
        """Check a decoded array (without seq): N rows, every flag 0 or 1; InvalidField."""
        if self.num_envs is not None and array.shape[0] != self.num_envs:
            raise InvalidField('env', f'{array.shape[0]} rows, this node runs {self.num_envs} '
                               f'robots')
        if self._flags is not None:
            flags = array[:, self._flags]
            ok = (flags == 0.0) | (flags == 1.0)
            if not ok.all():
                # The first flag with a bad value, in field order.
                name = self.flag_names[int(np.flatnonzero(~ok.all(axis=0))[0])]
                raise InvalidField(name, f'{name} must be 0 or 1')


def check_batch_rows(array: np.ndarray, fields: tuple[str, ...], num_envs: int | None
                     ) -> None:
    """Check a decoded batch/state or batch/cmd_vel array (without seq) against its schema."""
    BatchRows(tuple(fields), num_envs).check(array)


def check_seq(seq: float) -> int:
    """Return a batch message's seq as int; InvalidField unless an integer in [0, 2**24)."""
    if not (0.0 <= seq < SEQ_MODULO) or seq != int(seq):
        raise InvalidField('seq', f'{seq!r} is not an integer in [0, {SEQ_MODULO})')
    return int(seq)


# The batched lock-step layout: the one definition the sim bridge (writing) and the policy
# executor (reading) share.
_FINAL_FIELDS = ('final_x', 'final_y', 'final_yaw', 'final_v', 'final_w')


def state_fields(sensors: tuple[str, ...] = (),
                 costs: tuple[str, ...] = ('cost',)) -> tuple[str, ...]:
    """Return the batch/state fields of a task with these sensor readings and cost columns."""
    return (('x', 'y', 'yaw', 'v', 'w', 'reward', *costs, 'terminated', 'truncated')
            + tuple(sensors) + _FINAL_FIELDS + tuple(f'final_{s}' for s in sensors) + ('seq',))


STATE_FIELDS = state_fields()


class StateLayout:
    """The batch/state columns of a task, from its declared sensors and costs.

    The one definition the sim bridge (writing) and the policy executor (reading) share.
    """

    def __init__(self, sensor_labels: tuple[str, ...], cost_names: tuple[str, ...]) -> None:
        self.sensor_labels = tuple(sensor_labels)
        self.cost_names = tuple(cost_names)
        self.cost_fields = (('cost',) if len(self.cost_names) == 1
                            else tuple(f'cost_{name}' for name in self.cost_names))
        self.fields = state_fields(self.sensor_labels, self.cost_fields)
        col = {f: i for i, f in enumerate(self.fields)}
        k = len(self.sensor_labels)
        after_flags, after_final = col['truncated'] + 1, col['final_w'] + 1
        self.columns = {
            'pose': slice(col['x'], col['x'] + 3), 'twist': slice(col['v'], col['v'] + 2),
            'reward': slice(col['reward'], col['reward'] + 1),
            'cost': slice(col[self.cost_fields[0]],
                          col[self.cost_fields[0]] + len(self.cost_fields)),
            'terminated': slice(col['terminated'], col['terminated'] + 1),
            'truncated': slice(col['truncated'], col['truncated'] + 1),
            'sensors': slice(after_flags, after_flags + k),
            'final_pose': slice(col['final_x'], col['final_x'] + 3),
            'final_twist': slice(col['final_v'], col['final_v'] + 2),
            'final_sensors': slice(after_final, after_final + k)}

    @classmethod
    def of(cls, task: Any) -> 'StateLayout':
        """Return the layout of a task (cpo_ros.tasks.base.Task)."""
        return cls(task.sensor_labels, task.cost_names)


CMD_FIELDS = ('linear_x', 'angular_z', 'seq')
