"""What the ROS nodes need to know of each task: sensors, observation, default limit.

The simulator publishes odometry and the task's sensor readings; the executor rebuilds the
observation from them with `observation`, exactly as the env does.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cpo_ros.envs import circle, gather


@dataclass(frozen=True)
class TaskInfo:
    """A task as the graph sees it."""

    name: str
    sensor_labels: tuple[str, ...]
    obs_dim: int
    observation: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    cost_limit: float


def task_info(name: str) -> TaskInfo:
    """Return the TaskInfo of 'circle' or 'gather' (default constants)."""
    if name == 'circle':
        return TaskInfo('circle', (), len(circle.OBS_LABELS),
                        lambda pose, twist, _sensors: circle.observation(pose, twist), 5.0)
    if name == 'gather':
        task = gather.GatherTask()
        labels = gather.sensor_labels(task)
        return TaskInfo('gather', labels, 6 + len(labels),
                        lambda pose, twist, sensors: gather.observation_from(pose, twist,
                                                                             sensors, task),
                        0.1)
    raise ValueError(f"unknown task {name!r}: choose 'circle' or 'gather'")
