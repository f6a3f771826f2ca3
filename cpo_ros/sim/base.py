"""What the project's tasks share: a vectorised env on PointRobots and a one-robot Gymnasium env.

Each task (Circle, Gather, Goal) adds its placement, reward, cost and observation; the robots,
the spaces, the action checks and the Gymnasium wrapper are written once here.
"""

from typing import Any

import gymnasium as gym
import numpy as np

from cpo_ros.sim.robot import PointRobots, RobotConfig


class VecPointTask:
    """Base of the vectorised tasks: num_envs robots in one MuJoCo model, Twist actions.

    Subclasses set task and cost_names, and implement _reset_envs, reset, observation and step
    (ending with end_step: obs, reward, cost, terminated, truncated, info with auto-reset and
    info['final_obs']).
    """

    act_dim = 2

    def __init__(self, num_envs: int, robot: RobotConfig, obs_dim: int, seed: int,
                 autoreset: bool) -> None:
        self.robots = PointRobots(num_envs, robot)
        self.num_envs = self.robots.num_robots
        self.autoreset = autoreset
        self.obs_dim = obs_dim
        limits = np.array([robot.max_linear_velocity, robot.max_angular_velocity], np.float32)
        self.single_action_space = gym.spaces.Box(-limits, limits, dtype=np.float32)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.episode_step = np.zeros(self.num_envs, np.int64)
        self.rng = np.random.default_rng(seed)

    @property
    def max_episode_steps(self) -> int:
        """Return the episode length of the task."""
        return self.task.max_episode_steps

    def poses(self) -> np.ndarray:
        """Return (N, 3) x, y, yaw."""
        return self.robots.pose()

    def twists(self) -> np.ndarray:
        """Return (N, 2) forward velocity and yaw rate."""
        return self.robots.twist()

    def odometry(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (pose, twist) as the robots' odometry reports them."""
        return self.robots.pose(), self.robots.twist()

    def checked_actions(self, actions: np.ndarray) -> np.ndarray:
        """Return actions (N, 2) [v, yaw rate] as float64; ValueError on shape or NaN."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, self.act_dim):
            raise ValueError(f'action has shape {actions.shape}, expected '
                             f'({self.num_envs}, {self.act_dim})')
        if not np.all(np.isfinite(actions)):
            raise ValueError('action holds non-finite values')
        return actions

    def end_step(self, obs: np.ndarray, reward: np.ndarray, cost: np.ndarray,
                 pose: np.ndarray, twist: np.ndarray, sensors: np.ndarray,
                 **extra: Any) -> tuple:
        """Count the step, truncate at the episode length and auto-reset; return step()'s tuple.

        info holds the last state of each episode that ended (final_obs, final_pose,
        final_twist, final_sensors), the step counts and the task's extra entries.
        """
        self.episode_step += 1
        truncated = self.episode_step >= self.task.max_episode_steps
        terminated = np.zeros(self.num_envs, bool)
        info = {'final_obs': obs.copy(), 'final_pose': pose, 'final_twist': twist,
                'final_sensors': sensors, 'episode_step': self.episode_step.copy(), **extra}
        if self.autoreset and truncated.any():
            idx = np.flatnonzero(truncated)
            self._reset_envs(idx)
            obs = obs.copy()
            obs[idx] = self.observation()[idx]
        return obs, reward, cost, terminated, truncated, info


class PointTaskEnv(gym.Env):
    """Gymnasium env of one robot over a vectorised task (no auto-reset; info['cost'])."""

    metadata = {'render_modes': []}

    def __init__(self, vec: VecPointTask) -> None:
        self._vec = vec
        self.task = vec.task
        self.action_space = vec.single_action_space
        self.observation_space = vec.single_observation_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode as the task places it."""
        super().reset(seed=seed)
        return self._vec.reset(seed=int(self.np_random.integers(2 ** 31)))[0], {}

    def step(self, action):
        """Apply one (v, yaw rate) action; truncates at max_episode_steps."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f'action has shape {action.shape}, expected '
                             f'{self.action_space.shape}')
        obs, rew, cst, terminated, truncated, info = self._vec.step(action[None])
        return (obs[0], float(rew[0]), bool(terminated[0]), bool(truncated[0]),
                self.step_info(cst[0], info))

    def step_info(self, cost: Any, info: dict[str, Any]) -> dict[str, Any]:
        """Return the info of a step from robot 0's cost and the vectorised info."""
        return {'cost': float(cost)}
