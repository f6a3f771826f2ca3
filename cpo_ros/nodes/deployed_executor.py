"""The policy executor in deployment: a lifecycle node that commands the robot only while active.

configure loads the exported policy (refused with its path and reason when missing, altered,
of another layout, or trained for another control period or other limits than this robot's
profile, unless allow_profile_mismatch); activate starts commanding; deactivate, shutdown and
errors send a stop first. Every control_dt (a steady-clock timer) the mean action for the
newest pose (cpo_ros.ros.pose_input: in the task frame, checked for frame and stamp) goes out on
`policy/cmd_vel` (TwistStamped, to the safe-area monitor, which gates it to the robot's
`cmd_vel`), within velocity and acceleration limits. A missing, stale, refused or non-finite
pose means a stop command, not the last command. /diagnostics says why the robot is stopped.
The observation comes from the task named by the `task` parameter, with the parameters the
policy was trained with (policy.json); a policy of another task is refused, naming both. A task
with sensors reads them on `task/sensors` (a labelled Float32MultiArray, one row, the task's
sensor_labels): missing, stale (pose_timeout_s, steady clock) or malformed readings mean stop.
A navigation task reads `scan` and drives to goals on `goal_pose` instead
(cpo_ros.ros.navigation): no goal, an arrival (reported on `goal/reached`) or a stale scan mean
stop.
"""

import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TwistStamped
import numpy as np
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_msgs.msg import Float32MultiArray
import torch

from cpo_ros.deploy.export import load_exported, TWIST_ACTIONS
from cpo_ros.deploy.profile import check_deployment
from cpo_ros.deploy.shield import limit_command
from cpo_ros.files import CheckpointError
from cpo_ros.ros import qos
from cpo_ros.ros.conversions import array_to_twist_stamped, decode_batch
from cpo_ros.ros.faults import status_name
from cpo_ros.ros.navigation import NavigationInputs
from cpo_ros.ros.params import declare_parameters, declare_task
from cpo_ros.ros.pose_input import PoseInput
from cpo_ros.ros.specs import node_parameters
from cpo_ros.ros.watchdog import create_steady_timer


