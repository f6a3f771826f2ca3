"""The Circle task (CPO paper, Point-Circle): run along a circle, inside a safe strip.

Reward and costs come from odometry alone (pose x, y, yaw and twist v, yaw rate), so the
simulator, the policy executor and the safe-area monitor on a real robot compute the same
values from the same functions.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np

from cpo_ros.tasks.base import Marker, param, StepResult, Task, TaskParams
from cpo_ros.tasks.safe_area import SafeArea

OBS_LABELS = ('x', 'y', 'cos_yaw', 'sin_yaw', 'v', 'w')
"""Observation layout: position [m], heading as cos/sin, forward velocity [m/s], yaw rate."""


@dataclass(frozen=True)
class CircleParams(TaskParams):
    """Parameters of the Circle task (defaults: the paper's Point-Circle)."""

    max_episode_steps: int = param(50, 1, 10**6, integer=True)
    """Steps per episode (the paper's trajectories are 50-65 steps)."""
    target_radius: float = param(15.0, 0.0, 1e4, low_open=True)
    """Radius of the circle the reward asks to run along [m]."""
    x_limit: float = param(2.5, 0.0, 1e4, low_open=True)
    """Safe area: the strip |x| <= x_limit; cost 1 per step outside it [m]."""
    init_position_noise: float = param(0.1, 0.0, 1e4)
    """Start positions are uniform in +- this around the origin; yaw is uniform [m]."""
    speed_limit: float = param(0.0, 0.0, 1e4)
    """A second constraint when > 0: cost 1 per step whose speed exceeds it [m/s] (0: off)."""


def _pose2d(pose: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(pose, dtype=np.float64))


def observation(pose: np.ndarray, twist: np.ndarray) -> np.ndarray:
    """Return (N, 6) float32 observations (OBS_LABELS) from poses (N, 3) and twists (N, 2)."""
    pose, twist = _pose2d(pose), _pose2d(twist)
    return np.stack([pose[:, 0], pose[:, 1], np.cos(pose[:, 2]), np.sin(pose[:, 2]),
                     twist[:, 0], twist[:, 1]], axis=1).astype(np.float32)


def reward(pose: np.ndarray, twist: np.ndarray, params: CircleParams) -> np.ndarray:
    """Return (N,) rewards v_world . [-y, x] / (1 + | |(x, y)| - target_radius |).

    v_world = v (cos yaw, sin yaw) from the odometry twist: the robot computes the same value.
    """
    pose, twist = _pose2d(pose), _pose2d(twist)
    x, y, yaw = pose[:, 0], pose[:, 1], pose[:, 2]
    vx, vy = twist[:, 0] * np.cos(yaw), twist[:, 0] * np.sin(yaw)
    radius = np.hypot(x, y)
    return ((-y * vx + x * vy) / (1.0 + np.abs(radius - params.target_radius))).astype(
        np.float32)


@lru_cache(maxsize=32)
def safe_area(params: CircleParams) -> SafeArea:
    """Return the strip |x| <= x_limit (what the monitor guards too)."""
    return SafeArea.strip(params.x_limit)


def in_safe_area(pose: np.ndarray, params: CircleParams) -> np.ndarray:
    """Return (N,) bool: inside the strip |x| <= x_limit."""
    return safe_area(params).contains(_pose2d(pose)[:, :2])


def cost(pose: np.ndarray, params: CircleParams) -> np.ndarray:
    """Return (N,) float32 cost: 1 outside the safe strip, 0 inside."""
    return (~in_safe_area(pose, params)).astype(np.float32)


def costs(pose: np.ndarray, twist: np.ndarray, params: CircleParams) -> np.ndarray:
    """Return (N, m) float32 costs: safe_area, then speed when speed_limit > 0."""
    columns = [cost(pose, params)]
    if params.speed_limit > 0.0:
        columns.append((np.abs(_pose2d(twist)[:, 0]) > params.speed_limit).astype(np.float32))
    return np.stack(columns, axis=1)


class Circle(Task):
    """Point-Circle: reward for running along the target circle, cost outside the strip.

    With speed_limit > 0 a second constraint 'speed' counts the steps above it.
    """

    Params = CircleParams
    # The recorded seeded streams of Circle draw the robot's dynamics every episode.
    randomized_dynamics = True

    @property
    def cost_names(self) -> tuple[str, ...]:
        """Return ('safe_area',), plus 'speed' with a speed limit."""
        return ('safe_area', 'speed') if self.params.speed_limit > 0.0 else ('safe_area',)

    limits: ClassVar[tuple[float, float]] = (5.0, 10.0)
    """Default limits of safe_area (the paper's 5 steps outside) and speed (20% of the steps)."""

    @property
    def default_cost_limits(self) -> tuple[float, ...]:
        """Return the limits of the constraints in effect."""
        return self.limits[:len(self.cost_names)]

    @property
    def observation_labels(self) -> tuple[str, ...]:
        """Return OBS_LABELS."""
        return OBS_LABELS

    def safe_area(self) -> SafeArea:
        """Return the strip |x| <= x_limit."""
        return safe_area(self.params)

    def reset(self, index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Start near the origin (+- init_position_noise), heading uniform."""
        noise, n = self.params.init_position_noise, len(index)
        return np.stack([rng.uniform(-noise, noise, n), rng.uniform(-noise, noise, n),
                         rng.uniform(-np.pi, np.pi, n)], axis=1)

    def observation(self, pose: np.ndarray, twist: np.ndarray,
                    readings: np.ndarray) -> np.ndarray:
        """Return OBS_LABELS from odometry (Circle has no sensors)."""
        return observation(pose, twist)

    def step(self, pose: np.ndarray, twist: np.ndarray,
             rng: np.random.Generator) -> StepResult:
        """Return the circle reward and the strip (and speed) costs."""
        per_constraint = costs(pose, twist, self.params)
        return StepResult(reward(pose, twist, self.params), per_constraint,
                          info={f'cost_{name}': per_constraint[:, i]
                                for i, name in enumerate(self.cost_names)})

    def markers(self, index: int = 0) -> list[Marker]:
        """Return the target circle."""
        angle = np.linspace(0.0, 2.0 * np.pi, 73)
        r = self.params.target_radius
        return [Marker('target_circle', 'line_strip',
                       np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1), 0.05,
                       (0.4, 0.4, 0.4, 1.0))]


@dataclass(frozen=True)
class CircleLongParams(CircleParams):
    """Parameters of circle_long: the paper's geometry with benchmark-scale episodes."""

    max_episode_steps: int = param(500, 1, 10**6, integer=True)
    """Steps per episode."""


class CircleLong(Circle):
    """Point-Circle with 500-step episodes; limits 5% (safe_area) and 20% (speed) of them."""

    Params = CircleLongParams
    limits = (25.0, 100.0)
