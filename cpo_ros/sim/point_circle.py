"""Point-Circle on MuJoCo: a vectorised env (the fast path) and a Gymnasium env over it."""

from dataclasses import dataclass
from typing import Any

import numpy as np

from cpo_ros.sim.base import PointTaskEnv, VecPointTask
from cpo_ros.sim.robot import apply_overrides, RobotConfig
from cpo_ros.tasks import circle
from cpo_ros.tasks.circle import CircleTask
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


class VecPointCircle(VecPointTask):
    """num_envs Point-Circle episodes stepped together in one MuJoCo model, with auto-reset.

    step() returns (obs, reward, cost, terminated, truncated, info); cost is (N,) with one
    constraint and (N, m) with several (task.cost_names, e.g. a speed limit). Envs whose
    episode ended are reset in the same call: obs holds their new first observation,
    info['final_obs'], info['final_pose'] and info['final_twist'] the last state of the episode
    that ended.
    """

    def __init__(self, num_envs: int = 1, task: CircleTask | None = None,
                 robot: RobotConfig | None = None, seed: int = 0, autoreset: bool = True,
                 randomization: DomainRandomization | None = None,
                 **overrides: Any) -> None:
        self.task, robot = apply_overrides(task or CircleTask(), robot or RobotConfig(),
                                           overrides, 'Point-Circle')
        self.randomization = randomization or DomainRandomization()
        self.randomization.validate()
        super().__init__(num_envs, robot, len(circle.OBS_LABELS), seed, autoreset)
        self.cost_names = self.task.cost_names
        self.num_costs = len(self.cost_names)
        self.latency = np.zeros(self.num_envs, np.int64)
        self._queue = np.zeros((self.randomization.max_latency_steps + 1, self.num_envs, 2))

    def _reset_envs(self, idx: np.ndarray) -> None:
        noise = self.task.init_position_noise
        n = len(idx)
        self.robots.set_pose(idx, self.rng.uniform(-noise, noise, n),
                             self.rng.uniform(-noise, noise, n),
                             self.rng.uniform(-np.pi, np.pi, n))
        self.episode_step[idx] = 0
        dr = self.randomization
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
        return self.observation()

    def odometry(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (pose, twist) as the robots' odometry reports them (with any noise)."""
        pose, twist = self.robots.pose(), self.robots.twist()
        dr = self.randomization
        if dr.noisy:
            n = self.num_envs
            pose = pose + self.rng.normal(0.0, 1.0, (n, 3)) * [dr.position_noise,
                                                                dr.position_noise, dr.yaw_noise]
            twist = twist + self.rng.normal(0.0, dr.velocity_noise, (n, 2))
        return pose, twist

    def sensors(self) -> np.ndarray:
        """Return task sensor readings (N, 0): Circle needs odometry only."""
        return np.zeros((self.num_envs, 0), np.float32)

    def observation(self) -> np.ndarray:
        """Return the current observations (N, obs_dim), from the odometry."""
        return circle.observation(*self.odometry())

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
        # Reward and cost from the true state; the policy sees the (noisy) odometry.
        rew = circle.reward(pose, twist, self.task)
        per_constraint = circle.costs(pose, twist, self.task)
        cst = per_constraint[:, 0] if self.num_costs == 1 else per_constraint
        obs = circle.observation(*self.odometry()) if self.randomization.noisy else (
            circle.observation(pose, twist))
        return self.end_step(obs, rew, cst, pose, twist,
                             np.zeros((self.num_envs, 0), np.float32),
                             **{f'cost_{name}': per_constraint[:, i]
                                for i, name in enumerate(self.cost_names)})


class PointCircleEnv(PointTaskEnv):
    """Gymnasium Point-Circle: one robot; info['cost'] is 1 outside the safe strip.

    With a speed limit info['cost'] is the vector (safe_area, speed); info['cost_<name>'] holds
    each constraint's cost.
    """

    def __init__(self, task: CircleTask | None = None, robot: RobotConfig | None = None,
                 **overrides: Any) -> None:
        super().__init__(VecPointCircle(1, task, robot, autoreset=False, **overrides))

    def step_info(self, cost: Any, info: dict[str, Any]) -> dict[str, Any]:
        """Return the cost (a vector with several constraints) and each constraint's."""
        names = self._vec.cost_names
        return {'cost': float(cost) if len(names) == 1 else np.asarray(cost).copy(),
                **{f'cost_{n}': float(info[f'cost_{n}'][0]) for n in names}}