class DeployedPolicyExecutor(LifecycleNode):
    """Run an exported policy on the robot's pose while the lifecycle state is active."""

    def __init__(self, **kwargs) -> None:
        super().__init__('policy_executor', **kwargs)
        p = declare_parameters(self, node_parameters(type(self)))
        self.p = p
        self.dt = p['control_dt']
        self.max_vel = np.array([p['max_linear_velocity'], p['max_angular_velocity']])
        self.max_acc = np.array([p['max_linear_accel'], p['max_angular_accel']])
        self.policy = None
        self.meta: dict = {}
        self.configure_error: str | None = None
        self._pub = self._timer = None
        self._active = False
        self._last = np.zeros(2)
        self.stop_reason: str | None = 'not configured'
        self.pose_input = PoseInput(self, p)
        self.task = declare_task(self, p['task'])
        self._readings: np.ndarray | None = None
        self._readings_time = -float('inf')
        # Navigation: the scan and the operator's goals (cpo_ros.ros.navigation).
        self.nav = (NavigationInputs(self, p, self.task) if NavigationInputs.wanted(self.task)
                    else None)
        if self.task.sensor_labels and self.nav is None:
            self._sensor_fields = (*self.task.sensor_labels, 'seq')
            self.create_subscription(Float32MultiArray, 'task/sensors', self._on_sensors,
                                     qos.METRICS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', qos.METRICS)
        create_steady_timer(self, 1.0 / p['diagnostics_rate_hz'], self._publish_diagnostics)
        if p['autostart']:
            self.trigger_configure()
            if self.policy is None:
                # Nothing to command with: end the process (code 2), and with it the launch.
                raise CheckpointError(f'cannot deploy: {self.configure_error}')
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the exported policy, check it fits this robot, create publisher and timer."""
        try:
            self.policy, self.meta = load_exported(self.p['policy_dir'], None, TWIST_ACTIONS)
            self.task = self._policy_task(self.meta)
            if self.nav is not None:
                self.nav.use_task(self.task)
            problems = '; '.join(check_deployment(self.meta, self.p, self.p['policy_dir']))
            if problems and not self.p['allow_profile_mismatch']:
                raise CheckpointError(f'{problems} (give the robot profile it was trained '
                                      f'with, or set allow_profile_mismatch: true to deploy '
                                      f'anyway)')
            if problems:
                self.get_logger().warn(f'{problems}: deploying anyway '
                                       f'(allow_profile_mismatch: true)')
        except (CheckpointError, ValueError) as exc:
            self.policy = None
            self.configure_error = str(exc)
            self.stop_reason = f'configure failed: {exc}'
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        self.configure_error = None
        self._pub = self.create_lifecycle_publisher(TwistStamped, 'policy/cmd_vel',
                                                     qos.COMMAND)
        self._timer = create_steady_timer(self, self.dt, self._control)
        prov = self.meta.get('provenance', {})
        robot = self.meta.get('robot', {})
        self.get_logger().info(
            f"policy from {self.p['policy_dir']} ({prov.get('algo')}, iteration "
            f"{prov.get('iteration')}, robot profile {robot.get('profile', 'unrecorded')}), "
            f"{1 / self.dt:.3g} Hz, pose from {self.pose_input.topic} in "
            f"'{self.pose_input.task_frame}'")
        self.stop_reason = 'not active'
        return TransitionCallbackReturn.SUCCESS

    def _policy_task(self, meta: dict):
        """Return the task the policy was trained on; CheckpointError for another task."""
        from cpo_ros.sim.make import make_task

        where = f"exported policy {self.p['policy_dir']}/policy.json"
        record = dict(meta.get('task') or {})
        trained = record.pop('name', None)
        if trained != self.p['task']:
            raise CheckpointError(f'{where}: the policy is for task {trained!r}, this robot runs '
                                  f"task {self.p['task']!r}")
        known = {k: v for k, v in record.items() if hasattr(self.task.params, k)}
        try:
            task = make_task(trained, **known)[0]
        except ValueError as exc:
            raise CheckpointError(f'{where}: task {trained} parameters: {exc}') from exc
        labels = tuple(meta['observation']['labels'])
        if labels != tuple(task.observation_labels):
            raise CheckpointError(f'{where}: observation layout {list(labels)} does not match '
                                  f'task {trained} {list(task.observation_labels)}')
        return task

    def _on_sensors(self, msg: Float32MultiArray) -> None:
        try:
            readings, _seq = decode_batch(msg, self._sensor_fields)
            if readings.shape[0] != 1 or not np.all(np.isfinite(readings)):
                raise ValueError('need one row of finite readings')
        except ValueError as exc:
            self._readings = None  # fail safe: a garbled reading means stop
            self.get_logger().warn(f'task/sensors refused: {exc}', throttle_duration_sec=5.0)
            return
        self._readings, self._readings_time = readings, time.monotonic()

    def _sensor_stop_reason(self) -> str | None:
        if not self.task.sensor_labels:
            return None
        if self._readings is None:
            return 'no valid task/sensors readings'
        if time.monotonic() - self._readings_time > self.p['pose_timeout_s']:
            return 'task/sensors readings are stale'
        return None

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start commanding."""
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the robot, then stop commanding."""
        self.stop_robot()
        self._active = False
        self.stop_reason = 'not active'
        return super().on_deactivate(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the robot, then never command again (shut down from any state)."""
        self.stop_robot()
        self._active = False
        self.stop_reason = 'shut down'
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the robot after an error in a transition; back to unconfigured."""
        self.stop_robot()
        self._active = False
        self.stop_reason = 'error in a lifecycle transition'
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the policy and the entities configure made."""
        for entity, destroy in ((self._timer, self.destroy_timer),
                                (self._pub, self.destroy_lifecycle_publisher)):
            if entity is not None:
                destroy(entity)
        self._pub = self._timer = None
        self.policy = None
        self.stop_reason = 'not configured'
        return TransitionCallbackReturn.SUCCESS

    def stop_robot(self) -> None:
        """Send a zero command (deactivate, shutdown, error) and wait briefly for delivery."""
        self._last = np.zeros(2)
        if self._pub is not None and self._active:
            self._pub.publish(self._command(np.zeros(2)))
            self._pub.wait_for_all_acked(Duration(seconds=0.5))

    def _control(self) -> None:
        if not self._active or self._pub is None:
            return
        try:
            pose = self.pose_input.pose
            self.stop_reason = self.pose_input.stop_reason() or (
                self.nav.stop_reason(pose) if self.nav else self._sensor_stop_reason())
            cmd = np.zeros(2)
            if self.stop_reason is None:
                readings = (self.nav.readings(pose) if self.nav else self._readings
                            if self.task.sensor_labels else np.zeros((1, 0), np.float32))
                obs = self.task.observation(np.atleast_2d(self.pose_input.pose),
                                            np.atleast_2d(self.pose_input.twist), readings)
                with torch.no_grad():
                    raw = self.policy(torch.as_tensor(obs)).numpy()[0].astype(np.float64)
                if np.all(np.isfinite(raw)):
                    cmd = limit_command(raw, self._last, self.max_vel, self.max_acc, self.dt)
                else:
                    self.stop_reason = 'the policy returned a non-finite action'
        except Exception:
            self.stop_reason = 'error in the control step'
            self.stop_robot()
            raise
        self._last = cmd
        self._pub.publish(self._command(cmd))

    def _command(self, cmd: np.ndarray) -> TwistStamped:
        return array_to_twist_stamped(cmd, self.get_clock().now().to_msg(),
                                      self.p['base_frame'])

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name=status_name(self),
                                  hardware_id=self.get_namespace())
        if self.stop_reason is None:
            status.level, status.message = DiagnosticStatus.OK, 'commanding the robot'
        else:
            status.level = DiagnosticStatus.ERROR
            status.message = f'robot stopped: {self.stop_reason}'
        robot = self.meta.get('robot', {})
        status.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ('policy_dir', self.p['policy_dir']), ('active', self._active),
            ('control_dt', self.dt), ('trained_control_dt', robot.get('control_dt')),
            ('robot_profile', self.p['robot']), ('trained_profile', robot.get('profile')),
            ('task_frame', self.pose_input.task_frame),
            *(self.nav.status() if self.nav else ()))]
        if self.stop_reason is not None:  # only while it sends the robot zero commands
            status.values.append(KeyValue(key='stop_reason', value=self.stop_reason))
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)
