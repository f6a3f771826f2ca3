"""The Goal task: drive to a goal, then to the next, past hazard discs that cost 1 per step.

A long-horizon navigation test-bed in the manner of Safety-Gymnasium's Goal tasks, on the
project's point robot: 1000-step episodes, a new goal each time one is reached, and a sparse
per-step cost (1 while inside any hazard). The robot senses the hazards with a ring of range
readings shaped like sensor_msgs/LaserScan (cpo_ros.tasks.scan), so a robot deployment reads a
real laser scan through the same function. The functions here are the only definition of the
task: the simulator calls them, and so would a robot.
"""

from dataclasses import dataclass
import math
from typing import Any

import numpy as np

from cpo_ros.sim.base import PointTaskEnv, VecPointTask
from cpo_ros.sim.robot import apply_overrides, RobotConfig
from cpo_ros.tasks import scan
from cpo_ros.validation import check_range

ROBOT_LABELS = ('v', 'w', 'goal_cos', 'goal_sin', 'goal_dist')
"""Observation layout before the scan: forward velocity [m/s], yaw rate [rad/s], the goal's
bearing in the robot frame as cos/sin, and its distance squashed to [0, 1): tanh(d / extent)."""


@dataclass(frozen=True)
class GoalTask:
    """Constants of the Goal task (the robot drives up to 0.3 m per 0.2 s step)."""

    placement_extent: float = 5.0
    """Robot, goals and hazards are placed in the square |x|, |y| <= placement_extent [m]."""
    n_hazards: int = 8
    """Hazard discs per episode (fixed for the episode)."""
    hazard_radius: float = 0.7
    """Radius of a hazard [m]; cost 1 per step while the robot's centre is inside one."""
    goal_radius: float = 0.4
    """The goal is reached within this distance of its centre [m]."""
    goal_reward: float = 1.0
    """Bonus for reaching a goal (a new one is then drawn)."""
    distance_reward: float = 1.0
    """Reward per metre of progress toward the goal (negative when moving away)."""
    num_rays: int = 16
    """Range readings around the robot (the LaserScan's len(ranges))."""
    scan_angle_min: float = -math.pi
    """Angle of the first ray in the robot frame [rad] (LaserScan angle_min)."""
    scan_range_max: float = 4.0
    """Range of the scan: farther hazards are not seen [m] (LaserScan range_max)."""
    max_episode_steps: int = 1000
    """Steps per episode (200 s of simulated time)."""

    @property
    def scan_spec(self) -> scan.ScanSpec:
        """Return the rays of the hazard scan."""
        return scan.ScanSpec(self.num_rays, self.scan_angle_min, self.scan_range_max)

    @property
    def obs_dim(self) -> int:
        """Return the size of an observation: ROBOT_LABELS, then one reading per ray."""
        return len(ROBOT_LABELS) + self.num_rays

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        check_range('placement_extent', self.placement_extent, 0.5, 1e3)
        check_range('n_hazards', self.n_hazards, 0, 100, integer=True)
        check_range('hazard_radius', self.hazard_radius, 0.0, 1e3, low_open=True)
        check_range('goal_radius', self.goal_radius, 0.0, 1e3, low_open=True)
        check_range('goal_reward', self.goal_reward, 0.0, 1e6)
        check_range('distance_reward', self.distance_reward, 0.0, 1e6)
        check_range('max_episode_steps', self.max_episode_steps, 1, 10**6, integer=True)
        check_range('scan_range_max', self.scan_range_max, 0.0, 1e3, low_open=True)
        self.scan_spec.validate()
        # Hazards and the goal need room: refuse layouts the rejection sampler cannot fill.
        free = (2 * self.placement_extent) ** 2 - self.n_hazards * math.pi * (
            2 * self.hazard_radius) ** 2
        if free < 0.25 * (2 * self.placement_extent) ** 2:
            raise ValueError(f'n_hazards = {self.n_hazards} discs of hazard_radius = '
                             f'{self.hazard_radius} leave too little room in placement_extent = '
                             f'{self.placement_extent}: use fewer or smaller hazards')


