"""Corridor: drive along +x down a corridor; touching the walls and reversing cost.

The worked example of docs/tasks.md: a task outside cpo_ros, found through the `cpo_ros.tasks`
entry-point group (pyproject.toml) or the dotted path `corridor_task.tasks:Corridor`.
"""

from dataclasses import dataclass

import numpy as np

from cpo_ros.tasks.base import Marker, param, StepResult, Task, TaskParams
from cpo_ros.tasks.safe_area import SafeArea


@dataclass(frozen=True)
class CorridorParams(TaskParams):
    """Parameters of the corridor."""

    max_episode_steps: int = param(100, 1, 100_000, integer=True)
    """Steps per episode."""
    half_width: float = param(1.0, 0.1, 100.0)
    """The corridor is |y| <= half_width [m]; each step outside costs 1 ('wall')."""
    length: float = param(50.0, 1.0, 1e4)
    """Length of the corridor along +x from the start [m] (the safe area's extent)."""
    sensor_range: float = param(2.0, 0.1, 100.0)
    """Wall distances beyond this read as this [m]."""


class Corridor(Task):
    """Drive down a corridor: reward forward progress, cost outside the walls and in reverse."""

    Params = CorridorParams

    @property
    def cost_names(self) -> tuple[str, ...]:
        """Return the two constraints: outside the walls, driving backwards."""
        return ('wall', 'reverse')

    @property
    def default_cost_limits(self) -> tuple[float, ...]:
        """Return 5 steps outside and 10 steps in reverse per episode."""
        return (5.0, 10.0)

    @property
    def sensor_labels(self) -> tuple[str, ...]:
        """Return the distances to the left and right walls."""
        return ('wall_left', 'wall_right')

    @property
    def observation_labels(self) -> tuple[str, ...]:
        """Return heading, velocities, then the wall distances."""
        return ('cos_yaw', 'sin_yaw', 'v', 'w') + self.sensor_labels

    def safe_area(self) -> SafeArea:
        """Return the corridor as a rectangle (the monitor and the shield keep to it)."""
        p = self.params
        return SafeArea.rectangle(-1.0, p.length, -p.half_width, p.half_width)

    def reset(self, index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Start at the entrance, near the centre line, heading roughly down the corridor."""
        n = len(index)
        return np.stack([np.zeros(n), rng.uniform(-0.2, 0.2, n) * self.params.half_width,
                         rng.uniform(-0.5, 0.5, n)], axis=1)

    def sensors(self, pose: np.ndarray) -> np.ndarray:
        """Return the distances to the walls (N, 2), clipped to the sensor range."""
        p = self.params
        y = pose[:, 1]
        return np.clip(np.stack([p.half_width - y, p.half_width + y], axis=1), 0.0,
                       p.sensor_range).astype(np.float32)

    def observation(self, pose: np.ndarray, twist: np.ndarray,
                    readings: np.ndarray) -> np.ndarray:
        """Return heading as cos/sin, the twist and the wall distances."""
        yaw = pose[:, 2]
        return np.concatenate([np.stack([np.cos(yaw), np.sin(yaw)], axis=1), twist[:, :2],
                               readings], axis=1).astype(np.float32)

    def step(self, pose: np.ndarray, twist: np.ndarray,
             rng: np.random.Generator) -> StepResult:
        """Reward the velocity along +x; cost 1 outside the walls, 1 when reversing."""
        reward = (twist[:, 0] * np.cos(pose[:, 2])).astype(np.float32)
        wall = (np.abs(pose[:, 1]) > self.params.half_width).astype(np.float32)
        reverse = (twist[:, 0] < -0.05).astype(np.float32)
        return StepResult(reward, np.stack([wall, reverse], axis=1))

    def markers(self, index: int = 0) -> list[Marker]:
        """Return the two walls as lines."""
        p = self.params
        return [Marker(f'wall_{side}', 'line_strip',
                       np.array([[-1.0, sign * p.half_width], [p.length, sign * p.half_width]]),
                       0.05, (0.3, 0.3, 0.3, 1.0))
                for side, sign in (('left', 1.0), ('right', -1.0))]
