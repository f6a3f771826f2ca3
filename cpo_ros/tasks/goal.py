"""The Goal task: drive to a goal, then to the next, past hazard discs that cost 1 per step.

A long-horizon navigation test-bed in the manner of Safety-Gymnasium's Goal tasks, on the
project's point robot: 1000-step episodes, a new goal each time one is reached, and a sparse
per-step cost (1 while inside any hazard). The robot senses the hazards with a ring of range
readings shaped like sensor_msgs/LaserScan (cpo_ros.tasks.scan), so a robot deployment reads a
real laser scan through the same function.
"""

from dataclasses import dataclass
import math

import numpy as np

from cpo_ros.tasks import scan
from cpo_ros.tasks.base import Marker, param, StepResult, Task, TaskParams
from cpo_ros.tasks.safe_area import SafeArea

ROBOT_LABELS = ('v', 'w', 'goal_cos', 'goal_sin', 'goal_dist')
"""Observation layout before the scan: forward velocity [m/s], yaw rate [rad/s], the goal's
bearing in the robot frame as cos/sin, and its distance squashed to [0, 1): tanh(d / extent)."""


@dataclass(frozen=True)
class GoalParams(TaskParams):
    """Parameters of the Goal task (the robot drives up to 0.3 m per 0.2 s step)."""

    max_episode_steps: int = param(1000, 1, 10**6, integer=True)
    """Steps per episode (200 s of simulated time)."""
    placement_extent: float = param(5.0, 0.5, 1e3)
    """Robot, goals and hazards are placed in the square |x|, |y| <= placement_extent [m]."""
    n_hazards: int = param(8, 0, 100, integer=True)
    """Hazard discs per episode (fixed for the episode)."""
    hazard_radius: float = param(0.7, 0.0, 1e3, low_open=True)
    """Radius of a hazard [m]; cost 1 per step while the robot's centre is inside one."""
    goal_radius: float = param(0.4, 0.0, 1e3, low_open=True)
    """The goal is reached within this distance of its centre [m]."""
    goal_reward: float = param(1.0, 0.0, 1e6)
    """Bonus for reaching a goal (a new one is then drawn)."""
    distance_reward: float = param(1.0, 0.0, 1e6)
    """Reward per metre of progress toward the goal (negative when moving away)."""
    num_rays: int = param(16, 1, 4096, integer=True)
    """Range readings around the robot (the LaserScan's len(ranges))."""
    scan_angle_min: float = param(-math.pi, -2 * math.pi, 2 * math.pi)
    """Angle of the first ray in the robot frame [rad] (LaserScan angle_min)."""
    scan_range_max: float = param(4.0, 0.0, 1e3, low_open=True)
    """Range of the scan: farther hazards are not seen [m] (LaserScan range_max)."""

    @property
    def scan_spec(self) -> scan.ScanSpec:
        """Return the rays of the hazard scan."""
        return scan.ScanSpec(self.num_rays, self.scan_angle_min, self.scan_range_max)

    def check(self) -> None:
        """Refuse layouts the rejection sampler cannot fill."""
        self.scan_spec.validate()
        free = (2 * self.placement_extent) ** 2 - self.n_hazards * math.pi * (
            2 * self.hazard_radius) ** 2
        if free < 0.25 * (2 * self.placement_extent) ** 2:
            raise ValueError(f'n_hazards = {self.n_hazards} discs of hazard_radius = '
                             f'{self.hazard_radius} leave too little room in placement_extent = '
                             f'{self.placement_extent}: use fewer or smaller hazards')


