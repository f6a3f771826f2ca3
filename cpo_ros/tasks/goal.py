"""The Goal task: drive to a goal, then to the next, among obstacles the robot must not touch.

A long-horizon navigation test-bed in the manner of Safety-Gymnasium's Goal tasks, on the
project's point robot: 1000-step episodes, a new goal each time one is reached, walls around
the square and solid cylinders that the simulator builds as MuJoCo geoms (Task.arena). Each
step the robot's body touches one costs 1. The robot senses them with a ring of range readings
shaped like sensor_msgs/LaserScan (scan_spec): the simulator casts the rays in MuJoCo, a robot
resamples its LaserScan onto them, and both pass through cpo_ros.tasks.scan.closeness. On a
robot the goals come from the operator (goal_pose).
"""

from dataclasses import dataclass
import math

import numpy as np

from cpo_ros.tasks.base import Arena, Marker, param, StepResult, Task, TaskParams
from cpo_ros.tasks.safe_area import SafeArea
from cpo_ros.tasks.scan import closeness, ScanSpec

BODY_CLEARANCE = 0.35
"""Free space kept between obstacles, and around the start, when placing them [m]: the point
robot's body (0.1 m radius) passes between any two."""

ROBOT_LABELS = ('v', 'w', 'goal_cos', 'goal_sin', 'goal_dist')
"""Observation layout before the scan: forward velocity [m/s], yaw rate [rad/s], the goal's
bearing in the robot frame as cos/sin, and its distance squashed to [0, 1): tanh(d / extent)."""


@dataclass(frozen=True)
class GoalParams(TaskParams):
    """Parameters of the Goal task (the robot drives up to 0.3 m per 0.2 s step)."""

    max_episode_steps: int = param(1000, 1, 10**6, integer=True)
    """Steps per episode (200 s of simulated time)."""
    placement_extent: float = param(5.0, 0.5, 1e3)
    """Robot, goals and obstacles are placed in the square |x|, |y| <= placement_extent [m]."""
    wall_distance: float = param(6.0, 0.0, 1e3)
    """Walls' inner faces at |x| = |y| = wall_distance [m]; 0: no walls."""
    n_obstacles: int = param(8, 0, 100, integer=True)
    """Obstacle cylinders per episode (fixed for the episode)."""
    obstacle_radius: float = param(0.5, 0.0, 1e3, low_open=True)
    """Radius of an obstacle [m]; cost 1 per step while the robot's body touches one, or a
    wall."""
    terminate_on_collision: bool = param(False)
    """End the episode (terminal) at the first contact, instead of going on."""
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
    """Range of the scan: farther obstacles and walls are not seen [m] (LaserScan range_max)."""

    @property
    def scan_spec(self) -> ScanSpec:
        """Return the rays of the scan."""
        return ScanSpec(self.num_rays, self.scan_angle_min, self.scan_range_max)

    def check(self) -> None:
        """Refuse layouts the rejection sampler cannot fill, and walls inside the square."""
        self.scan_spec.validate()
        free = (2 * self.placement_extent) ** 2 - self.n_obstacles * math.pi * (
            2 * self.obstacle_radius + BODY_CLEARANCE) ** 2
        if free < 0.25 * (2 * self.placement_extent) ** 2:
            raise ValueError(f'n_obstacles = {self.n_obstacles} discs of obstacle_radius = '
                             f'{self.obstacle_radius} leave too little room in placement_extent '
                             f'= {self.placement_extent}: use fewer or smaller obstacles')
        if 0.0 < self.wall_distance < self.placement_extent + BODY_CLEARANCE:
            raise ValueError(f'wall_distance = {self.wall_distance} m leaves no room around the '
                             f'square of placement_extent = {self.placement_extent} m: give at '
                             f'least {self.placement_extent + BODY_CLEARANCE} m, or 0 (no walls)')


