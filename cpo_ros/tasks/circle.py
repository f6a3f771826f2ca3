"""The Circle task (CPO paper, Point-Circle): reward, cost and observation from odometry.

These functions are the only definition of the task: the simulator, the policy executor and
the safe-area monitor on a real robot all call them with odometry quantities (pose x, y, yaw and
twist v, yaw rate), so a robot computes exactly what the simulation trained on.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cpo_ros.tasks.safe_area import SafeArea
from cpo_ros.validation import check_range

OBS_LABELS = ('x', 'y', 'cos_yaw', 'sin_yaw', 'v', 'w')
"""Observation layout: position [m], heading as cos/sin, forward velocity [m/s], yaw rate."""


@dataclass(frozen=True)
class CircleTask:
    """Constants of the Circle task (defaults: the paper's Point-Circle)."""

    target_radius: float = 15.0
    """Radius of the circle the reward asks to run along [m]."""
    x_limit: float = 2.5
    """Safe area: the strip |x| <= x_limit; cost 1 per step outside it."""
    max_episode_steps: int = 50
    """Steps per episode (the paper's trajectories are 50-65 steps)."""
    init_position_noise: float = 0.1
    """Start positions are uniform in +- this around the origin; yaw is uniform."""
    speed_limit: float = 0.0
    """A second constraint when > 0: cost 1 per step whose speed exceeds it [m/s] (0: off)."""

    @property
    def cost_names(self) -> tuple[str, ...]:
        """Return the names of the task's constraints, in the order of the cost vector."""
        return ('safe_area', 'speed') if self.speed_limit > 0.0 else ('safe_area',)

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        check_range('target_radius', self.target_radius, 0.0, 1e4, low_open=True)
        check_range('x_limit', self.x_limit, 0.0, 1e4, low_open=True)
        check_range('init_position_noise', self.init_position_noise, 0.0, 1e4)
        check_range('speed_limit', self.speed_limit, 0.0, 1e4)
        check_range('max_episode_steps', self.max_episode_steps, 1, 10**6, integer=True)


def _pose2d(pose: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(pose, dtype=np.float64))


def observation(pose: np.ndarray, twist: np.ndarray) -> np.ndarray:
    """Return (N, 6) float32 observations (OBS_LABELS) from poses (N, 3) and twists (N, 2)."""
    pose, twist = _pose2d(pose), _pose2d(twist)
    return np.stack([pose[:, 0], pose[:, 1], np.cos(pose[:, 2]), np.sin(pose[:, 2]),
                     twist[:, 0], twist[:, 1]], axis=1).astype(np.float32)


def reward(pose: np.ndarray, twist: np.ndarray, task: CircleTask) -> np.ndarray:
    """Return (N,) rewards v_world . [-y, x] / (1 + | |(x, y)| - target_radius |).

    v_world = v (cos yaw, sin yaw) from the odometry twist: the robot computes the same value.
    """
    pose, twist = _pose2d(pose), _pose2d(twist)
    x, y, yaw = pose[:, 0], pose[:, 1], pose[:, 2]
    vx, vy = twist[:, 0] * np.cos(yaw), twist[:, 0] * np.sin(yaw)
    radius = np.hypot(x, y)
    return ((-y * vx + x * vy) / (1.0 + np.abs(radius - task.target_radius))).astype(np.float32)


@lru_cache(maxsize=32)
def safe_area(task: CircleTask) -> SafeArea:
    """Return the task's safe area: the strip |x| <= x_limit (what the monitor guards too)."""
    return SafeArea.strip(task.x_limit)


def in_safe_area(pose: np.ndarray, task: CircleTask) -> np.ndarray:
    """Return (N,) bool: inside the strip |x| <= x_limit."""
    return safe_area(task).contains(_pose2d(pose)[:, :2])


def cost(pose: np.ndarray, task: CircleTask) -> np.ndarray:
    """Return (N,) float32 cost: 1 outside the safe strip, 0 inside."""
    return (~in_safe_area(pose, task)).astype(np.float32)


def costs(pose: np.ndarray, twist: np.ndarray, task: CircleTask) -> np.ndarray:
    """Return (N, m) float32 costs in the order of task.cost_names.

    safe_area: 1 outside the strip; speed (when task.speed_limit > 0): 1 when the forward
    speed exceeds the limit.
    """
    columns = [cost(pose, task)]
    if task.speed_limit > 0.0:
        columns.append((np.abs(_pose2d(twist)[:, 0]) > task.speed_limit).astype(np.float32))
    return np.stack(columns, axis=1)
