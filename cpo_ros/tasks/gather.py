"""The Gather task (CPO paper, Point-Gather): collect apples (+10), avoid bombs (cost 1 each).

Objects lie in a square around the start; the robot senses them with range sensors in angular
bins (as the paper's Gather tasks): per bin, 1 - distance / sensor_range of the closest object
of a kind.
"""

from dataclasses import dataclass
import math

import numpy as np

from cpo_ros.tasks.base import Marker, param, StepResult, Task, TaskParams
from cpo_ros.tasks.safe_area import SafeArea


@dataclass(frozen=True)
class GatherParams(TaskParams):
    """Parameters of the Gather task (defaults: the paper's Point-Gather)."""

    max_episode_steps: int = param(15, 1, 1_000_000, integer=True)
    """Steps per episode (the paper's Gather trajectories: 15)."""
    n_apples: int = param(2, 0, 100, integer=True)
    """Apples per episode (+apple_reward each)."""
    n_bombs: int = param(8, 0, 100, integer=True)
    """Bombs per episode (cost 1 each)."""
    activity_range: float = param(6.0, 0.0, 1e3, low_open=True)
    """Objects are placed in the square |x|, |y| <= activity_range [m]."""
    robot_object_spacing: float = param(2.0, 0.0, 1e3, low_open=True)
    """No object starts closer than this to the robot [m]."""
    catch_range: float = param(1.0, 0.0, 1e3, low_open=True)
    """An object within this distance is collected [m]."""
    n_bins: int = param(10, 1, 360, integer=True)
    """Angular bins per object kind."""
    sensor_range: float = param(6.0, 0.0, 1e3, low_open=True)
    """Range of the object sensors [m]."""
    sensor_span: float = param(math.pi, 0.0, 2 * math.pi, low_open=True)
    """Angular width of the sensors, centred on the heading [rad]."""
    apple_reward: float = param(10.0, 0.0, 1e6, low_open=True)
    """Reward per apple."""

    def check(self) -> None:
        """Refuse a spacing the placement cannot keep."""
        if self.robot_object_spacing >= self.activity_range:
            raise ValueError('robot_object_spacing must be below activity_range')


def robot_obs(pose: np.ndarray, twist: np.ndarray, params: GatherParams) -> np.ndarray:
    """Return (N, 6): position scaled by the activity range, heading, velocities."""
    pose, twist = np.atleast_2d(pose), np.atleast_2d(twist)
    return np.stack([pose[:, 0] / params.activity_range, pose[:, 1] / params.activity_range,
                     np.cos(pose[:, 2]), np.sin(pose[:, 2]), twist[:, 0], twist[:, 1]],
                    axis=1).astype(np.float32)


def sensor_readings(pose: np.ndarray, objects: np.ndarray, alive: np.ndarray,
                    params: GatherParams) -> np.ndarray:
    """Return (N, n_bins) readings for objects (N, K, 2) with an alive mask (N, K)."""
    pose = np.atleast_2d(pose)
    n = pose.shape[0]
    out = np.zeros((n, params.n_bins), np.float32)
    if objects.shape[1] == 0:
        return out
    rel = objects - pose[:, None, :2]
    dist = np.hypot(rel[..., 0], rel[..., 1])
    angle = np.arctan2(rel[..., 1], rel[..., 0]) - pose[:, None, 2]
    angle = (angle + np.pi) % (2 * np.pi) - np.pi
    half = params.sensor_span / 2
    seen = alive & (dist < params.sensor_range) & (np.abs(angle) <= half)
    bins = np.clip(((angle + half) / params.sensor_span * params.n_bins).astype(np.int64), 0,
                   params.n_bins - 1)
    reading = np.where(seen, 1.0 - dist / params.sensor_range, 0.0)
    rows = np.broadcast_to(np.arange(n)[:, None], bins.shape)
    np.maximum.at(out, (rows[seen], bins[seen]), reading[seen].astype(np.float32))
    return out


def caught(pose: np.ndarray, objects: np.ndarray, alive: np.ndarray,
           params: GatherParams) -> np.ndarray:
    """Return bool (N, K): alive objects within catch_range of the robot."""
    rel = objects - np.atleast_2d(pose)[:, None, :2]
    return alive & (np.hypot(rel[..., 0], rel[..., 1]) <= params.catch_range)


