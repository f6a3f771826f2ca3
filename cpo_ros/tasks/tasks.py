"""What the ROS nodes need to know of each task: sensors, observation, constraints.

The simulator publishes odometry and the task's sensor readings; the executor rebuilds the
observation from them with `observation`, exactly as the env does.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cpo_ros.tasks import circle, gather


@dataclass(frozen=True)
class TaskInfo:
    """A task as the graph sees it."""

    name: str
    sensor_labels: tuple[str, ...]
    obs_dim: int
    observation: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    cost_names: tuple[str, ...] = ('cost',)

    @property
    def cost_fields(self) -> tuple[str, ...]:
        """Return the cost columns of batch/state: 'cost', or 'cost_<name>' for several."""
        if len(self.cost_names) == 1:
            return ('cost',)
        return tuple(f'cost_{name}' for name in self.cost_names)


def task_info(name: str, speed_limit: float = 0.0) -> TaskInfo:
    """Return the TaskInfo of 'circle' or 'gather' (speed_limit > 0: Circle's 2nd constraint)."""
    if name == 'circle':
        return TaskInfo('circle', (), len(circle.OBS_LABELS),
                        lambda pose, twist, _sensors: circle.observation(pose, twist),
                        circle.CircleTask(speed_limit=speed_limit).cost_names)
    if name == 'gather':
        task = gather.GatherTask()
        labels = gather.sensor_labels(task)
        return TaskInfo('gather', labels, 6 + len(labels),
                        lambda pose, twist, sensors: gather.observation_from(pose, twist,
                                                                             sensors, task),
                        ('bombs',))
    raise ValueError(f"unknown task {name!r}: choose 'circle' or 'gather'")
