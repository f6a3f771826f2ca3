"""The policy executor in deployment: a lifecycle node that commands the robot only while active.

configure loads the exported policy (refused with its path and reason when missing, altered or
of another layout); activate starts commanding; deactivate sends a stop first. At
control_rate_hz the mean action for the newest odometry goes out on `policy/cmd_vel` (to the
safe-area monitor, which gates it to the robot's `cmd_vel`), within velocity and acceleration
limits. Missing, stale or non-finite odometry means a stop command, not the last command.
"""

import time

from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
import numpy as np
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
import torch

from cpo_ros.core.checkpoint import CheckpointError
from cpo_ros.core.export import CIRCLE_OBS, load_exported, TWIST_ACTIONS
from cpo_ros.envs import circle
from cpo_ros.ros import qos
from cpo_ros.ros.conversions import array_to_twist_stamped, odometry_to_pose_twist
from cpo_ros.ros.params import declare_parameters
from cpo_ros.ros.specs import DEPLOY_EXECUTOR_PARAMS, TASK_PARAMS


def limit_command(cmd: np.ndarray, last: np.ndarray, max_vel: np.ndarray, max_acc: np.ndarray,
                  dt: float) -> np.ndarray:
    """Clip cmd to the velocity limits and its change from last to max_acc * dt."""
    cmd = np.clip(cmd, -max_vel, max_vel)
    return np.clip(cmd, last - max_acc * dt, last + max_acc * dt)


class DeployedPolicyExecutor(LifecycleNode):
    """Run an exported policy on the robot's odometry while the lifecycle state is active."""

    def __init__(self, **kwargs) -> None:
        super().__init__('policy_executor', **kwargs)
        p = declare_parameters(self, DEPLOY_EXECUTOR_PARAMS + TASK_PARAMS)
        self.p = p
        self.dt = 1.0 / p['control_rate_hz']
        self.max_vel = np.array([p['max_linear_velocity'], p['max_angular_velocity']])
        self.max_acc = np.array([p['max_linear_accel'], p['max_angular_accel']])
        self.policy = None
        self.meta: dict = {}
        self._pub = self._timer = self._sub = None
        self._active = False
        self._obs: np.ndarray | None = None
        self._odom_time = -float('inf')
        self._last = np.zeros(2)
        if p['autostart']:
            self.trigger_configure()
            if self.policy is not None:
                self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the exported policy and create the publisher, subscription and timer."""
        try:
            self.policy, self.meta = load_exported(self.p['policy_dir'], CIRCLE_OBS,
                                                   TWIST_ACTIONS)
        except CheckpointError as exc:
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        self._pub = self.create_lifecycle_publisher(TwistStamped, 'policy/cmd_vel',
                                                     qos.COMMAND)
        self._sub = self.create_subscription(Odometry, 'odom', self._on_odom, qos.SENSOR)
        self._timer = self.create_timer(self.dt, self._control)
        prov = self.meta.get('provenance', {})
        self.get_logger().info(f"policy from {self.p['policy_dir']} ({prov.get('algo')}, "
                               f"iteration {prov.get('iteration')}), {1 / self.dt:.0f} Hz")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start commanding."""
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the robot, then stop commanding."""
        self._active = False
        self._last = np.zeros(2)
        if self._pub is not None:
            self._pub.publish(self._command(np.zeros(2)))
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the policy and the entities configure made."""
        for entity, destroy in ((self._timer, self.destroy_timer),
                                (self._sub, self.destroy_subscription),
                                (self._pub, self.destroy_lifecycle_publisher)):
            if entity is not None:
                destroy(entity)
        self._pub = self._timer = self._sub = None
        self.policy = None
        return TransitionCallbackReturn.SUCCESS

    def _on_odom(self, msg: Odometry) -> None:
        try:
            pose, twist = odometry_to_pose_twist(msg)
        except ValueError as exc:
            self._obs = None  # fail safe: never act on the last good pose
            self.get_logger().warn(f'dropped odometry: {exc}', throttle_duration_sec=5.0)
            return
        self._obs = circle.observation(pose, twist)
        self._odom_time = time.monotonic()

    def _control(self) -> None:
        if not self._active or self._pub is None:
            return
        stale = self._obs is None or time.monotonic() - self._odom_time > self.p['odom_timeout_s']
        if stale:
            cmd = np.zeros(2)
        else:
            with torch.no_grad():
                raw = self.policy(torch.as_tensor(self._obs)).numpy()[0].astype(np.float64)
            cmd = (limit_command(raw, self._last, self.max_vel, self.max_acc, self.dt)
                   if np.all(np.isfinite(raw)) else np.zeros(2))
        self._last = cmd
        self._pub.publish(self._command(cmd))

    def _command(self, cmd: np.ndarray) -> TwistStamped:
        return array_to_twist_stamped(cmd, self.get_clock().now().to_msg(), 'base_link')
