"""What a navigation task reads on a robot: its LaserScan and the operator's goals.

For a task with a scan (Task.scan_spec) the deployed executor reads `scan` (any scanner,
resampled onto the policy's rays, cpo_ros.ros.laser_scan) instead of `task/sensors`; for a task
that takes goals (Task.takes_goals) it drives to the latest goal on `goal_pose`, reports
arrival on `goal/reached` and stops there until the next goal.
"""

import numpy as np
from rclpy.node import Node

from cpo_ros.ros.goal_input import GoalInput
from cpo_ros.ros.laser_scan import ScanInput
from cpo_ros.tasks.base import Task


class NavigationInputs:
    """The scan and goal inputs of a navigation task, and the readings they give."""

    def __init__(self, node: Node, p: dict, task: Task) -> None:
        self.task = task
        self.scan = ScanInput(node, p, task.scan_spec)
        self.goals = (GoalInput(node, p['task_frame'], np.asarray(p['task_origin']))
                      if task.takes_goals else None)

    @staticmethod
    def wanted(task: Task) -> bool:
        """Return whether the task reads a scan (the robot then needs these inputs)."""
        return task.scan_spec is not None

    def use_task(self, task: Task) -> None:
        """Read for task (the policy's own parameters, once it is loaded)."""
        self.task = task
        self.scan.spec = task.scan_spec

    def stop_reason(self, pose: np.ndarray) -> str | None:
        """Return why the robot must stand still now (no goal, arrived, no fresh scan)."""
        if self.goals is not None:
            if self.goals.goal is None:
                return 'no goal: waiting on goal_pose'
            self.task.set_goal(0, self.goals.goal)
            if self.task.at_goal(np.atleast_2d(pose))[0]:
                self.goals.arrived()
                return 'goal reached: waiting on goal_pose for the next'
        return self.scan.stop_reason()

    def readings(self, pose: np.ndarray) -> np.ndarray:
        """Return the task's sensor readings, shape (1, number of labels), from the latest scan."""
        return self.task.sensors(np.atleast_2d(pose), scan=self.scan.ranges[None])

    def status(self) -> list[tuple[str, object]]:
        """Return diagnostics entries: goal state, arrivals, scans received and refused."""
        out: list[tuple[str, object]] = [('scans', self.scan.received),
                                         ('rejected_scans', self.scan.rejected)]
        if self.goals is not None:
            out += [('goal', self.goals.status()), ('goals_received', self.goals.received),
                    ('goals_reached', self.goals.reached),
                    ('rejected_goals', self.goals.rejected),
                    ('last_goal_refusal', self.goals.last_refusal)]
        return out
