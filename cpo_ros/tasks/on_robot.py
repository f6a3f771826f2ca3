"""A task as the robot's realtime sampler calls it (training/realtime.py's RobotTask).

The same shape as the public task interface (reset, observation, step on N robots), built from
the functions the simulator calls, so a robot computes the reward and costs the simulation
trained on.
"""

from dataclasses import dataclass

import numpy as np

from cpo_ros.tasks import circle


@dataclass
class StepOutcome:
    """Reward, costs and terminations of one step of N robots."""

    reward: np.ndarray
    costs: np.ndarray
    terminated: np.ndarray | None = None


class CircleOnRobot:
    """Circle on a robot: start poses near the origin, reward and costs from odometry."""

    def __init__(self, task: circle.CircleTask) -> None:
        task.validate()
        self.params = task
        self.cost_names = task.cost_names
        self.max_episode_steps = task.max_episode_steps
        self.sensor_labels: tuple[str, ...] = ()
        self.obs_dim = len(circle.OBS_LABELS)

    def reset(self, index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return start poses (len(index), 3), as the simulator draws them."""
        n, noise = len(index), self.params.init_position_noise
        return np.stack([rng.uniform(-noise, noise, n), rng.uniform(-noise, noise, n),
                         rng.uniform(-np.pi, np.pi, n)], axis=1)

    def observation(self, pose: np.ndarray, twist: np.ndarray,
                    readings: np.ndarray) -> np.ndarray:
        """Return (N, 6) observations."""
        return circle.observation(pose, twist)

    def step(self, pose: np.ndarray, twist: np.ndarray,
             rng: np.random.Generator) -> StepOutcome:
        """Return the reward and costs of robots measured at pose, twist after a step."""
        return StepOutcome(circle.reward(pose, twist, self.params),
                           circle.costs(pose, twist, self.params))

    def safe_area(self):
        """Return the safe area the monitor guards."""
        return circle.safe_area(self.params)


def robot_task(name: str, **params) -> CircleOnRobot:
    """Return the task `name` for a robot; ValueError for a task a robot cannot measure yet."""
    if name == 'circle':
        return CircleOnRobot(circle.CircleTask(**params))
    raise ValueError(f'task {name!r} cannot learn on a robot yet: its reward needs what the '
                     f"simulator alone knows; choose 'circle'")
