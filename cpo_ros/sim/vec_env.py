"""One vectorised env that runs any task on N MuJoCo point robots, and a Gymnasium env over it.

The task (cpo_ros.tasks) says where episodes start, what is observed, rewarded and costs; this
module steps the robots, applies domain randomisation, counts steps, truncates at the task's
episode length and resets ended episodes. It never names a task.
"""

from dataclasses import dataclass, replace
import inspect
import traceback
from typing import Any

import gymnasium as gym
import numpy as np

from cpo_ros.sim.arena import ArenaSpec
from cpo_ros.sim.range_sensor import RangeSensor, RangeSensorSpec
from cpo_ros.sim.robot import PointRobots, RobotConfig
from cpo_ros.tasks.base import check_observation, check_start, check_step, Task
from cpo_ros.tasks.registry import DEFAULT_TASK, TaskRuntimeError
from cpo_ros.tasks.scan import resample
from cpo_ros.validation import check_range


@dataclass(frozen=True)
class DomainRandomization:
    """Per-episode randomisation of the robot for sim-to-real transfer (all off by default)."""

    mass_scale: tuple[float, float] = (1.0, 1.0)
    """Range of the factor on the robot's mass."""
    gain_scale: tuple[float, float] = (1.0, 1.0)
    """Range of the factor between commanded and achieved velocity."""
    max_latency_steps: int = 0
    """Commands act after 0..max_latency_steps control periods (drawn per episode)."""
    position_noise: float = 0.0
    """Standard deviation of the odometry position noise [m]."""
    yaw_noise: float = 0.0
    """Standard deviation of the odometry heading noise [rad]."""
    velocity_noise: float = 0.0
    """Standard deviation of the odometry velocity noise [m/s, rad/s]."""

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        for name in ('mass_scale', 'gain_scale'):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi <= 10.0:
                raise ValueError(f'{name} = {(lo, hi)} is out of range: need 0 < low <= high '
                                 f'<= 10')
        check_range('max_latency_steps', self.max_latency_steps, 0, 100, integer=True)
        for name in ('position_noise', 'yaw_noise', 'velocity_noise'):
            check_range(name, getattr(self, name), 0.0, 100.0)

    @property
    def noisy(self) -> bool:
        """Return whether odometry noise is on."""
        return max(self.position_noise, self.yaw_noise, self.velocity_noise) > 0.0


