"""Learning on the robot, free of ROS: one control step at a time on measured states.

`RobotSampler.control()` runs once per control period with the newest measured pose, twist
and sensor readings (or a reason to stand still) and returns the command to send through the
shield, plus a rollout chunk when one is complete. The node (nodes/robot_executor.py) only
converts messages and publishes.

Per control step, in an episode:

- the transition of the action sent at the previous step is completed on the MEASURED state:
  the next observation, the reward and the costs come from the task (the same functions the
  simulator calls), evaluated on the odometry the robot reports now;
- the next action is sampled from the stochastic policy and its log-probability kept.

Rules that keep the samples valid for an on-policy update:

- Truncation, never termination, for every cut that is not the task's own: the episode
  length, an operator pause, a latched e-stop, a stale or refused pose, a lost learner. The
  action in flight when the cut comes is dropped (its next state was never measured); the last
  complete transition becomes the episode's end, truncated, bootstrapped from the observation
  at which the dropped action was chosen. A cut episode is not counted in the episode means
  (J_C would be biased low by a short episode); its samples are kept.
- The shield (the monitor in gate mode) may replace a command. `shield_samples` decides:
  `keep` (default): the sample records the action the policy drew, with its log-probability
  under the policy; the shield is part of the environment the policy acts in, so the sample is
  exactly on-policy for the shielded robot (its reward and cost are those the shielded robot
  measured). `cost`: as keep, and each replaced step adds `intervention_cost` to the first
  constraint's cost (the learner is taught to stay away from the boundary where the shield
  acts; the episode cost includes it). `drop`: a replaced step is not a sample; the stream is
  cut there (truncated, bootstrapped) and starts again at the next free step. The episode's
  return and cost always count every step the robot made.
- A control step that came later than control_dt * (1 + late_tolerance) after the previous
  one is counted and flagged (`late` in the chunk): its transition lasted longer than the
  policy was trained for.
- A chunk holds samples of one policy version only. It ends at an episode's end (after
  `chunk_episodes` episodes) or at a cut (a newer policy arriving mid-chunk is one: that
  part still goes out, see set_policy); then the sampler waits for a newer policy, or for
  `resume()` when the learner wants more of this version. Between episodes the reset
  behaviour drives to a start pose drawn from the task's reset distribution (no samples):
  a learner updating meanwhile costs no robot time.
"""

from dataclasses import dataclass, field
import math
from typing import Any, Protocol

import numpy as np

from cpo_ros.algo.networks import GaussianPolicy, NumpyActor
from cpo_ros.training.worker import policy_news
from cpo_ros.validation import check_range, InvalidField

SHIELD_SAMPLES = ('keep', 'cost', 'drop')
"""What a step whose command the shield replaced becomes (see the module docstring)."""


