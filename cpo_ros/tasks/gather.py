"""The Gather task (CPO paper, Point-Gather): collect apples (+10), avoid bombs (cost 1 each).

Objects lie in a square around the start; the robot senses them with range sensors in angular
bins (as the paper's Gather tasks): per bin, 1 - distance / sensor_range of the closest object
of a kind. The functions here are the only definition of the task: the simulator and the ROS
nodes call them.
"""

from dataclasses import dataclass
import math
from typing import Any

import numpy as np

from cpo_ros.sim.base import PointTaskEnv, VecPointTask
from cpo_ros.sim.robot import apply_overrides, RobotConfig
from cpo_ros.validation import check_range


@dataclass(frozen=True)
class GatherTask:
    """Constants of the Gather task (defaults: the paper's Point-Gather)."""

    n_apples: int = 2
    """Apples per episode (+apple_reward each)."""
    n_bombs: int = 8
    """Bombs per episode (cost 1 each)."""
    activity_range: float = 6.0
    """Objects are placed in the square |x|, |y| <= activity_range [m]."""
    robot_object_spacing: float = 2.0
    """No object starts closer than this to the robot [m]."""
    catch_range: float = 1.0
    """An object within this distance is collected [m]."""
    n_bins: int = 10
    """Angular bins per object kind."""
    sensor_range: float = 6.0
    """Range of the object sensors [m]."""
    sensor_span: float = math.pi
    """Angular width of the sensors, centred on the heading [rad]."""
    apple_reward: float = 10.0
    """Reward per apple."""
    max_episode_steps: int = 15
    """Steps per episode (the paper's Gather trajectories: 15)."""

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        for name, low, high in (('n_apples', 0, 100), ('n_bombs', 0, 100), ('n_bins', 1, 360),
                                ('max_episode_steps', 1, 1_000_000)):
            check_range(name, getattr(self, name), low, high, integer=True)
        for name, high in (('activity_range', 1e3), ('robot_object_spacing', 1e3),
                           ('catch_range', 1e3), ('sensor_range', 1e3),
                           ('sensor_span', 2 * math.pi), ('apple_reward', 1e6)):
            check_range(name, getattr(self, name), 0.0, high, low_open=True)
        if self.robot_object_spacing >= self.activity_range:
            raise ValueError('robot_object_spacing must be below activity_range')


def robot_obs(pose: np.ndarray, twist: np.ndarray, task: GatherTask) -> np.ndarray:
    """Return (N, 6): position scaled by the activity range, heading, velocities."""
    pose, twist = np.atleast_2d(pose), np.atleast_2d(twist)
    return np.stack([pose[:, 0] / task.activity_range, pose[:, 1] / task.activity_range,
                     np.cos(pose[:, 2]), np.sin(pose[:, 2]), twist[:, 0], twist[:, 1]],
                    axis=1).astype(np.float32)


def sensor_readings(pose: np.ndarray, objects: np.ndarray, alive: np.ndarray,
                    task: GatherTask) -> np.ndarray:
    """Return (N, n_bins) readings for objects (N, K, 2) with an alive mask (N, K)."""
    pose = np.atleast_2d(pose)
    n = pose.shape[0]
    out = np.zeros((n, task.n_bins), np.float32)
    if objects.shape[1] == 0:
        return out
    rel = objects - pose[:, None, :2]
    dist = np.hypot(rel[..., 0], rel[..., 1])
    angle = np.arctan2(rel[..., 1], rel[..., 0]) - pose[:, None, 2]
    angle = (angle + np.pi) % (2 * np.pi) - np.pi
    half = task.sensor_span / 2
    seen = alive & (dist < task.sensor_range) & (np.abs(angle) <= half)
    bins = np.clip(((angle + half) / task.sensor_span * task.n_bins).astype(np.int64), 0,
                   task.n_bins - 1)
    reading = np.where(seen, 1.0 - dist / task.sensor_range, 0.0)
    rows = np.broadcast_to(np.arange(n)[:, None], bins.shape)
    np.maximum.at(out, (rows[seen], bins[seen]), reading[seen].astype(np.float32))
    return out


def sensors(pose, apples, apples_alive, bombs, bombs_alive, task: GatherTask) -> np.ndarray:
    """Return (N, 2 n_bins): apple readings, then bomb readings (sensor_labels order)."""
    return np.concatenate([sensor_readings(pose, apples, apples_alive, task),
                           sensor_readings(pose, bombs, bombs_alive, task)], axis=1)


def sensor_labels(task: GatherTask) -> tuple[str, ...]:
    """Return the names of the sensor readings: apple_0.., bomb_0.."""
    return tuple(f'{kind}_{i}' for kind in ('apple', 'bomb') for i in range(task.n_bins))