def goal_in_robot_frame(pose: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (bearing [rad], distance [m]) of goals (N, 2) seen from poses (N, 3)."""
    pose = np.atleast_2d(pose)
    rel = np.atleast_2d(goal) - pose[:, :2]
    return np.arctan2(rel[:, 1], rel[:, 0]) - pose[:, 2], np.hypot(rel[:, 0], rel[:, 1])


def goal_readings(bearing: np.ndarray, distance: np.ndarray, params: GoalParams) -> np.ndarray:
    """Return (N, 3): the goal's bearing as cos/sin and its squashed distance.

    A robot computes the same from its goal (geometry_msgs/PoseStamped) and its pose.
    """
    return np.stack([np.cos(bearing), np.sin(bearing),
                     np.tanh(distance / params.placement_extent)], axis=1)


class Goal(Task):
    """Point-Goal: progress toward goals is rewarded, each step touching an obstacle costs 1.

    The sensor readings are the goal's bearing and distance (goal_cos, goal_sin, goal_dist)
    and the scan's closeness (scan_0..): everything the observation needs beyond the twist.
    info['goals'] counts the goals reached at a step.
    """

    Params = GoalParams
    takes_goals = True

    def __init__(self, params: GoalParams | None = None, num_envs: int = 1) -> None:
        super().__init__(params, num_envs)
        n = self.num_envs
        self.obstacle_centres = np.zeros((n, self.params.n_obstacles, 2))
        self.goal = np.zeros((n, 2))
        self.distance = np.zeros(n)

    @property
    def cost_names(self) -> tuple[str, ...]:
        """Return ('collisions',)."""
        return ('collisions',)

    @property
    def default_cost_limits(self) -> tuple[float, ...]:
        """Return 50: 5% of the 1000 steps touching an obstacle or a wall."""
        return (50.0,)

    @property
    def sensor_labels(self) -> tuple[str, ...]:
        """Return goal_cos, goal_sin, goal_dist, scan_0.. in ray order."""
        return ROBOT_LABELS[2:] + tuple(f'scan_{i}' for i in range(self.params.num_rays))

    @property
    def observation_labels(self) -> tuple[str, ...]:
        """Return v, w, then the sensor readings."""
        return ROBOT_LABELS[:2] + self.sensor_labels

    @property
    def scan_spec(self) -> ScanSpec:
        """Return the rays the policy sees."""
        return self.params.scan_spec

    def arena(self) -> Arena:
        """Return the walls and the obstacle cylinders."""
        p = self.params
        return Arena(p.wall_distance, p.n_obstacles, p.obstacle_radius)

    def safe_area(self) -> SafeArea | None:
        """Return the square inside the walls (None without walls)."""
        h = self.params.wall_distance
        return SafeArea.rectangle(-h, h, -h, h) if h > 0.0 else None

    def obstacles(self, index: int) -> np.ndarray:
        """Return robot index's obstacle centres (n_obstacles, 2)."""
        return self.obstacle_centres[index]

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
        """Place env i's goal clear of its obstacles and at least 1 m from position."""
        p = self.params
        for _ in range(1000):
            g = rng.uniform(-p.placement_extent, p.placement_extent, 2)
            if (np.hypot(*(self.obstacle_centres[i] - g).T)
                    > p.obstacle_radius + p.goal_radius).all() \
                    and np.hypot(*(g - position)) >= max(1.0, 2 * p.goal_radius):
                break
        self.goal[i] = g
        self.distance[i] = np.hypot(*(g - position))

    def reset(self, index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Start anywhere in the square; obstacles clear of the start and with gaps between."""
        p = self.params
        starts = np.zeros((len(index), 3))
        for row, i in enumerate(index):
            start = rng.uniform(-p.placement_extent, p.placement_extent, 2)
            placed = np.empty((0, 2))
            for _ in range(p.n_obstacles):
                # Centres 2 r + clearance apart (from the start: r + clearance, but the same
                # bound keeps the draws simple).
                point = self._free_points(1, np.vstack([start[None], placed]),
                                          2 * p.obstacle_radius + BODY_CLEARANCE, rng)
                placed = np.vstack([placed, point])
            self.obstacle_centres[i] = placed
            starts[row] = start[0], start[1], rng.uniform(-np.pi, np.pi)
            self._draw_goal(i, start, rng)
        return starts

    def sensors(self, pose: np.ndarray, scan: np.ndarray | None = None) -> np.ndarray:
        """Return (N, 3 + num_rays): the goal readings, then the scan's closeness."""
        if scan is None:
            raise ValueError('the Goal task reads a range scan: sensors(pose, scan=ranges)')
        bearing, distance = goal_in_robot_frame(pose, self.goal)
        out = np.empty((len(bearing), 3 + self.params.num_rays))
        out[:, :3] = goal_readings(bearing, distance, self.params)
        out[:, 3:] = closeness(scan, self.params.scan_spec)
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
        """Reward progress and reached goals (then drawn anew); cost 1 per step in contact."""
        p = self.params
        distance = np.hypot(*(self.goal - pose[:, :2]).T)
        reached = distance <= p.goal_radius
        reward = (p.distance_reward * (self.distance - distance)
                  + p.goal_reward * reached).astype(np.float32)
        cost = self.contacts.astype(np.float32)
        self.distance = distance
        for i in np.flatnonzero(reached):
            self._draw_goal(i, pose[i, :2], rng)  # progress toward the new goal from here
        return StepResult(reward, cost[:, None],
                          terminated=self.contacts.copy() if p.terminate_on_collision else None,
                          info={'goals': reached.astype(np.int64)})

    def set_goal(self, index: int, goal: np.ndarray) -> None:
        """Give robot index a goal (x, y) in task coordinates (a robot's goal_pose)."""
        self.goal[index] = np.asarray(goal, dtype=np.float64)[:2]

    def at_goal(self, pose: np.ndarray) -> np.ndarray:
        """Return (N,) bool: within goal_radius of the goal."""
        pose = np.atleast_2d(pose)
        return np.hypot(*(self.goal[:len(pose)] - pose[:, :2]).T) <= self.params.goal_radius

    def place(self, index: int, pose: np.ndarray, **state) -> None:
        """Put env index in a hand-made state: obstacle_centres (K, 2), goal (2,)."""
        super().place(index, pose, **state)
        self.distance[index] = np.hypot(*(self.goal[index] - np.asarray(pose[:2])))

    def markers(self, index: int = 0) -> list[Marker]:
        """Return robot index's obstacles (orange discs), goal (green disc) and walls."""
        p = self.params
        out = [Marker('obstacles', 'discs', self.obstacle_centres[index],
                      2 * p.obstacle_radius, (0.9, 0.4, 0.1, 0.9)),
               Marker('goal', 'discs', self.goal[index][None], 2 * p.goal_radius,
                      (0.1, 0.8, 0.1, 0.8))]
        if p.wall_distance > 0.0:
            h = p.wall_distance
            out.append(Marker('walls', 'line_strip',
                              np.array([[h, h], [-h, h], [-h, -h], [h, -h], [h, h]]), 0.1,
                              (0.5, 0.5, 0.5, 1.0)))
        return out
