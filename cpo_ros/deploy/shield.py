"""The safety shield's decision: pass the policy's command, or replace it with a safe one.

A command passes when the robot is inside the safe area and a unicycle rollout of that command
over a short horizon stays inside. Otherwise the shield turns the robot toward the inside (in
place, then creeping inward once it faces the inside). The caller handles the inputs the
shield cannot trust (stale or non-finite odometry, a missing command, an e-stop): zero velocity.
Whatever goes out, in every mode, is clipped to the robot profile's velocity and acceleration
limits (limit_command).
"""

from dataclasses import dataclass
import math

import numpy as np

from cpo_ros.tasks.safe_area import SafeArea


@dataclass(frozen=True)
class ShieldConfig:
    """How far ahead the shield looks and how it brings the robot back."""

    horizon_s: float = 0.8
    """Look-ahead of the command rollout [s] (cover latency plus stopping distance)."""
    step_s: float = 0.05
    """Integration step of the rollout [s]."""
    turn_rate: float = 1.0
    """Yaw rate of the turn back toward the inside [rad/s]."""
    creep_speed: float = 0.2
    """Forward speed once facing the inside [m/s]."""
    facing_tolerance: float = 0.3
    """Heading error below which the robot counts as facing the inside [rad]."""
    margin: float = 0.0
    """Distance from the boundary a passing command must keep [m]: covers pose noise, command
    latency and actuator error, which the unicycle rollout does not model."""


def limit_command(cmd: np.ndarray, last: np.ndarray, max_vel: np.ndarray, max_acc: np.ndarray,
                  dt: float) -> np.ndarray:
    """Clip cmd to the velocity limits and its change from last to max_acc * dt."""
    cmd = np.clip(np.asarray(cmd, np.float64), -max_vel, max_vel)
    return np.clip(cmd, last - max_acc * dt, last + max_acc * dt)


def rollout(pose: np.ndarray, cmd: np.ndarray, horizon_s: float, step_s: float) -> np.ndarray:
    """Return (K, 2) positions of a unicycle from pose under a constant command (v, w)."""
    x, y, yaw = (float(p) for p in pose)
    v, w = float(cmd[0]), float(cmd[1])
    points = []
    for _ in range(max(1, int(math.ceil(horizon_s / step_s)))):
        x += v * math.cos(yaw) * step_s
        y += v * math.sin(yaw) * step_s
        yaw += w * step_s
        points.append((x, y))
    return np.asarray(points)


def inward_heading(pose: np.ndarray, area: SafeArea) -> float:
    """Return the heading that points into the area from the nearest boundary point."""
    poly = np.asarray(area.vertices)
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a
    p = np.asarray(pose[:2], dtype=np.float64)
    t = np.clip(((p - a) * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
    closest = a + t[:, None] * ab
    nearest = closest[np.argmin(np.linalg.norm(closest - p, axis=1))]
    inside = bool(area.contains(p)[0])
    direction = (p - nearest) if inside else (nearest - p)
    if np.linalg.norm(direction) < 1e-9:  # exactly on the boundary: use the edge normal
        c = area.centre()
        direction = c - p
    return math.atan2(direction[1], direction[0])


def keeps_inside(area: SafeArea, points: np.ndarray, margin: float) -> bool:
    """Return whether every point is inside the area, at least margin from its boundary."""
    if not area.contains(points).all():
        return False
    return margin <= 0.0 or bool(area.boundary_distance(points).min() >= margin)


def shield_command(pose: np.ndarray, cmd: np.ndarray, area: SafeArea,
                   config: ShieldConfig) -> tuple[np.ndarray, bool]:
    """Return (command to send, whether the shield replaced the policy's command)."""
    inside = bool(area.contains(np.asarray(pose[:2]))[0])
    if inside and keeps_inside(area, rollout(pose, cmd, config.horizon_s, config.step_s),
                               config.margin):
        return np.asarray(cmd, dtype=np.float64), False
    error = (inward_heading(pose, area) - float(pose[2]) + math.pi) % (2 * math.pi) - math.pi
    if abs(error) < config.facing_tolerance:
        safe = np.array([config.creep_speed, config.turn_rate * error / config.facing_tolerance])
        if inside and not area.contains(rollout(pose, safe, config.horizon_s,
                                                config.step_s)).all():
            safe[0] = 0.0  # (creeping inward within the margin is allowed: it moves away)
    else:
        safe = np.array([0.0, math.copysign(config.turn_rate, error)])
    return safe, True