class RobotTask(Protocol):
    """What the sampler needs of a task (the public task interface, vectorised over N)."""

    cost_names: tuple[str, ...]
    max_episode_steps: int

    def reset(self, index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return start poses (len(index), 3) drawn from the task's reset distribution."""

    def observation(self, pose: np.ndarray, twist: np.ndarray,
                    readings: np.ndarray) -> np.ndarray:
        """Return (N, obs_dim) observations."""

    def step(self, pose: np.ndarray, twist: np.ndarray, rng: np.random.Generator) -> Any:
        """Return a StepResult: reward (N,), costs (N, m), terminated (N,) or None."""


@dataclass(frozen=True)
class RealtimeConfig:
    """Settings of realtime sampling on a robot."""

    control_dt: float = 0.1
    """Control period [s] on the ROS clock (the robot profile's)."""
    late_tolerance: float = 0.5
    """A step later than control_dt * (1 + this) after the previous one is flagged late."""
    chunk_episodes: int = 1
    """Episodes per rollout chunk (a chunk also ends at a cut)."""
    shield_samples: str = 'keep'
    """keep | cost | drop: what a step whose command the shield replaced becomes."""
    intervention_cost: float = 1.0
    """shield_samples cost: added to the first constraint's cost per replaced step."""
    max_linear_velocity: float = 0.22
    """Speed limit of the reset behaviour [m/s]."""
    max_angular_velocity: float = 2.84
    """Yaw-rate limit of the reset behaviour [rad/s]."""
    reset_position_tolerance: float = 0.05
    """The reset behaviour has arrived within this distance of the start pose [m]."""
    reset_yaw_tolerance: float = 0.2
    """... and within this heading [rad]."""
    reset_timeout_s: float = 60.0
    """A reset that has not arrived after this long [s, ROS clock] starts the episode where the
    robot stands (counted)."""

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        check_range('control_dt', self.control_dt, 0.0, 10.0, low_open=True)
        check_range('late_tolerance', self.late_tolerance, 0.0, 100.0)
        check_range('chunk_episodes', self.chunk_episodes, 1, 10**6, integer=True)
        if self.shield_samples not in SHIELD_SAMPLES:
            raise InvalidField('shield_samples', f'{self.shield_samples!r}: choose one of '
                               f'{list(SHIELD_SAMPLES)}')
        check_range('intervention_cost', self.intervention_cost, 0.0, 1e6)
        check_range('reset_position_tolerance', self.reset_position_tolerance, 0.0, 100.0,
                    low_open=True)
        check_range('reset_yaw_tolerance', self.reset_yaw_tolerance, 0.0, math.pi,
                    low_open=True)
        check_range('reset_timeout_s', self.reset_timeout_s, 0.0, 1e6, low_open=True)


@dataclass
class Measured:
    """The robot's state at a control step, as its sensors report it."""

    pose: np.ndarray
    """(3,) x, y, yaw in the task frame."""
    twist: np.ndarray
    """(2,) forward velocity, yaw rate."""
    readings: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """(k,) the task's sensor readings."""
    interventions: int = 0
    """The shield's running count of replaced commands (its `shield/interventions`)."""


@dataclass
class EpisodeEnd:
    """An episode that ended at this step (published live, counted in diagnostics)."""

    ret: float
    costs: np.ndarray
    length: int
    cut: str | None
    """None for a full episode (the task's length or termination), else why it was cut."""


@dataclass
class Tick:
    """What one control step gives the node."""

    cmd: np.ndarray
    """(2,) velocity command for the shield's input (zero when standing still)."""
    phase: str
    """'wait' (no usable policy), 'reset', 'episode' or 'stopped'."""
    chunk: dict[str, np.ndarray] | None = None
    episodes: list[EpisodeEnd] = field(default_factory=list)


def episodes_per_chunk(requested: int, steps_per_iteration: int, episode_steps: int,
                   control_dt: float, iteration_timeout_s: float) -> int:
    """Return episodes per chunk: requested, or (0) those that fill an iteration in time.

    Time: an episode and its reset take about 1.5 episode lengths of the ROS clock, never
    less wall time (real_time_factor >= 1); a chunk should take at most half the learner's
    iteration_timeout_s, so an iteration never waits on the robot beyond it.
    """
    if requested:
        return requested
    fill = math.ceil(steps_per_iteration / episode_steps)
    in_time = int(0.5 * iteration_timeout_s // (1.5 * episode_steps * control_dt))
    return max(1, min(fill, in_time))


def go_to_pose(pose: np.ndarray, target: np.ndarray, cfg: RealtimeConfig
               ) -> tuple[np.ndarray, bool]:
    """Return (command, arrived) of a turn-drive-turn controller from pose to target."""
    dx, dy = target[0] - pose[0], target[1] - pose[1]
    dist = math.hypot(dx, dy)
    if dist > cfg.reset_position_tolerance:
        err = _wrap(math.atan2(dy, dx) - pose[2])
        # Turn in place first, then drive while correcting the heading.
        v = 0.0 if abs(err) > 0.4 else min(cfg.max_linear_velocity, 1.0 * dist) * math.cos(err)
        w = float(np.clip(2.0 * err, -cfg.max_angular_velocity, cfg.max_angular_velocity))
        return np.array([v, w]), False
    err = _wrap(target[2] - pose[2])
    if abs(err) <= cfg.reset_yaw_tolerance:
        return np.zeros(2), True
    w = float(np.clip(2.0 * err, -cfg.max_angular_velocity, cfg.max_angular_velocity))
    return np.array([0.0, w]), False


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


@dataclass
class _Pending:
    obs: np.ndarray
    u: np.ndarray
    logp: float
    sent_at: float
    interventions: int


class RobotSampler:
    """Sample a stochastic policy on one robot in real time; cut rollouts into chunks."""

    def __init__(self, task: RobotTask, obs_dim: int, act_dim: int, cfg: RealtimeConfig,
                 seed: int = 0) -> None:
        cfg.validate()
        self.task, self.cfg = task, cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.num_costs = len(task.cost_names)
        self.max_steps = int(task.max_episode_steps)
        self.rng = np.random.default_rng(seed)
        self.task_rng = np.random.default_rng(seed + 1)
        self.policy: NumpyActor | None = None
        self.version, self.session = -1, 0
        self._spent = -1  # the newest version whose chunk went out
        self.phase = 'wait'
        self._target: np.ndarray | None = None
        self._reset_started = 0.0
        self._pending: _Pending | None = None
        self._outbox: dict[str, np.ndarray] | None = None
        """A chunk ended outside a control step (set_policy), sent at the next one."""
        self._last_tick: float | None = None
        self._new_chunk()
        self._new_episode()
        self.counts = dict.fromkeys((
            'samples', 'late_steps', 'interventions', 'dropped_samples', 'episodes',
            'cut_episodes', 'resets', 'reset_timeouts', 'discarded_samples', 'chunks',
            'stops'), 0)

    # -- policy ---------------------------------------------------------------------------------
    def set_policy(self, arrays: dict[str, np.ndarray]) -> bool:
        """Load a policy from its arrays (with 'version', 'session'); False for an older one.

        A newer version arriving while a chunk is half sampled cuts the episode (the robot
        resets and starts afresh) and ends the chunk (it holds one version). That part goes
        out at the next control step all the same: the learner drops it as stale, but learns
        from it that this robot samples and waits for it from then on (training/fleet.py).
        Discarded silently, a robot slower than the simulators beside it would never be heard
        of, and they would fill every iteration before it completes a chunk.
        """
        news = policy_news(arrays, self.version, self.session, self.policy is not None)
        if news is None:
            return False
        version, session, restarted = news
        policy = GaussianPolicy.from_arrays(arrays, self.obs_dim, self.act_dim)
        self._check_reach(policy)
        actor = NumpyActor(policy)
        if version != self.version and (self._rows or self._pending is not None):
            if self.phase == 'episode':
                self._cut('a newer policy arrived')
            self._pending = None
            self.counts['discarded_samples'] += len(self._rows)
            if self._rows and version > self.version and self._outbox is None:
                self._outbox = self._take_chunk()
            else:
                self._new_chunk()
        self.policy, self.version, self.session = actor, version, session
        if restarted:
            self._spent = min(self._spent, version - 1)  # its rollout is lost: sample again
        return True

    def _check_reach(self, policy: GaussianPolicy) -> None:
        """Raise InvalidField unless the policy's action range fits this robot's limits.

        The learner sets the range from its robot profile: with another profile the policy
        would command beyond this robot's limits, and the gate's clipping would leave samples
        that claim actions the robot never drove.
        """
        reach = (policy.action_bias.abs() + policy.action_scale.abs()).numpy().astype(float)
        limits = np.array([self.cfg.max_linear_velocity, self.cfg.max_angular_velocity])
        if np.any(reach > limits * (1 + 1e-3) + 1e-6):
            raise InvalidField('action_scale', f'the policy acts up to {reach[0]:g} m/s and '
                               f'{reach[1]:g} rad/s, this robot up to {limits[0]:g} m/s and '
                               f'{limits[1]:g} rad/s: give the learner the same robot profile')

    @property
    def can_sample(self) -> bool:
        """Return whether a policy is loaded whose chunk has not gone out yet."""
        return self.policy is not None and self.version > self._spent

    @property
    def waiting(self) -> bool:
        """Return whether the chunk of the current version went out (a newer one is due)."""
        return self.policy is not None and not self.can_sample

    def resume(self) -> None:
        """Sample another chunk of the current version (the learner wants more)."""
        if self.waiting:
            self._spent = self.version - 1

    # -- the control step -----------------------------------------------------------------------
    def control(self, now: float, measured: Measured | None, stop: str | None = None) -> Tick:
        """Run one control step at ROS time `now`; measured None means no usable pose.

        stop names why the robot must stand still (pause, e-stop, lost learner); a stop or a
        missing pose cuts an episode in progress.
        """
        tick = self._control(now, measured, stop)
        if tick.chunk is None and self._outbox is not None:
            tick.chunk, self._outbox = self._outbox, None
        return tick

    def _control(self, now: float, measured: Measured | None, stop: str | None) -> Tick:
        late = (self._last_tick is not None
                and now - self._last_tick > self.cfg.control_dt * (1.0 + self.cfg.late_tolerance))
        self._last_tick = now
        if measured is None and stop is None:
            stop = 'no usable pose'
        if stop is not None:
            return self._stop(stop)
        if self.phase in ('stopped', 'wait') or self._target is None and self.phase == 'reset':
            self._begin_reset(now)
        if self.phase == 'reset':
            return self._reset_step(now, measured)
        return self._episode_step(now, measured, late)

    def _stop(self, reason: str) -> Tick:
        tick = Tick(np.zeros(2), 'stopped')
        if self.phase == 'episode':
            tick.episodes = self._cut(reason)
            tick.chunk = self._take_chunk() if self._rows else None
        if self.phase != 'stopped':
            self.counts['stops'] += 1
        self.phase = 'stopped'
        self._target = None
        return tick

    def _begin_reset(self, now: float) -> None:
        self.phase = 'reset'
        self._target = np.asarray(self.task.reset(np.zeros(1, np.int64), self.task_rng),
                                  np.float64).reshape(3)
        self._reset_started = now
        self.counts['resets'] += 1

    def _reset_step(self, now: float, m: Measured) -> Tick:
        cmd, arrived = go_to_pose(m.pose, self._target, self.cfg)
        if not arrived and now - self._reset_started > self.cfg.reset_timeout_s:
            arrived = True
            self.counts['reset_timeouts'] += 1
        if not arrived:
            return Tick(cmd, 'reset')
        if not self.can_sample:
            return Tick(np.zeros(2), 'wait')  # at the start pose, waiting for a policy
        self.phase = 'episode'
        self._new_episode()
        obs = self._observe(m)
        return Tick(self._act(obs, now, m), 'episode')

    def _episode_step(self, now: float, m: Measured, late: bool) -> Tick:
        tick = Tick(np.zeros(2), 'episode')
        p = self._pending
        if p is None:  # cannot happen in an episode; stand still and reset to be safe
            self.phase = 'stopped'
            return tick
        self._pending = None
        obs = self._observe(m)
        result = self.task.step(m.pose[None], m.twist[None], self.task_rng)
        reward = float(np.asarray(result.reward, np.float64).reshape(-1)[0])
        costs = np.asarray(result.costs, np.float64).reshape(self.num_costs).copy()
        term = result.terminated is not None and bool(np.asarray(result.terminated).reshape(-1)[0])
        intervened = m.interventions > p.interventions
        self.counts['late_steps'] += int(late)
        self.counts['interventions'] += int(intervened)
        if intervened and self.cfg.shield_samples == 'cost':
            costs[0] += self.cfg.intervention_cost
        ep = self._ep
        ep['ret'] += reward
        ep['costs'] += costs
        ep['length'] += 1
        trunc = not term and ep['length'] >= self.max_steps
        if intervened and self.cfg.shield_samples == 'drop':
            self.counts['dropped_samples'] += 1
            self._chunk_dropped += 1
            self._truncate_last(p.obs)
        else:
            self._rows.append((p.obs, p.u, p.logp, reward, costs, term, trunc,
                               obs if (term or trunc) else np.zeros_like(obs), late, intervened))
            ep['rows'] += 1
            self.counts['samples'] += 1
        if term or trunc:
            tick.episodes.append(self._end_episode(None))
            self._chunk_episodes += 1
            if self._chunk_episodes >= self.cfg.chunk_episodes and self._rows:
                tick.chunk = self._take_chunk()
            self._begin_reset(now)
            tick.phase = 'reset'
            tick.cmd = go_to_pose(m.pose, self._target, self.cfg)[0]
            return tick
        tick.cmd = self._act(obs, now, m)
        return tick

    # -- bookkeeping ----------------------------------------------------------------------------
    def _observe(self, m: Measured) -> np.ndarray:
        readings = np.asarray(m.readings, np.float64).reshape(1, -1)
        obs = np.asarray(self.task.observation(m.pose[None], m.twist[None], readings),
                         np.float32).reshape(-1)
        if obs.shape != (self.obs_dim,):
            raise InvalidField('observation', f'the task gave shape {obs.shape}, the policy '
                               f'takes ({self.obs_dim},)')
        return obs

    def _act(self, obs: np.ndarray, now: float, m: Measured) -> np.ndarray:
        u, logp, action = self.policy.act(obs[None], False, self.rng)
        self._pending = _Pending(obs, u[0].astype(np.float32), float(logp[0]), now,
                                 m.interventions)
        return np.asarray(action[0], np.float64)

    def _truncate_last(self, final_obs: np.ndarray) -> None:
        """End the episode's stream at its last recorded sample, bootstrapped from final_obs."""
        if not self._ep['rows']:
            return
        row = list(self._rows[-1])
        if row[5] or row[6]:
            return
        row[6], row[7] = True, final_obs
        self._rows[-1] = tuple(row)

    def _cut(self, reason: str) -> list[EpisodeEnd]:
        """Cut the episode in progress: drop the action in flight, truncate, bootstrap."""
        p = self._pending
        self._pending = None
        if p is not None:
            self._truncate_last(p.obs)
        return [self._end_episode(reason, report=True)]

    def _end_episode(self, cut: str | None, report: bool = False) -> EpisodeEnd:
        ep = self._ep
        end = EpisodeEnd(float(ep['ret']), ep['costs'].copy(), int(ep['length']), cut)
        if cut is None:
            self.counts['episodes'] += 1
            # Its end is where the fleet's merge may cut a chunk short (episode_end).
            self._episodes.append((end, max(len(self._rows) - 1, 0)))
        else:
            self.counts['cut_episodes'] += 1
        self._new_episode()
        self.phase = 'stopped' if cut is not None else self.phase
        return end

    def _new_episode(self) -> None:
        self._ep = {'ret': 0.0, 'costs': np.zeros(self.num_costs),
                    'length': 0, 'rows': 0}

    def _new_chunk(self) -> None:
        self._rows: list[tuple] = []
        self._episodes: list[tuple[EpisodeEnd, int]] = []
        self._chunk_episodes = 0
        self._chunk_dropped = 0

    def _take_chunk(self) -> dict[str, np.ndarray]:
        """Return the chunk so far as a rollout (T, 1, ...) and wait for the next policy."""
        rows, m = self._rows, self.num_costs
        col = list(zip(*rows, strict=True))
        t = len(rows)
        cost = np.asarray(col[4], np.float32).reshape(t, 1, m)
        episode_cost = np.asarray([e.costs for e, _ in self._episodes],
                                  np.float64).reshape(-1, m)
        chunk = {
            'obs': np.asarray(col[0], np.float32).reshape(t, 1, -1),
            'u': np.asarray(col[1], np.float32).reshape(t, 1, -1),
            'logp': np.asarray(col[2], np.float32).reshape(t, 1),
            'reward': np.asarray(col[3], np.float32).reshape(t, 1),
            'cost': cost[:, :, 0] if m == 1 else cost,
            'terminated': np.asarray(col[5], bool).reshape(t, 1),
            'truncated': np.asarray(col[6], bool).reshape(t, 1),
            'final_obs': np.asarray(col[7], np.float32).reshape(t, 1, -1),
            'late': np.asarray(col[8], bool).reshape(t, 1),
            'intervened': np.asarray(col[9], bool).reshape(t, 1),
            'episode_return': np.asarray([e.ret for e, _ in self._episodes], np.float64),
            'episode_cost': episode_cost[:, 0] if m == 1 else episode_cost,
            'episode_length': np.asarray([e.length for e, _ in self._episodes], np.int64),
            'episode_end': np.asarray([(i, 0) for _, i in self._episodes],
                                      np.int64).reshape(-1, 2),
            'policy_version': np.asarray(self.version, np.int64),
            # Replaced steps left out of this chunk (shield_samples drop): progress.csv counts
            # them with the samples the learner uses.
            'dropped_samples': np.asarray(self._chunk_dropped, np.int64),
        }
        # Every chunk ends at an episode's end or a cut: the last row is terminal or truncated.
        chunk['last_obs'] = chunk['final_obs'][-1].copy()
        self._spent = self.version
        self.counts['chunks'] += 1
        self._new_chunk()
        return chunk

