"""Goals for a navigation task from `goal_pose`, as RViz's "2D Goal Pose" tool sends them.

geometry_msgs/PoseStamped in the task frame (task_frame; the pose is then placed relative to
task_origin like the robot's pose). A goal in another frame, or with non-finite coordinates,
is refused and counted, naming both frames; the current goal stays. The subscription is
reliable and volatile, as RViz and `ros2 topic pub` publish. Arrival goes out on `goal/reached`
(the goal, PoseStamped in the task frame, latched so a late listener hears the last one).
"""

import math

from geometry_msgs.msg import PoseStamped
import numpy as np
from rclpy.node import Node

from cpo_ros.ros import qos
from cpo_ros.ros.pose_input import from_task_frame, to_task_frame


class GoalInput:
    """Hold the operator's current goal (task coordinates) and report arrivals."""

    def __init__(self, node: Node, task_frame: str, origin: np.ndarray,
                 topic: str = 'goal_pose') -> None:
        self.node = node
        self.task_frame = task_frame
        self.origin = np.asarray(origin, dtype=np.float64)
        self.topic = topic
        self.goal: np.ndarray | None = None
        """The goal (x, y) in task coordinates, None when there is none to drive to."""
        self.received = self.rejected = self.reached = 0
        self.last_refusal: str | None = None
        self.callbacks: list = []
        node.create_subscription(PoseStamped, topic, self._on_msg, qos.CLI_DEFAULT)
        self.reached_pub = node.create_publisher(PoseStamped, 'goal/reached', qos.LATCHED)

    def _on_msg(self, msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        if msg.header.frame_id != self.task_frame:
            reason = (f"goal in frame '{msg.header.frame_id}', the task is in frame "
                      f"'{self.task_frame}': send goals in the task frame")
        elif not all(math.isfinite(v) for v in (p.x, p.y, o.x, o.y, o.z, o.w)):
            reason = 'goal holds non-finite values'
        else:
            # A goal is a position: its orientation (any, a zero quaternion too) is not used.
            self.goal = to_task_frame(np.array([p.x, p.y, 0.0]), self.origin)[:2]
            self.received += 1
            # Throttled: goals come from the wire, a flood must not flood the log.
            self.node.get_logger().info(f'new goal ({p.x:.2f}, {p.y:.2f}) in '
                                        f"'{self.task_frame}'", throttle_duration_sec=1.0)
            for callback in self.callbacks:
                callback()
            return
        self.rejected += 1
        self.last_refusal = reason
        self.node.get_logger().warn(f'refused {self.topic}: {reason}', throttle_duration_sec=1.0)

    def arrived(self) -> None:
        """Report arrival at the current goal (goal/reached) and drop it: the robot stops."""
        if self.goal is None:
            return
        self.reached += 1
        xy = from_task_frame(self.goal, self.origin)[0]
        msg = PoseStamped()
        msg.header.frame_id = self.task_frame
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.pose.position.x, msg.pose.position.y = float(xy[0]), float(xy[1])
        msg.pose.orientation.w = 1.0
        self.reached_pub.publish(msg)
        self.node.get_logger().info(f'goal reached ({xy[0]:.2f}, {xy[1]:.2f}): stopping '
                                    f'until the next goal')
        self.goal = None

    def status(self) -> str:
        """Return 'driving to (x, y)' or 'no goal' for the diagnostics."""
        if self.goal is None:
            return 'no goal: waiting on goal_pose'
        return f'driving to ({self.goal[0]:.2f}, {self.goal[1]:.2f}) in task coordinates'