class Gather(Task):
    """Point-Gather: apples reward, bombs cost; objects sensed in angular bins."""

    Params = GatherParams

    def __init__(self, params: GatherParams | None = None, num_envs: int = 1) -> None:
        super().__init__(params, num_envs)
        n, p = self.num_envs, self.params
        self.apples = np.zeros((n, p.n_apples, 2))
        self.bombs = np.zeros((n, p.n_bombs, 2))
        self.apples_alive = np.zeros((n, p.n_apples), bool)
        self.bombs_alive = np.zeros((n, p.n_bombs), bool)

    @property
    def cost_names(self) -> tuple[str, ...]:
        """Return ('bombs',)."""
        return ('bombs',)

    @property
    def default_cost_limits(self) -> tuple[float, ...]:
        """Return the paper's 0.1 bombs per trajectory."""
        return (0.1,)

    @property
    def sensor_labels(self) -> tuple[str, ...]:
        """Return apple_0.., bomb_0.. (one per bin and kind)."""
        return tuple(f'{kind}_{i}' for kind in ('apple', 'bomb')
                     for i in range(self.params.n_bins))

    @property
    def observation_labels(self) -> tuple[str, ...]:
        """Return the scaled robot state, then the sensor readings."""
        return ('x_scaled', 'y_scaled', 'cos_yaw', 'sin_yaw', 'v', 'w') + self.sensor_labels

    def safe_area(self) -> SafeArea:
        """Return the arena: the activity square and 1 m around it (all objects lie inside)."""
        e = self.params.activity_range + 1.0
        return SafeArea.rectangle(-e, e, -e, e)

    def _place(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Return count positions in the activity square, none near the start."""
        p = self.params
        points = []
        while len(points) < count:
            point = rng.uniform(-p.activity_range, p.activity_range, 2)
            if np.hypot(*point) >= p.robot_object_spacing:
                points.append(point)
        return np.asarray(points).reshape(count, 2)

    def reset(self, index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Start at the origin, heading uniform; objects around, none near the start."""
        start = np.zeros((len(index), 3))
        start[:, 2] = rng.uniform(-np.pi, np.pi, len(index))
        for i in index:
            self.apples[i] = self._place(self.params.n_apples, rng)
            self.bombs[i] = self._place(self.params.n_bombs, rng)
        self.apples_alive[index] = True
        self.bombs_alive[index] = True
        return start

    def sensors(self, pose: np.ndarray) -> np.ndarray:
        """Return (N, 2 n_bins): apple readings, then bomb readings."""
        return np.concatenate([
            sensor_readings(pose, self.apples, self.apples_alive, self.params),
            sensor_readings(pose, self.bombs, self.bombs_alive, self.params)], axis=1)

    def observation(self, pose: np.ndarray, twist: np.ndarray,
                    readings: np.ndarray) -> np.ndarray:
        """Return (N, 6 + 2 n_bins): robot state, apple readings, bomb readings."""
        return np.concatenate([robot_obs(pose, twist, self.params), readings],
                              axis=1).astype(np.float32)

    def step(self, pose: np.ndarray, twist: np.ndarray,
             rng: np.random.Generator) -> StepResult:
        """Collect what is within reach: apple_reward per apple, cost 1 per bomb."""
        got_apples = caught(pose, self.apples, self.apples_alive, self.params)
        got_bombs = caught(pose, self.bombs, self.bombs_alive, self.params)
        self.apples_alive &= ~got_apples
        self.bombs_alive &= ~got_bombs
        reward = (self.params.apple_reward * got_apples.sum(1)).astype(np.float32)
        return StepResult(reward, got_bombs.sum(1).astype(np.float32)[:, None],
                          info={'apples': got_apples.sum(1)})

    def markers(self, index: int = 0) -> list[Marker]:
        """Return robot index's live apples (green) and bombs (red)."""
        return [Marker('apples', 'points', self.apples[index][self.apples_alive[index]], 0.5,
                       (0.1, 0.8, 0.1, 1.0)),
                Marker('bombs', 'points', self.bombs[index][self.bombs_alive[index]], 0.5,
                       (0.9, 0.1, 0.1, 1.0))]