class VecTaskEnv:
    """num_envs episodes of a task stepped together in one MuJoCo model, with auto-reset.

    step() returns (obs, reward, cost, terminated, truncated, info); cost is (N,) with one
    constraint and (N, m) with several (task.cost_names). Envs whose episode ended are reset in
    the same call: obs holds their new first observation, info['final_obs'], final_pose,
    final_twist and final_sensors the last state of the episode that ended; the task's own
    per-step figures are in info too. episodic False (a robot stand-in): never truncate.
    """

    act_dim = 2

    def __init__(self, task: Task, robot: RobotConfig | None = None, seed: int = 0,
                 autoreset: bool = True,
                 randomization: DomainRandomization | None = None,
                 episodic: bool = True, scanner: RangeSensorSpec | None = None) -> None:
        robot = robot or RobotConfig()
        self.episodic = episodic
        self.task = task
        # Navigation: the task's walls and obstacles become geoms, its scan MuJoCo ray casts.
        self.arena, self.scanner = task.arena(), None
        spec = task.scan_spec
        if spec is not None:
            # The scanner casts the task's rays, or a profile's own scanner's (resampled onto
            # them as on the robot), with the profile's range limits, noise and dropout.
            scanner = scanner or RangeSensorSpec(num_rays=spec.num_rays,
                                                 range_max=spec.range_max)
            if scanner.num_rays == spec.num_rays and scanner.full_circle:
                scanner = replace(scanner, first_angle=spec.angle_min)
            self.scanner = scanner
        arena = None
        if self.arena is not None or spec is not None:
            a = self.arena
            arena = ArenaSpec(half_size=a.half_size if a else 0.0,
                              max_obstacles=a.max_obstacles if a else 0,
                              obstacle_radius=a.obstacle_radius if a else 0.1,
                              sensor_range=max(self.scanner.range_max if self.scanner else 1.0,
                                               1.0))
        self.robots = PointRobots(task.num_envs, robot, arena=arena)
        self.range_sensor = (RangeSensor(self.robots, self.scanner, seed)
                             if self.scanner is not None else None)
        self.num_envs = self.robots.num_robots
        self.autoreset = autoreset
        self.obs_dim = task.obs_dim
        self.cost_names = tuple(task.cost_names)
        self.num_costs = len(self.cost_names)
        limits = np.array([robot.max_linear_velocity, robot.max_angular_velocity], np.float32)
        self.single_action_space = gym.spaces.Box(-limits, limits, dtype=np.float32)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,),
                                                       np.float32)
        self.episode_step = np.zeros(self.num_envs, np.int64)
        self.rng = np.random.default_rng(seed)
        self.randomization = randomization or DomainRandomization()
        self.randomization.validate()
        self._noisy_odometry = self.randomization.noisy
        # Dynamics are drawn per episode when a profile randomises them, or when the task's
        # seeded streams were recorded with those draws (Task.randomized_dynamics).
        self._draw_dynamics = task.randomized_dynamics or randomization is not None
        self.latency = np.zeros(self.num_envs, np.int64)
        self._queue = np.zeros((self.randomization.max_latency_steps + 1, self.num_envs, 2))

    @property
    def max_episode_steps(self) -> int:
        """Return the episode length of the task."""
        return self.task.max_episode_steps

    def poses(self) -> np.ndarray:
        """Return (N, 3) x, y, yaw."""
        return self.robots.pose()

    def twists(self) -> np.ndarray:
        """Return (N, 2) forward velocity and yaw rate."""
        return self.robots.twist()

    def odometry(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (pose, twist) as the robots' odometry reports them (with any noise)."""
        return self._noisy(self.robots.pose(), self.robots.twist())

    def _noisy(self, pose: np.ndarray, twist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dr = self.randomization
        if self._noisy_odometry:
            n = self.num_envs
            pose = pose + self.rng.normal(0.0, 1.0, (n, 3)) * [dr.position_noise,
                                                                dr.position_noise, dr.yaw_noise]
            twist = twist + self.rng.normal(0.0, dr.velocity_noise, (n, 2))
        return pose, twist

    def sensors(self) -> np.ndarray:
        """Return the task's sensor readings (N, len(sensor_labels)) at the true poses."""
        return self._sensors(self.robots.pose())

    def scan_ranges(self) -> np.ndarray:
        """Return the task's scan (N, num_rays) on its rays, LaserScan values (REP 117)."""
        return self._scan_on_task_rays(self.range_sensor.ranges())

    def _scan_on_task_rays(self, raw: np.ndarray) -> np.ndarray:
        spec, scanner = self.task.scan_spec, self.scanner
        if scanner.num_rays == spec.num_rays and scanner.first_angle == spec.angle_min:
            return raw
        return np.stack([resample(r, scanner.angle_min, scanner.angle_increment, spec,
                                  scanner.range_min, scanner.range_max) for r in raw])

    def _sensors(self, pose: np.ndarray) -> np.ndarray:
        if self.range_sensor is None:
            return self._task_call('sensors()', self.task.sensors, pose)
        self.last_scan = self.range_sensor.ranges()
        return self._task_call('sensors()', self.task.sensors, pose,
                               scan=self._scan_on_task_rays(self.last_scan))

    def _observe(self, pose: np.ndarray, twist: np.ndarray,
                 readings: np.ndarray) -> np.ndarray:
        # The policy sees the (noisy) odometry; sensors read the true state.
        if self._noisy_odometry:
            pose, twist = self._noisy(pose, twist)
        return self._task_call('observation()', self.task.observation, pose, twist, readings)

    def observation(self) -> np.ndarray:
        """Return the current observations (N, obs_dim)."""
        pose = self.robots.pose()
        return self._observe(pose, self.robots.twist(), self._sensors(pose))

    def _task_error(self, what: str, hint: bool = True) -> TaskRuntimeError:
        cls = type(self.task)
        return TaskRuntimeError(f'task {cls.__module__}:{cls.__qualname__}: {what}'
                                + (' (a task returns finite values of the documented shapes; '
                                   'docs/tasks.md)' if hint else ''))

    def _task_call(self, what: str, method, *args: Any, **kwargs: Any) -> Any:
        """Call a method of the task; what it raises comes back naming the task and the line."""
        try:
            return method(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any error of the user's code, named
            frames = traceback.extract_tb(exc.__traceback__)
            # The task's own line (not numpy's, where a bad call of the task ends up).
            own = inspect.getsourcefile(type(self.task))
            frame = next((f for f in reversed(frames) if f.filename == own), frames[-1])
            raise self._task_error(f'{what} raised {type(exc).__name__}: {exc} (at '
                                   f'{frame.filename}:{frame.lineno})', hint=False) from exc

    def _reset_envs(self, idx: np.ndarray) -> None:
        start = self._task_call('reset()', self.task.reset, idx, self.rng)
        try:
            start = check_start(start, len(idx))
        except ValueError as exc:
            raise self._task_error(str(exc)) from None
        self.robots.set_pose(idx, start[:, 0], start[:, 1], start[:, 2])
        if self.arena is not None:
            for i in idx:
                self.robots.arenas.place(i, self._task_call('obstacles()', self.task.obstacles, i))
        self.episode_step[idx] = 0
        if self._draw_dynamics:
            n, dr = len(idx), self.randomization
            self.robots.set_dynamics(idx, self.rng.uniform(*dr.mass_scale, n),
                                     self.robots.config.actuator_gain
                                     * self.rng.uniform(*dr.gain_scale, n))
            self.latency[idx] = self.rng.integers(0, dr.max_latency_steps + 1, n)
            self._queue[:, idx] = 0.0

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every env; return observations (N, obs_dim)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._reset_envs(np.arange(self.num_envs))
        try:
            return check_observation(self.observation(), self.num_envs, self.obs_dim)
        except ValueError as exc:
            raise self._task_error(f'{exc} at the start of the episodes') from None

    def markers(self, index: int) -> list:
        """Return the task's markers of env index (what it raises comes back named)."""
        return self._task_call('markers()', self.task.markers, index)

    def place(self, index: int, pose: tuple[float, float, float], **state: Any) -> None:
        """Put env index in a hand-made state: robot at rest at pose, the task's state."""
        self.robots.set_pose(index, *pose)
        self._task_call('place()', self.task.place, index, np.asarray(pose, dtype=np.float64),
                        **state)
        if self.arena is not None:
            self.robots.arenas.place(index, self._task_call('obstacles()', self.task.obstacles,
                                                            index))

    def checked_actions(self, actions: np.ndarray) -> np.ndarray:
        """Return actions (N, 2) [v, yaw rate] as float64; ValueError on shape or NaN."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, self.act_dim):
            raise ValueError(f'action has shape {actions.shape}, expected '
                             f'({self.num_envs}, {self.act_dim})')
        if not np.all(np.isfinite(actions)):
            raise ValueError('action holds non-finite values')
        return actions

    def step(self, actions: np.ndarray):
        """Apply actions (N, 2) [v, yaw rate]; see the class docstring for what returns."""
        actions = self.checked_actions(actions)
        if self.randomization.max_latency_steps:
            # Row k holds what acts k periods from now: each robot reads its own delay.
            self._queue[self.latency, np.arange(self.num_envs)] = actions
            actions = self._queue[0].copy()
            self._queue[:-1] = self._queue[1:]
            self._queue[-1] = 0.0
        self.robots.step(actions)
        pose, twist = self.robots.pose(), self.robots.twist()
        if self.arena is not None:
            self.task.contacts[:] = self.robots.arenas.collisions()
        result = self._task_call('step()', self.task.step, pose, twist, self.rng)
        readings = self._sensors(pose)
        obs = self._observe(pose, twist, readings)
        try:
            reward, costs, obs, terminated = check_step(result, obs, self.num_envs,
                                                        self.num_costs, self.obs_dim)
        except ValueError as exc:
            raise self._task_error(str(exc)) from None
        cost = costs[:, 0] if self.num_costs == 1 else costs
        self.episode_step += 1
        truncated = (self.episode_step >= self.task.max_episode_steps if self.episodic
                     else np.zeros(self.num_envs, bool))
        info = {'final_obs': obs.copy(), 'final_pose': pose, 'final_twist': twist,
                'final_sensors': readings, 'episode_step': self.episode_step.copy(),
                **result.info}
        ended = terminated | truncated
        if self.autoreset and ended.any():
            idx = np.flatnonzero(ended)
            self._reset_envs(idx)
            obs = obs.copy()
            try:
                obs[idx] = check_observation(self.observation(), self.num_envs,
                                             self.obs_dim)[idx]
            except ValueError as exc:
                raise self._task_error(f'{exc} at the start of the episodes') from None
        return obs, reward, cost, terminated, truncated, info


class TaskEnv(gym.Env):
    """Gymnasium env of one robot on any task (no auto-reset; info['cost']).

    info['cost'] is a number with one constraint and a vector with several; info['cost_<name>']
    is each constraint's, and the task's per-step figures are there too.
    """

    metadata = {'render_modes': []}

    def __init__(self, task: str = DEFAULT_TASK, **options: Any) -> None:
        from cpo_ros.sim.make import make_vec_env

        self._vec = make_vec_env(task=task, num_envs=1, autoreset=False, **options)
        self.task = self._vec.task
        self.action_space = self._vec.single_action_space
        self.observation_space = self._vec.single_observation_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode as the task places it."""
        super().reset(seed=seed)
        return self._vec.reset(seed=int(self.np_random.integers(2 ** 31)))[0], {}

    def step(self, action):
        """Apply one (v, yaw rate) action; truncates at the task's episode length."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f'action has shape {action.shape}, expected '
                             f'{self.action_space.shape}')
        obs, rew, cst, terminated, truncated, info = self._vec.step(action[None])
        names = self._vec.cost_names
        costs = np.asarray(cst).reshape(1, -1)[0]
        out = {'cost': float(costs[0]) if len(names) == 1 else costs.copy(),
               **{f'cost_{n}': float(costs[i]) for i, n in enumerate(names)}}
        out.update({k: np.asarray(v)[0].item() for k, v in info.items()
                    if not k.startswith('final_') and k != 'episode_step' and k not in out})
        return obs[0], float(rew[0]), bool(terminated[0]), bool(truncated[0]), out
