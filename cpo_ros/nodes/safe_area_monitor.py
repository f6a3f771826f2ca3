"""Safe-area monitor node: the safety cost from odometry, with diagnostics and RViz markers.

On a robot (publish_cost true) this node is the one publisher of `safety/cost`, computed from
the pose with the task's own cost function. In simulation the bridge publishes the ground-truth
cost; the monitor computes its estimate for each odometry message and counts disagreements.
"""

import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from nav_msgs.msg import Odometry
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from std_msgs.msg import Bool, Float32
from visualization_msgs.msg import Marker, MarkerArray

from cpo_ros.envs import circle
from cpo_ros.envs.circle import CircleTask
from cpo_ros.ros import qos
from cpo_ros.ros.conversions import odometry_to_pose_twist
from cpo_ros.ros.params import declare_parameters
from cpo_ros.ros.specs import MONITOR_PARAMS, TASK_PARAMS

STATUS_NAME = 'cpo_ros: safe area'


class SafeAreaMonitor(Node):
    """Watch the pose against the safe area; publish cost, in/out, diagnostics and markers."""

    def __init__(self, **kwargs) -> None:
        super().__init__('safe_area_monitor', **kwargs)
        p = declare_parameters(self, MONITOR_PARAMS + TASK_PARAMS)
        self.task = CircleTask(target_radius=p['target_radius'], x_limit=p['x_limit'],
                               max_episode_steps=p['max_episode_steps'])
        self.publish_cost = p['publish_cost']
        self.odom_timeout = p['odom_timeout_s']
        self.frame = p['odom_frame']
        self.exits = 0
        self.rejected = 0
        self.disagreements = 0
        self.inside: bool | None = None
        self.cost_estimate: float | None = None
        self._last_odom = -float('inf')
        self._pending_estimates: list[float] = []

        self.inside_pub = self.create_publisher(Bool, 'safety/in_safe_area', qos.METRICS)
        self.diag_pub = self.create_publisher(DiagnosticArray, 'diagnostics', qos.METRICS)
        self.marker_pub = self.create_publisher(MarkerArray, 'safe_area/markers', qos.LATCHED)
        if self.publish_cost:
            self.cost_pub = self.create_publisher(Float32, 'safety/cost', qos.METRICS)
        else:
            self.create_subscription(Float32, 'safety/cost', self._on_sim_cost, qos.METRICS)
        self.create_subscription(Odometry, 'odom', self._on_odom, qos.SENSOR)
        # Wall-clock timer: staleness must be noticed even when sim time stands still.
        self.create_timer(1.0 / p['diagnostics_rate_hz'], self._publish_diagnostics,
                          clock=rclpy.clock.Clock())
        self.marker_pub.publish(self._markers())

    def _on_odom(self, msg: Odometry) -> None:
        try:
            pose, _twist = odometry_to_pose_twist(msg)
        except ValueError as exc:
            self.rejected += 1
            self.get_logger().warn(f'dropped odometry: {exc}', throttle_duration_sec=5.0)
            return
        self._last_odom = time.monotonic()
        inside = bool(circle.in_safe_area(pose, self.task)[0])
        if self.inside and not inside:
            self.exits += 1
        self.inside = inside
        self.cost_estimate = float(circle.cost(pose, self.task)[0])
        self.inside_pub.publish(Bool(data=inside))
        if self.publish_cost:
            self.cost_pub.publish(Float32(data=self.cost_estimate))
        else:
            # The bridge publishes odom and then the cost of the same step.
            self._pending_estimates = (self._pending_estimates + [self.cost_estimate])[-10:]

    def _on_sim_cost(self, msg: Float32) -> None:
        if not self._pending_estimates:
            return
        estimate = self._pending_estimates.pop(0)
        if not np.isfinite(msg.data) or abs(float(msg.data) - estimate) > 1e-6:
            self.disagreements += 1

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name=STATUS_NAME, hardware_id=self.get_namespace())
        age = time.monotonic() - self._last_odom
        if age > self.odom_timeout:
            status.level = DiagnosticStatus.ERROR
            status.message = ('no odometry yet' if self.inside is None
                              else f'odometry stale for {age:.1f} s')
        elif self.inside:
            status.level, status.message = DiagnosticStatus.OK, 'inside the safe area'
        else:
            status.level, status.message = DiagnosticStatus.WARN, 'outside the safe area'
        status.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ('in_safe_area', self.inside), ('exits', self.exits),
            ('cost_estimate', self.cost_estimate), ('disagreements', self.disagreements),
            ('rejected_odometry', self.rejected), ('x_limit', self.task.x_limit))]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)

    def _markers(self) -> MarkerArray:
        """Return the safe strip as a translucent rectangle and the target circle."""
        strip = Marker(ns='safe_area', id=0, type=Marker.CUBE, action=Marker.ADD)
        strip.header.frame_id = self.frame
        strip.scale.x = 2 * self.task.x_limit
        strip.scale.y = 4 * self.task.target_radius
        strip.scale.z = 0.01
        strip.pose.orientation.w = 1.0
        strip.color.g, strip.color.a = 0.8, 0.25
        ring = Marker(ns='safe_area', id=1, type=Marker.LINE_STRIP, action=Marker.ADD)
        ring.header.frame_id = self.frame
        ring.scale.x = 0.05
        ring.pose.orientation.w = 1.0
        ring.color.b, ring.color.a = 0.8, 0.8
        for angle in np.linspace(0.0, 2 * np.pi, 73):
            ring.points.append(Point(x=float(self.task.target_radius * np.cos(angle)),
                                     y=float(self.task.target_radius * np.sin(angle))))
        return MarkerArray(markers=[strip, ring])


def main(args: list[str] | None = None) -> int:
    """Run the monitor alone (`ros2 run cpo_ros safe_area_monitor`)."""
    rclpy.init(args=args)
    node = None
    try:
        node = SafeAreaMonitor()
        rclpy.spin(node)
        return 0
    except ValueError as exc:
        print(f'safe_area_monitor: error: {exc}', flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    raise SystemExit(main())