def sensor_labels(task: GoalTask) -> tuple[str, ...]:
    """Return the names of the scan readings: scan_0.. in ray order."""
    return tuple(f'scan_{i}' for i in range(task.num_rays))


def goal_in_robot_frame(pose: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (bearing [rad], distance [m]) of goals (N, 2) seen from poses (N, 3)."""
    pose = np.atleast_2d(pose)
    rel = np.atleast_2d(goal) - pose[:, :2]
    return np.arctan2(rel[:, 1], rel[:, 0]) - pose[:, 2], np.hypot(rel[:, 0], rel[:, 1])


def hazard_ranges(pose: np.ndarray, hazards: np.ndarray, task: GoalTask) -> np.ndarray:
    """Return (N, num_rays) LaserScan-style ranges to the hazard discs (N, K, 2)."""
    return scan.disc_ranges(pose, hazards, task.hazard_radius, task.scan_spec)


def observation_from(twist: np.ndarray, bearing: np.ndarray, distance: np.ndarray,
                     ranges: np.ndarray, task: GoalTask) -> np.ndarray:
    """Return (N, obs_dim) observations from odometry twist, the goal and scan ranges.

    A robot builds the same observation from its odometry, its goal and a real LaserScan
    resampled with scan.resample.
    """
    twist = np.atleast_2d(twist)
    return np.concatenate([
        np.stack([twist[:, 0], twist[:, 1], np.cos(bearing), np.sin(bearing),
                  np.tanh(distance / task.placement_extent)], axis=1),
        scan.closeness(ranges, task.scan_spec)], axis=1).astype(np.float32)


def in_hazard(pose: np.ndarray, hazards: np.ndarray, task: GoalTask) -> np.ndarray:
    """Return (N,) bool: the robot's centre is inside (or on) a hazard disc."""
    rel = np.asarray(hazards).reshape(len(np.atleast_2d(pose)), -1, 2) - np.atleast_2d(
        pose)[:, None, :2]
    return (np.hypot(rel[..., 0], rel[..., 1]) <= task.hazard_radius).any(axis=1)


def cost(pose: np.ndarray, hazards: np.ndarray, task: GoalTask) -> np.ndarray:
    """Return (N,) float32: 1 inside a hazard, 0 outside."""
    return in_hazard(pose, hazards, task).astype(np.float32)


def reward(prev_distance: np.ndarray, distance: np.ndarray, reached: np.ndarray,
           task: GoalTask) -> np.ndarray:
    """Return (N,) float32: progress toward the goal [m] x distance_reward, + goal_reward."""
    return (task.distance_reward * (prev_distance - distance)
            + task.goal_reward * reached).astype(np.float32)


class VecPointGoal(VecPointTask):
    """num_envs Goal episodes in one MuJoCo model, with VecPointCircle's interface.

    step() returns (obs, reward, cost, terminated, truncated, info) with auto-reset;
    info['final_obs'] holds the last observation of an episode that ended, info['goals'] the
    goals reached at this step.
    """

    def __init__(self, num_envs: int = 1, task: GoalTask | None = None,
                 robot: RobotConfig | None = None, seed: int = 0, autoreset: bool = True,
                 **overrides: Any) -> None:
        self.task, robot = apply_overrides(task or GoalTask(), robot or RobotConfig(),
                                           overrides, 'Point-Goal')
        super().__init__(num_envs, robot, self.task.obs_dim, seed, autoreset)
        self.cost_names, self.num_costs = ('hazards',), 1
        n, t = self.num_envs, self.task
        self.hazards = np.zeros((n, t.n_hazards, 2))
        self.goal = np.zeros((n, 2))
        self.distance = np.zeros(n)

    def _free_points(self, count: int, avoid: np.ndarray, clearance: float) -> np.ndarray:
        """Return count points in the square, each farther than clearance from every avoid."""
        e = self.task.placement_extent
        out = np.empty((0, 2))
        while len(out) < count:
            cand = self.rng.uniform(-e, e, (4 * count + 8, 2))
            d = np.hypot(*(cand[:, None, :] - avoid[None, :, :]).transpose(2, 0, 1))
            out = np.concatenate([out, cand[(d > clearance).all(axis=1)]])
        return out[:count]

    def _draw_goal(self, i: int) -> None:
        """Place env i's goal away from its hazards and at least 1 m from the robot."""
        t = self.task
        pose = self.robots.pose()[i]
        for _ in range(1000):
            g = self.rng.uniform(-t.placement_extent, t.placement_extent, 2)
            if (np.hypot(*(self.hazards[i] - g).T) > t.hazard_radius + t.goal_radius).all() \
                    and np.hypot(*(g - pose[:2])) >= max(1.0, 2 * t.goal_radius):
                break
        self.goal[i] = g
        self.distance[i] = np.hypot(*(g - pose[:2]))

    def _reset_envs(self, idx: np.ndarray) -> None:
        t = self.task
        for i in idx:
            start = self.rng.uniform(-t.placement_extent, t.placement_extent, 2)
            # Hazards keep a robot-and-a-half clear of the start and do not overlap each other.
            hazards = np.empty((0, 2))
            for _ in range(t.n_hazards):
                point = self._free_points(1, np.vstack([start[None], hazards]),
                                          2 * t.hazard_radius)
                hazards = np.vstack([hazards, point])
            self.hazards[i] = hazards
            self.robots.set_pose(i, start[0], start[1], self.rng.uniform(-np.pi, np.pi))
            self._draw_goal(i)
        self.episode_step[idx] = 0

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every env; return observations (N, obs_dim)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._reset_envs(np.arange(self.num_envs))
        return self.observation()

    def place(self, index: int, pose: tuple[float, float, float],
              hazards: np.ndarray | None = None, goal: tuple[float, float] | None = None) -> None:
        """Put env index in a hand-made state: robot pose at rest, hazards (K, 2), goal (2,)."""
        self.robots.set_pose(index, *pose)
        if hazards is not None:
            self.hazards[index] = np.asarray(hazards, dtype=np.float64).reshape(-1, 2)
        if goal is not None:
            self.goal[index] = goal
        self.distance[index] = np.hypot(*(self.goal[index] - np.asarray(pose[:2])))

    def scan_ranges(self) -> np.ndarray:
        """Return (N, num_rays) LaserScan-style ranges to the hazards (+inf: no return)."""
        return hazard_ranges(self.robots.pose(), self.hazards, self.task)

    def sensors(self) -> np.ndarray:
        """Return the scan part of the observations (N, num_rays)."""
        return scan.closeness(self.scan_ranges(), self.task.scan_spec)

    def _observe(self, pose: np.ndarray, twist: np.ndarray) -> np.ndarray:
        bearing, distance = goal_in_robot_frame(pose, self.goal)
        return observation_from(twist, bearing, distance,
                                hazard_ranges(pose, self.hazards, self.task), self.task)

    def observation(self) -> np.ndarray:
        """Return the current observations (N, obs_dim)."""
        return self._observe(*self.odometry())

    def step(self, actions: np.ndarray):
        """Apply actions (N, 2) [v, yaw rate]; see the class docstring for what returns."""
        self.robots.step(self.checked_actions(actions))
        pose, twist = self.robots.pose(), self.robots.twist()
        distance = np.hypot(*(self.goal - pose[:, :2]).T)
        reached = distance <= self.task.goal_radius
        rew = reward(self.distance, distance, reached, self.task)
        cst = cost(pose, self.hazards, self.task)
        self.distance = distance
        for i in np.flatnonzero(reached):
            self._draw_goal(i)  # progress is measured toward the new goal from here on
        obs = self._observe(pose, twist)
        return self.end_step(obs, rew, cst, pose, twist, obs[:, len(ROBOT_LABELS):].copy(),
                             goals=reached.astype(np.int64))


class PointGoalEnv(PointTaskEnv):
    """Gymnasium Point-Goal: one robot; info['cost'] is 1 inside a hazard.

    info['goals'] counts the goals reached at the step.
    """

    def __init__(self, **overrides: Any) -> None:
        super().__init__(VecPointGoal(1, autoreset=False, **overrides))

    def step_info(self, cost: Any, info: dict[str, Any]) -> dict[str, Any]:
        """Return the cost and the goals reached at the step."""
        return {'cost': float(cost), 'goals': int(info['goals'][0])}
