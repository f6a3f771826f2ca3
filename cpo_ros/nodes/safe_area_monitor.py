"""Safe-area monitor node: the safety cost from the pose, diagnostics, markers, and the shield.

On a robot (publish_cost true) this node is the one publisher of `safety/cost`, computed from
the pose and the safe area. In simulation the bridge publishes the ground-truth cost; the
monitor computes its estimate for each odometry message and counts disagreements.

The pose comes from cpo_ros.ros.pose_input (Odometry or PoseWithCovarianceStamped, checked for
its frame and stamp, placed in the task frame). In deployment (shield_mode gate) the monitor
sits between the policy and the robot: `policy/cmd_vel` in, `cmd_vel` out. A command passes
while the robot is inside and would stay inside over a short horizon; otherwise the shield
turns the robot back. A stale, refused or missing pose, a stale command, a command while a
node other than `command_source` publishes on `policy/cmd_vel` (ros/command_source.py), an
e-stop or a silent e-stop heartbeat mean zero velocity; /diagnostics says which. A stop in
place of a moving command counts as an intervention (`shield/interventions`), as the
shield's turns do: a learning robot's samples are flagged. Every command that goes out, in
every mode, is clipped to the robot profile's velocity and acceleration limits. Shutdown and
errors send a zero command first.

E-stop: a `true` on `e_stop` (std_msgs/Bool) or the `e_stop` service (std_srvs/SetBool) with
true latches a stop, and so does (latch_on_source_loss) the departure of the publisher whose
commands were taken: an executor that died or restarted, or a process that took its name;
only the service with false releases it. A `false` on the topic is a
heartbeat (the deadman of e_stop_heartbeat_s) and never releases anything.
"""

import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
import numpy as np
from rclpy.duration import Duration
from rclpy.node import Node
from std_msgs.msg import Bool, Float32
from std_srvs.srv import SetBool
from visualization_msgs.msg import Marker, MarkerArray

from cpo_ros.deploy.scan_guard import guard_command, ScanGuardConfig
from cpo_ros.deploy.shield import limit_command, shield_command, ShieldConfig
from cpo_ros.ros import qos
from cpo_ros.ros.bringup import run_nodes
from cpo_ros.ros.command_source import CommandSource
from cpo_ros.ros.conversions import command_subscription, CommandPublisher, yaw_to_quaternion
from cpo_ros.ros.faults import status_name
from cpo_ros.ros.laser_scan import ScanInput
from cpo_ros.ros.params import declare_parameters, declare_task
from cpo_ros.ros.pose_input import PoseInput
from cpo_ros.ros.sole_publisher import publisher_names
from cpo_ros.ros.specs import node_parameters
from cpo_ros.ros.watchdog import ArrivalClock, create_steady_timer
from cpo_ros.tasks.safe_area import SafeArea


def safe_area_from(p: dict, task: Any) -> SafeArea:
    """Return the configured safe area (the task's own, a rectangle or a polygon)."""
    if p['area_type'] == 'rectangle':
        return SafeArea.rectangle(*p['area_rectangle'])
    if p['area_type'] == 'polygon':
        return SafeArea.from_flat(p['area_polygon'])
    area = task.safe_area()
    if area is None:
        raise ValueError(f"safe_area_monitor: task {p['task']} declares no safe area: set "
                         f'area_type to rectangle or polygon')
    return area