def observation_from(pose, twist, readings: np.ndarray, task: GatherTask) -> np.ndarray:
    """Return (N, 6 + 2 n_bins) observations from odometry and sensor readings."""
    return np.concatenate([robot_obs(pose, twist, task), readings], axis=1).astype(np.float32)


def observation(pose, twist, apples, apples_alive, bombs, bombs_alive,
                task: GatherTask) -> np.ndarray:
    """Return (N, 6 + 2 n_bins): robot state, apple readings, bomb readings."""
    return observation_from(pose, twist, sensors(pose, apples, apples_alive, bombs,
                                                 bombs_alive, task), task)


def caught(pose: np.ndarray, objects: np.ndarray, alive: np.ndarray,
           task: GatherTask) -> np.ndarray:
    """Return bool (N, K): alive objects within catch_range of the robot."""
    rel = objects - np.atleast_2d(pose)[:, None, :2]
    return alive & (np.hypot(rel[..., 0], rel[..., 1]) <= task.catch_range)


class VecPointGather(VecPointTask):
    """num_envs Point-Gather episodes in one MuJoCo model, with VecPointCircle's interface."""

    def __init__(self, num_envs: int = 1, task: GatherTask | None = None,
                 robot: RobotConfig | None = None, seed: int = 0, autoreset: bool = True,
                 **overrides: Any) -> None:
        self.task, robot = apply_overrides(task or GatherTask(), robot or RobotConfig(),
                                           overrides, 'Point-Gather')
        super().__init__(num_envs, robot, 6 + 2 * self.task.n_bins, seed, autoreset)
        self.cost_names, self.num_costs = ('bombs',), 1
        n, t = self.num_envs, self.task
        self.apples = np.zeros((n, t.n_apples, 2))
        self.bombs = np.zeros((n, t.n_bombs, 2))
        self.apples_alive = np.zeros((n, t.n_apples), bool)
        self.bombs_alive = np.zeros((n, t.n_bombs), bool)

    def _place(self, count: int) -> np.ndarray:
        """Return count positions in the activity square, none near the start."""
        t = self.task
        points = []
        while len(points) < count:
            p = self.rng.uniform(-t.activity_range, t.activity_range, 2)
            if np.hypot(*p) >= t.robot_object_spacing:
                points.append(p)
        return np.asarray(points).reshape(count, 2)

    def _reset_envs(self, idx: np.ndarray) -> None:
        n = len(idx)
        self.robots.set_pose(idx, 0.0, 0.0, self.rng.uniform(-np.pi, np.pi, n))
        for i in idx:
            self.apples[i] = self._place(self.task.n_apples)
            self.bombs[i] = self._place(self.task.n_bombs)
        self.apples_alive[idx] = True
        self.bombs_alive[idx] = True
        self.episode_step[idx] = 0

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every env; return observations (N, obs_dim)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._reset_envs(np.arange(self.num_envs))
        return self.observation()

    def sensors(self) -> np.ndarray:
        """Return the current sensor readings (N, 2 n_bins)."""
        return sensors(self.robots.pose(), self.apples, self.apples_alive, self.bombs,
                       self.bombs_alive, self.task)

    def observation(self) -> np.ndarray:
        """Return the current observations (N, obs_dim)."""
        return observation_from(self.robots.pose(), self.robots.twist(), self.sensors(),
                                self.task)

    def step(self, actions: np.ndarray):
        """Apply actions (N, 2) [v, yaw rate]; returns like VecPointCircle.step."""
        self.robots.step(self.checked_actions(actions))
        pose = self.robots.pose()
        got_apples = caught(pose, self.apples, self.apples_alive, self.task)
        got_bombs = caught(pose, self.bombs, self.bombs_alive, self.task)
        self.apples_alive &= ~got_apples
        self.bombs_alive &= ~got_bombs
        rew = (self.task.apple_reward * got_apples.sum(1)).astype(np.float32)
        cst = got_bombs.sum(1).astype(np.float32)
        obs = self.observation()
        return self.end_step(obs, rew, cst, pose, self.twists(), obs[:, 6:].copy(),
                             apples=got_apples.sum(1))


class PointGatherEnv(PointTaskEnv):
    """Gymnasium Point-Gather: one robot; info['cost'] counts the bombs of the step."""

    def __init__(self, **overrides: Any) -> None:
        super().__init__(VecPointGather(1, autoreset=False, **overrides))

    def step_info(self, cost: Any, info: dict[str, Any]) -> dict[str, Any]:
        """Return the bombs and the apples of the step."""
        return {'cost': float(cost), 'apples': int(info['apples'][0])}