def goal_in_robot_frame(pose: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (bearing [rad], distance [m]) of goals (N, 2) seen from poses (N, 3)."""
    pose = np.atleast_2d(pose)
    rel = np.atleast_2d(goal) - pose[:, :2]
    return np.arctan2(rel[:, 1], rel[:, 0]) - pose[:, 2], np.hypot(rel[:, 0], rel[:, 1])


def hazard_ranges(pose: np.ndarray, hazards: np.ndarray, params: GoalParams) -> np.ndarray:
    """Return (N, num_rays) LaserScan-style ranges to the hazard discs (N, K, 2)."""
    return scan.disc_ranges(pose, hazards, params.hazard_radius, params.scan_spec)


def goal_readings(bearing: np.ndarray, distance: np.ndarray, params: GoalParams) -> np.ndarray:
    """Return (N, 3): the goal's bearing as cos/sin and its squashed distance.

    A robot computes the same from its goal (geometry_msgs/PoseStamped) and its pose.
    """
    return np.stack([np.cos(bearing), np.sin(bearing),
                     np.tanh(distance / params.placement_extent)], axis=1)


def in_hazard(pose: np.ndarray, hazards: np.ndarray, params: GoalParams) -> np.ndarray:
    """Return (N,) bool: the robot's centre is inside (or on) a hazard disc."""
    rel = np.asarray(hazards).reshape(len(np.atleast_2d(pose)), -1, 2) - np.atleast_2d(
        pose)[:, None, :2]
    return (np.hypot(rel[..., 0], rel[..., 1]) <= params.hazard_radius).any(axis=1)


class Goal(Task):
    """Point-Goal: progress toward goals is rewarded, each step inside a hazard costs 1.

    The sensor readings are the goal's bearing and distance (goal_cos, goal_sin, goal_dist)
    and the hazard scan's closeness (scan_0..): everything the observation needs beyond the
    twist. info['goals'] counts the goals reached at a step.
    """

    Params = GoalParams

    def __init__(self, params: GoalParams | None = None, num_envs: int = 1) -> None:
        super().__init__(params, num_envs)
        n = self.num_envs
        self.hazards = np.zeros((n, self.params.n_hazards, 2))
        self.goal = np.zeros((n, 2))
        self.distance = np.zeros(n)

    @property
    def cost_names(self) -> tuple[str, ...]:
        """Return ('hazards',)."""
        return ('hazards',)

    @property
    def default_cost_limits(self) -> tuple[float, ...]:
        """Return 50: 5% of the 1000 steps inside a hazard."""
        return (50.0,)

    @property
    def sensor_labels(self) -> tuple[str, ...]:
        """Return goal_cos, goal_sin, goal_dist, scan_0.. in ray order."""
        return ROBOT_LABELS[2:] + tuple(f'scan_{i}' for i in range(self.params.num_rays))

    @property
    def observation_labels(self) -> tuple[str, ...]:
        """Return v, w, then the sensor readings."""
        return ROBOT_LABELS[:2] + self.sensor_labels

    def safe_area(self) -> SafeArea:
        """Return the arena: the placement square and 1 m around it (goals lie inside)."""
        e = self.params.placement_extent + 1.0
        return SafeArea.rectangle(-e, e, -e, e)

    def _free_points(self, count: int, avoid: np.ndarray, clearance: float,
                     rng: np.random.Generator) -> np.ndarray:
        """Return count points in the square, each farther than clearance from every avoid."""
        e = self.params.placement_extent
        out = np.empty((0, 2))
        while len(out) < count:
            cand = rng.uniform(-e, e, (4 * count + 8, 2))
            d = np.hypot(*(cand[:, None, :] - avoid[None, :, :]).transpose(2, 0, 1))
            out = np.concatenate([out, cand[(d > clearance).all(axis=1)]])
        return out[:count]

    def _draw_goal(self, i: int, position: np.ndarray, rng: np.random.Generator) -> None:
        """Place env i's goal away from its hazards and at least 1 m from position."""
        p = self.params
        for _ in range(1000):
            g = rng.uniform(-p.placement_extent, p.placement_extent, 2)
            if (np.hypot(*(self.hazards[i] - g).T) > p.hazard_radius + p.goal_radius).all() \
                    and np.hypot(*(g - position)) >= max(1.0, 2 * p.goal_radius):
                break
        self.goal[i] = g
        self.distance[i] = np.hypot(*(g - position))

    def reset(self, index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Start anywhere in the square; hazards clear of the start and of each other."""
        p = self.params
        starts = np.zeros((len(index), 3))
        for row, i in enumerate(index):
            start = rng.uniform(-p.placement_extent, p.placement_extent, 2)
            hazards = np.empty((0, 2))
            for _ in range(p.n_hazards):
                point = self._free_points(1, np.vstack([start[None], hazards]),
                                          2 * p.hazard_radius, rng)
                hazards = np.vstack([hazards, point])
            self.hazards[i] = hazards
            starts[row] = start[0], start[1], rng.uniform(-np.pi, np.pi)
            self._draw_goal(i, start, rng)
        return starts

    def sensors(self, pose: np.ndarray) -> np.ndarray:
        """Return (N, 3 + num_rays): the goal readings, then the scan's closeness."""
        bearing, distance = goal_in_robot_frame(pose, self.goal)
        out = np.empty((len(bearing), 3 + self.params.num_rays))
        out[:, :3] = goal_readings(bearing, distance, self.params)
        out[:, 3:] = scan.closeness(hazard_ranges(pose, self.hazards, self.params),
                                    self.params.scan_spec)
        return out

    def observation(self, pose: np.ndarray, twist: np.ndarray,
                    readings: np.ndarray) -> np.ndarray:
        """Return (N, 2 + 3 + num_rays): twist, then the readings."""
        twist = np.atleast_2d(twist)
        out = np.empty((len(twist), 2 + np.shape(readings)[1]), np.float32)
        out[:, :2] = twist[:, :2]
        out[:, 2:] = readings
        return out

    def step(self, pose: np.ndarray, twist: np.ndarray,
             rng: np.random.Generator) -> StepResult:
        """Reward progress and reached goals (then drawn anew); cost 1 inside a hazard."""
        p = self.params
        distance = np.hypot(*(self.goal - pose[:, :2]).T)
        reached = distance <= p.goal_radius
        reward = (p.distance_reward * (self.distance - distance)
                  + p.goal_reward * reached).astype(np.float32)
        cost = in_hazard(pose, self.hazards, p).astype(np.float32)
        self.distance = distance
        for i in np.flatnonzero(reached):
            self._draw_goal(i, pose[i, :2], rng)  # progress toward the new goal from here
        return StepResult(reward, cost[:, None], info={'goals': reached.astype(np.int64)})

    def place(self, index: int, pose: np.ndarray, **state) -> None:
        """Put env index in a hand-made state: hazards (K, 2), goal (2,)."""
        super().place(index, pose, **state)
        self.distance[index] = np.hypot(*(self.goal[index] - np.asarray(pose[:2])))

    def markers(self, index: int = 0) -> list[Marker]:
        """Return robot index's hazards (red discs) and goal (green disc)."""
        return [Marker('hazards', 'discs', self.hazards[index], 2 * self.params.hazard_radius,
                       (0.9, 0.2, 0.2, 0.5)),
                Marker('goal', 'discs', self.goal[index][None], 2 * self.params.goal_radius,
                       (0.1, 0.8, 0.1, 0.8))]