class SafeAreaMonitor(Node):
    """Watch the pose against the safe area; publish cost, in/out, diagnostics and markers."""

    def __init__(self, **kwargs) -> None:
        super().__init__('safe_area_monitor', **kwargs)
        p = declare_parameters(self, node_parameters(type(self)))
        if p['area_type'] == 'rectangle' and len(p['area_rectangle']) != 4:
            raise ValueError('safe_area_monitor: parameter area_rectangle needs 4 values '
                             '[x_min, x_max, y_min, y_max]')
        task = declare_task(self, p['task'])
        self.area = safe_area_from(p, task)
        self.publish_cost = p['publish_cost']
        self.cmd_timeout = p['cmd_timeout_s']
        self.shield_mode = p['shield_mode']
        self.shield = ShieldConfig(horizon_s=p['shield_horizon_s'],
                                   turn_rate=p['shield_turn_rate'],
                                   creep_speed=p['shield_creep_speed'],
                                   margin=p['shield_margin_m'])
        self.max_vel = np.array([p['max_linear_velocity'], p['max_angular_velocity']])
        self.max_acc = np.array([p['max_linear_accel'], p['max_angular_accel']])
        self._last_out = np.zeros(2)
        self._t_out = time.monotonic()
        self.limited = 0  # commands the profile's limits changed
        self.rejected_commands = 0  # the trusted source's commands that were unreadable (stop)
        self.e_stop_releases_refused = 0  # `false` on the e_stop topic while latched
        self.exits = self.disagreements = self.interventions = 0
        self.takeovers = 0  # times the shield took over from the policy (pass -> replace)
        self._intervening = False
        self.inside: bool | None = None
        self.cost_estimate: float | None = None
        self.e_stop = False
        self.e_stop_cause = ''  # what latched it: the topic, the service, a lost source
        self.heartbeat_s = p['e_stop_heartbeat_s']
        self._last_e_stop_msg = -float('inf')
        self.clock = ArrivalClock(self)
        self._policy_cmd: np.ndarray | None = None
        self._last_cmd = -float('inf')
        # The last moving command that came on policy/cmd_vel, accepted or not: a stop while
        # it is fresh replaced it (an intervention the executor's samples must know of).
        self._last_moving = -float('inf')
        # The estimate of the latest pose that no simulator cost was compared with yet, and
        # the counts of comparisons made and of costs that found no such pose.
        self._unpaired_estimate: float | None = None
        self.cost_checks = self.unpaired_costs = 0
        self.last_reason: str | None = None

        self.inside_pub = self.create_publisher(Bool, 'safety/in_safe_area', qos.METRICS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', qos.METRICS)
        self.marker_pub = self.create_publisher(MarkerArray, 'safe_area/markers', qos.LATCHED)
        # The pose subscription first: an executor that finds a pose and the simulator's cost
        # of the same step ready together takes them in creation order, the pose first.
        self.pose_input = PoseInput(self, p)
        self.pose_input.callbacks.append(self._on_pose)
        if self.publish_cost:
            self.cost_pub = self.create_publisher(Float32, 'safety/cost', qos.METRICS)
        else:
            self.create_subscription(Float32, 'safety/cost', self._on_sim_cost, qos.METRICS)
        self.cmd_pub = None
        self.gate_period = 1.0 / p['gate_rate_hz']
        if self.shield_mode != 'none':
            self.cmd_pub = CommandPublisher(self, 'cmd_vel', p['cmd_vel_stamped'],
                                            p['base_frame'], qos.COMMAND)
            self.interventions_pub = self.create_publisher(Float32, 'shield/interventions',
                                                           qos.METRICS)
            self.source = CommandSource(self, 'policy/cmd_vel', p['command_source'],
                                        self.cmd_timeout, self._forget_command,
                                        self._on_source_lost)
            self.latch_on_source_loss = p['latch_on_source_loss']
            # The executor's commands are always stamped (our own topic).
            self.source.subscription = command_subscription(
                self, 'policy/cmd_vel', True, self._on_policy_cmd, qos.COMMAND,
                event_callbacks=self.source.event_callbacks())
            self.create_subscription(Bool, 'e_stop', self._on_e_stop, qos.E_STOP)
            # Latched state for whoever must pause with it (learning on the robot).
            self.e_stop_pub = self.create_publisher(Bool, 'e_stop/latched', qos.LATCHED)
            self.e_stop_pub.publish(Bool(data=False))
            self.create_service(SetBool, 'e_stop', self._on_e_stop_service)
            create_steady_timer(self, self.gate_period, self._gate)
        # Navigation: the scan guard (cpo_ros.deploy.scan_guard) after the safe-area shield.
        self.scan_input: ScanInput | None = None
        self.scan_blocks = 0
        if p['scan_guard'] and self.shield_mode == 'gate' and task.scan_spec is not None:
            self.scan_guard = ScanGuardConfig(margin_m=p['scan_margin_m'],
                                              body_radius_m=p['robot_radius_m'],
                                              horizon_s=p['shield_horizon_s'])
            self.scan_guard.validate()
            self.scan_input = ScanInput(self, p)
        # Steady-clock timers: staleness must be noticed even when sim or system time stalls.
        create_steady_timer(self, 1.0 / p['diagnostics_rate_hz'], self._publish_diagnostics)
        self.marker_pub.publish(self._markers())

    @property
    def pose(self) -> np.ndarray | None:
        """Return the latest accepted pose in task coordinates."""
        return self.pose_input.pose

    # -- monitoring -----------------------------------------------------------------------------
    def _on_pose(self) -> None:
        pose = self.pose
        if pose is not None:
            inside = bool(self.area.contains(pose[:2])[0])
            if self.inside and not inside:
                self.exits += 1
            self.inside = inside
            self.cost_estimate = 0.0 if inside else 1.0
            self.inside_pub.publish(Bool(data=inside))
            if self.publish_cost:
                self.cost_pub.publish(Float32(data=self.cost_estimate))
            else:
                # The bridge publishes odom and then the cost of the same step; a newer pose
                # replaces an unpaired one, so a lost message costs one comparison, never
                # shifts the pairs after it (a queue of estimates did: issue 23).
                self._unpaired_estimate = self.cost_estimate
        self._gate()

    def _on_sim_cost(self, msg: Float32) -> None:
        """Compare the simulator's cost with the estimate from the pose of the same step."""
        estimate, self._unpaired_estimate = self._unpaired_estimate, None
        if estimate is None:  # its pose was dropped (best-effort odom) or refused
            self.unpaired_costs += 1
            return
        self.cost_checks += 1
        if not np.isfinite(msg.data) or abs(float(msg.data) - estimate) > 1e-6:
            self.disagreements += 1

    # -- the shield -----------------------------------------------------------------------------
    def _forget_command(self, _reason: str) -> None:
        self._policy_cmd = None  # from a source no longer trusted: never acted on later

    def _on_source_lost(self, reason: str) -> None:
        self._policy_cmd = None  # the old source's command is never sent after this
        if self.latch_on_source_loss:
            self._set_e_stop(True, reason)
        else:
            self.get_logger().warn(f'{reason} (latch_on_source_loss is false: commands of '
                                   f'the next publisher named {self.source.source} pass)')

    def _on_policy_cmd(self, cmd: np.ndarray | None) -> None:
        if cmd is not None and np.any(cmd != 0.0):
            self._last_moving = self.clock.now()
        if not self.source.accept():
            cmd = None  # another publisher on the topic: stop, and refuse what it sent
        elif cmd is None:
            self.rejected_commands += 1  # the executor's command is unreadable: stop
        self._policy_cmd = cmd  # None (unreadable): stop until a good one arrives
        if cmd is not None:
            self._last_cmd = self.clock.now()
        self._gate()

    def _on_e_stop(self, msg: Bool) -> None:
        # Any message feeds the deadman; only a true acts: a stray or forged false (or a
        # heartbeat) must never release a latched stop.
        self._last_e_stop_msg = self.clock.now()
        if msg.data:
            self._set_e_stop(True, 'the e_stop topic')
        elif self.e_stop:
            self.e_stop_releases_refused += 1
            self.get_logger().warn('e_stop false on the topic does not release a latched stop: '
                                   'call the e_stop service with false',
                                   throttle_duration_sec=5.0)

    def _on_e_stop_service(self, request: SetBool.Request,
                           response: SetBool.Response) -> SetBool.Response:
        self._set_e_stop(bool(request.data), 'the e_stop service')
        response.success = True
        response.message = 'e-stop latched' if self.e_stop else 'e-stop released'
        return response

    def _set_e_stop(self, stop: bool, source: str) -> None:
        if stop and not self.e_stop:
            self.get_logger().warn(f'e-stop latched by {source}: stopping until released')
            self.e_stop_cause = source
        elif not stop and self.e_stop:
            self.get_logger().info(f'e-stop released by {source}')
            self.source.release()  # the next command's publisher is the source from now on
        if stop != self.e_stop:
            self.e_stop_pub.publish(Bool(data=stop))
        self.e_stop = stop
        self._gate()

    def stop_reason(self) -> str | None:
        """Return why the robot must stand still, or None when commands may pass."""
        now = self.clock.now()
        # The source first: its check may latch the e-stop (the source left).
        source = self.source.check() if self.cmd_pub is not None else None
        if self.e_stop:
            return (f'e-stop latched ({self.e_stop_cause}; release: the e_stop service with '
                    f'false)')
        if self.heartbeat_s > 0.0 and now - self._last_e_stop_msg > self.heartbeat_s:
            return f'e-stop heartbeat lost (no e_stop message for {self.heartbeat_s:g} s)'
        reason = self.pose_input.stop_reason()
        if reason is None and self.scan_input is not None:
            reason = self.scan_input.stop_reason()
        if reason is not None:
            return reason
        if source is not None:
            return source
        if self._policy_cmd is None or now - self._last_cmd > self.cmd_timeout:
            return 'policy command stale or missing (policy/cmd_vel)'
        return None

    def _gate(self) -> None:
        if self.cmd_pub is None:
            return
        try:
            reason = self.stop_reason()
            intervened = False
            if reason is not None:
                cmd = np.zeros(2)
                # A stop in place of a moving command (from a refused source too) replaced
                # the policy's command: the robot stood while the policy meant to drive.
                intervened = self.clock.now() - self._last_moving <= self.cmd_timeout
            elif self.shield_mode == 'pass':
                cmd = self._policy_cmd
            else:
                cmd, intervened = shield_command(self.pose, self._policy_cmd, self.area,
                                                 self.shield)
                if self.scan_input is not None:
                    cmd, blocked = guard_command(self.scan_input.points, cmd, self.scan_guard)
                    self.scan_blocks += int(blocked)
                    intervened = intervened or blocked
            if intervened:
                self.interventions += 1
                self.takeovers += int(not self._intervening)
                self.interventions_pub.publish(Float32(data=float(self.interventions)))
            self._intervening = intervened
        except Exception:
            self.stop_robot()  # an error in the shield still stops the robot
            raise
        if reason != self.last_reason and reason is not None:
            self.get_logger().warn(f'stopping the robot: {reason}', throttle_duration_sec=2.0)
        self.last_reason = reason
        self.cmd_pub.publish(self._limited(cmd, stop=reason is not None))

    def _limited(self, cmd: np.ndarray, stop: bool) -> np.ndarray:
        """Return cmd within the profile's velocity and acceleration limits (a stop: zero)."""
        now = time.monotonic()
        # Steady time since the last command out, at most two gate periods: a long pause
        # (start-up) must not allow a jump.
        dt = min(now - self._t_out, 2.0 * self.gate_period)
        self._t_out = now
        if stop:
            out = np.zeros(2)  # a stop is not ramped: the driver's own limits brake
        else:
            out = limit_command(cmd, self._last_out, self.max_vel, self.max_acc, dt)
            self.limited += int(not np.array_equal(out, np.asarray(cmd, np.float64)))
        self._last_out = out
        return out

    def stop_robot(self) -> None:
        """Send a zero command and wait briefly for it to reach the driver (shutdown, error)."""
        if self.cmd_pub is not None:
            self.cmd_pub.publish(np.zeros(2))
            self.cmd_pub.publisher.wait_for_all_acked(Duration(seconds=0.5))

    # -- reporting ------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self.cmd_pub is not None:
            # The latched state again with every report: a stranger's one-off `false` there
            # (taken before its publisher could be seen) is corrected within a period.
            self.e_stop_pub.publish(Bool(data=self.e_stop))
        status = DiagnosticStatus(name=status_name(self),
                                  hardware_id=self.get_namespace())
        reason = self.stop_reason()
        if self.shield_mode != 'none' and reason is not None:
            status.level, status.message = DiagnosticStatus.ERROR, f'robot stopped: {reason}'
        elif self.pose_input.stop_reason() is not None:
            status.level = DiagnosticStatus.ERROR
            status.message = self.pose_input.stop_reason()
        elif not self.inside:
            status.level, status.message = DiagnosticStatus.WARN, 'outside the safe area'
        elif self.interventions and self.shield_mode == 'gate':
            status.level = DiagnosticStatus.OK
            status.message = f'inside the safe area ({self.interventions} interventions)'
        else:
            status.level, status.message = DiagnosticStatus.OK, 'inside the safe area'
        # What this mode has not (no shield: no command source; no scan guard: no scans) is
        # left out, not shown as None.
        status.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ('in_safe_area', self.inside), ('exits', self.exits),
            ('cost_estimate', self.cost_estimate), ('disagreements', self.disagreements),
            ('cost_checks', self.cost_checks), ('unpaired_costs', self.unpaired_costs),
            ('rejected_poses', self.pose_input.rejected), ('shield_mode', self.shield_mode),
            ('interventions', self.interventions), ('takeovers', self.takeovers),
            ('e_stop', self.e_stop), ('limited', self.limited),
            ('e_stop_releases_refused', self.e_stop_releases_refused),
            ('command_source', getattr(getattr(self, 'source', None), 'source', None)),
            ('refused_commands', getattr(getattr(self, 'source', None), 'refused', None)),
            ('source_losses', getattr(getattr(self, 'source', None), 'losses', None)),
            ('rejected_commands', self.rejected_commands),
            ('scan_blocks', self.scan_blocks if self.scan_input else None),
            ('rejected_scans', self.scan_input.rejected if self.scan_input else None),
            ('task_frame', self.pose_input.task_frame),
            ('pose_source', self.pose_input.source)) if v is not None]
        if self.cmd_pub is not None and reason is not None:
            # Only while this node holds the robot still: with shield_mode none (training) it
            # sends no commands, so a stale policy command stops nothing.
            status.values.append(KeyValue(key='stop_reason', value=reason))
        others = self._other_cmd_vel_publishers()
        if others:
            # The shield cannot stop what another node sends the driver (SROS2 can refuse it):
            # it says so, loudly, whatever else holds.
            status.level = DiagnosticStatus.ERROR
            status.message = (f'another publisher on cmd_vel {others}: the robot may take '
                              f'commands the shield did not pass')
            self.get_logger().error(status.message, throttle_duration_sec=5.0)
            status.values.append(KeyValue(key='cmd_vel_other_publishers', value=str(others)))
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)

    def _other_cmd_vel_publishers(self) -> list[str]:
        """Return the nodes other than this one that publish on the shield's cmd_vel."""
        if self.cmd_pub is None:
            return []
        me = self.get_fully_qualified_name()
        names = publisher_names(self, self.cmd_pub.publisher.topic_name)
        return sorted(n for n in names if n != me)

    def _markers(self) -> MarkerArray:
        """Return the safe area's outline (a closed line strip) placed at the task origin."""
        outline = Marker(ns='safe_area', id=0, type=Marker.LINE_STRIP, action=Marker.ADD)
        outline.header.frame_id = self.pose_input.task_frame
        outline.scale.x = 0.05
        origin = self.pose_input.origin
        outline.pose.position.x, outline.pose.position.y = float(origin[0]), float(origin[1])
        o = outline.pose.orientation
        o.x, o.y, o.z, o.w = yaw_to_quaternion(float(origin[2]))
        outline.color.g, outline.color.a = 0.8, 0.9
        vertices = list(self.area.vertices) + [self.area.vertices[0]]
        outline.points = [Point(x=float(max(min(x, 1e3), -1e3)), y=float(max(min(y, 1e3), -1e3)))
                          for x, y in vertices]
        return MarkerArray(markers=[outline])


def main(args: list[str] | None = None) -> int:
    """Run the monitor alone (`ros2 run cpo_ros safe_area_monitor`)."""
    return run_nodes('safe_area_monitor', [SafeAreaMonitor], [False], args)


if __name__ == '__main__':
    raise SystemExit(main())
