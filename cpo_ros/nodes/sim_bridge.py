"""Simulator node: MuJoCo robots on any task behind the topics a real robot would offer.

lockstep (training): `batch/state` out, one step per answered `batch/cmd_vel`, faster than real
time; an unanswered state is re-published every resend_period_s (late or restarted executors).
realtime (a robot stand-in): steps at odom_rate_hz of wall time with the latest `cmd_vel`
(TwistStamped, or Twist with cmd_vel_stamped false), odometry stamped with the system clock as
a driver's; a command older than cmd_timeout_s means stop; no episodes end. With
real_time_factor > 0 the stand-in runs that many times faster than real time and publishes
`/clock` (odometry stamped with it, command ages on it), so a robot-learning graph with
use_sim_time learns in minutes (learn_on_robot --stand-in). Both modes publish
robot 0's `odom` and `safety/cost` (the safe-area cost; in simulation this node is the one
publisher of it); lockstep mode also `/clock`.
"""

import time

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from nav_msgs.msg import Odometry
import numpy as np
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import LaserScan
from std_msgs.msg import Float32, Float32MultiArray
from visualization_msgs.msg import Marker, MarkerArray

from cpo_ros.ros import qos
from cpo_ros.ros.bringup import run_nodes
from cpo_ros.ros.conversions import (
    BatchCodec,
    command_subscription,
    encode_batch,
    pose_twist_to_odometry,
)
from cpo_ros.ros.faults import FaultReport
from cpo_ros.ros.laser_scan import ranges_to_laser_scan
from cpo_ros.ros.params import declare_parameters, declare_task
from cpo_ros.ros.specs import node_parameters
from cpo_ros.ros.watchdog import create_steady_timer
from cpo_ros.sim.range_sensor import RangeSensorSpec
from cpo_ros.sim.robot import RobotConfig
from cpo_ros.sim.vec_env import DomainRandomization, VecTaskEnv
from cpo_ros.tasks.base import Marker as TaskMarker
from cpo_ros.tasks.registry import TaskRuntimeError
from cpo_ros.wire import CMD_FIELDS, StateLayout


def sim_time(seconds: float) -> Time:
    """Return a builtin_interfaces/Time of simulated seconds."""
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 10**9, nanosec=nanoseconds % 10**9)


class SimBridge(Node):
    """Step the MuJoCo robots on velocity commands and publish what a robot's driver would."""

    def __init__(self, **kwargs) -> None:
        super().__init__('sim_bridge', **kwargs)
        p = declare_parameters(self, node_parameters(type(self)))
        self.mode = p['mode']
        seed = p['seed'] + p['seed_offset']
        # A stand-in robot steps in real time at its odometry rate, as a driver publishes.
        step_dt = p['control_dt'] if self.mode == 'lockstep' else 1.0 / p['odom_rate_hz']
        self.real_time_factor = p['real_time_factor'] if self.mode == 'realtime' else 0.0
        robot = RobotConfig(max_linear_velocity=p['max_linear_velocity'],
                            max_angular_velocity=p['max_angular_velocity'],
                            control_dt=step_dt, physics_dt=p['physics_dt'],
                            mass=p['mass'], actuator_gain=p['actuator_gain'])
        num_envs = p['num_envs'] if self.mode == 'lockstep' else 1
        randomization = DomainRandomization(
            mass_scale=tuple(p['dr_mass_scale']), gain_scale=tuple(p['dr_gain_scale']),
            max_latency_steps=p['dr_max_latency_steps'], position_noise=p['dr_position_noise'],
            yaw_noise=p['dr_yaw_noise'], velocity_noise=p['dr_velocity_noise'])
        task = declare_task(self, p['task'], num_envs)
        # A robot stand-in has no episodes: it never truncates or resets.
        # A task's range scan: the scanner's rays, limits, noise and dropout (robot profile).
        scanner = RangeSensorSpec(num_rays=p['scan_num_rays'], fov=p['scan_fov'],
                                  range_min=p['scan_range_min'], range_max=p['scan_range_max'],
                                  noise_std=p['scan_noise_std'], dropout=p['scan_dropout'])
        self.env = VecTaskEnv(task, robot, seed=seed, randomization=randomization,
                              episodic=self.mode == 'lockstep', scanner=scanner)
        self.laser_frame = p['laser_frame']
        self.layout = StateLayout.of(task)
        self.fields = self.layout.fields
        self._cols = self.layout.columns
        # The lock-step messages' layouts, worked out once (two messages a step).
        self._state_codec = BatchCodec(self.fields)
        self._cmd_codec = BatchCodec(CMD_FIELDS, num_envs)
        self.odom_frame, self.base_frame = p['odom_frame'], p['base_frame']
        self.cmd_timeout = p['cmd_timeout_s']
        # Lock-step runs thousands of steps a second: robot 0's odom, cost and /clock go out at
        # telemetry_rate_hz of wall time there (each still one consistent step), every step in
        # realtime mode.
        self._telemetry_period = 1.0 / p['telemetry_rate_hz'] if self.mode == 'lockstep' else 0.0
        self._scan_period = step_dt if self.mode == 'realtime' else 0.0
        self._last_telemetry = -float('inf')
        self._marker_key: list | None = None
        self._marker_msg = MarkerArray()
        self.seq = 0
        self.exit_code = 0
        """2 once the task failed while stepping (run_nodes ends the process with it)."""
        self._state = np.zeros((num_envs, len(self.fields) - 1), np.float32)
        self._last_cmd = np.zeros(2)
        self._last_cmd_time = -float('inf')

        self.odom_pub = self.create_publisher(Odometry, 'odom', qos.METRICS)
        self.cost_pub = self.create_publisher(Float32, 'safety/cost', qos.METRICS)
        self.clock_pub = self.create_publisher(Clock, '/clock', qos.METRICS)
        if self.layout.sensor_labels:
            self.sensor_pub = self.create_publisher(Float32MultiArray, 'task/sensors',
                                                    qos.METRICS)
        self.marker_pub = self.create_publisher(MarkerArray, 'task/markers', qos.METRICS)
        if self.env.range_sensor is not None:
            # Robot 0's scan as its driver would publish it (best effort, like drivers).
            self.scan_pub = self.create_publisher(LaserScan, 'scan', qos.SENSOR)
        self.env.reset(seed=seed)
        self._fill_state(np.zeros(num_envs), np.zeros(num_envs), np.zeros(num_envs, bool),
                         np.zeros(num_envs, bool), self.env.poses(), self.env.twists(),
                         self.env.sensors())
        self.faults = FaultReport(self)
        if self.mode == 'lockstep':
            self.state_pub = self.create_publisher(Float32MultiArray, 'batch/state',
                                                   qos.LOCKSTEP)
            self.create_subscription(Float32MultiArray, 'batch/cmd_vel', self._on_batch_cmd,
                                     qos.LOCKSTEP)
            # Wall-clock timer: sim time stands still until the executor answers.
            self._resend_timer = create_steady_timer(self, p['resend_period_s'],
                                                     self._publish_state)
        else:
            # TwistStamped or Twist, as the robot's driver would take it (cmd_vel_stamped).
            command_subscription(self, 'cmd_vel', p['cmd_vel_stamped'], self._on_cmd_vel,
                                 qos.COMMAND)
            create_steady_timer(self, step_dt / (self.real_time_factor or 1.0),
                                self._realtime_step)
        self._publish_outputs(0.0)
        if self.mode == 'lockstep':
            self._publish_state()
        # Lock-step steps at the policy's control period; a stand-in at its odometry period.
        period = ('control period' if self.mode == 'lockstep' else
                  f'odometry period (odom_rate_hz {p["odom_rate_hz"]:g})')
        self.get_logger().info(f'{num_envs} robot(s), {self.mode} mode, {period} '
                               f'{robot.control_dt:g} s, domain randomisation {randomization}')

    # -- lock-step training ---------------------------------------------------------------------
    def _on_batch_cmd(self, msg: Float32MultiArray) -> None:
        try:
            cmd, seq = self._cmd_codec.decode(msg)  # layout, finite, seq, one row a robot
        except ValueError as exc:
            self.faults.refuse('batch/cmd_vel', exc)
            return
        if seq != self.seq:
            return  # an answer to a state already stepped (a duplicate)
        if self._step(cmd):
            self._publish_state()
        self._resend_timer.reset()

    def _publish_state(self) -> None:
        self.state_pub.publish(self._state_codec.encode(self._state, self.seq))

    # -- real-time robot stand-in ---------------------------------------------------------------
    def _on_cmd_vel(self, cmd: np.ndarray | None) -> None:
        if cmd is None:
            self._last_cmd = np.zeros(2)  # fail safe: a garbled command means stop
            return
        self._last_cmd = cmd
        self._last_cmd_time = self._command_clock()

    def _command_clock(self) -> float:
        # Faster than real time, a command's age is simulated seconds, as the robot lives them.
        return self.env.robots.time if self.real_time_factor else time.monotonic()

    def _realtime_step(self) -> None:
        fresh = self._command_clock() - self._last_cmd_time <= self.cmd_timeout
        cmd = self._last_cmd if fresh else np.zeros(2)
        self._step(cmd[None])

    # -- shared ---------------------------------------------------------------------------------
    def _step(self, cmd: np.ndarray) -> bool:
        """Step the simulation; False once the task failed (logged; the node exits with 2)."""
        if self.exit_code:
            return False
        try:
            self._step_env(cmd)
        except TaskRuntimeError as exc:  # the user's task raised or gave unusable values
            self.get_logger().error(f'{exc}; the simulation stops (exit code 2)')
            self.exit_code = 2
            return False
        return True

    def _step_env(self, cmd: np.ndarray) -> None:
        _obs, reward, cost, terminated, truncated, info = self.env.step(cmd)
        self._fill_state(reward, cost, terminated, truncated, info['final_pose'],
                         info['final_twist'], info['final_sensors'])
        self.seq = (self.seq + 1) % (2 ** 24)
        now = time.monotonic()
        # Not on a step that ended robot 0's episode: its odometry is already the next
        # episode's start while its cost is the final pose's (the monitor would count a
        # disagreement); the next step's telemetry goes out instead.
        ended = bool(np.ravel(terminated)[0] or np.ravel(truncated)[0])
        if now - self._last_telemetry >= self._telemetry_period and not ended:
            self._last_telemetry = now
            self._publish_outputs(float(np.ravel(cost[0])[0]))

    def _fill_state(self, reward, cost, terminated, truncated, final_pose, final_twist,
                    final_sensors) -> None:
        s, c = self._state, self._cols
        s[:, c['pose']], s[:, c['twist']] = self.env.odometry()
        s[:, c['reward']] = reward[:, None]
        s[:, c['cost']] = np.asarray(cost).reshape(len(s), -1)
        s[:, c['terminated']], s[:, c['truncated']] = terminated[:, None], truncated[:, None]
        s[:, c['final_pose']], s[:, c['final_twist']] = final_pose, final_twist
        if self.layout.sensor_labels:
            s[:, c['sensors']] = self.env.sensors()
            s[:, c['final_sensors']] = final_sensors

    def _publish_outputs(self, cost: float) -> None:
        if self.mode == 'lockstep' or self.real_time_factor:
            stamp = sim_time(self.env.robots.time)
            self.clock_pub.publish(Clock(clock=stamp))
        else:  # a stand-in robot stamps with its clock, as a driver does, and has no /clock
            stamp = self.get_clock().now().to_msg()
        pose, twist = self.env.odometry()
        self.odom_pub.publish(pose_twist_to_odometry(pose[0], twist[0], stamp, self.odom_frame,
                                                     self.base_frame))
        self.cost_pub.publish(Float32(data=cost))
        if self.layout.sensor_labels:
            readings = self.env.sensors()[:1]
            self.sensor_pub.publish(encode_batch(readings, (*self.layout.sensor_labels, 'seq'),
                                                 self.seq))
        self.marker_pub.publish(self._task_markers(stamp))
        if self.env.range_sensor is not None:
            sc = self.env.scanner
            self.scan_pub.publish(ranges_to_laser_scan(
                self.env.last_scan[0], sc.angle_min, sc.angle_increment, sc.range_min,
                sc.range_max, self.laser_frame, stamp, scan_time=self._scan_period))

    def _task_markers(self, stamp) -> MarkerArray:
        """Return robot 0's task markers (Task.markers) for RViz, stamped `stamp`.

        Built again only when the task's markers changed (apples eaten, a new episode's
        goal): most tasks' are the same for a whole run, and building a line strip's points
        as messages cost more than the rest of the telemetry together.
        """
        items = self.env.markers(0)
        key = [(item.ns, item.kind, np.asarray(item.points, np.float64).tobytes(),
                float(item.scale), tuple(float(c) for c in item.rgba)) for item in items]
        if key != self._marker_key:
            self._marker_key, self._marker_msg = key, self._build_markers(items)
        for m in self._marker_msg.markers:
            m.header.stamp = stamp
        return self._marker_msg

    def _build_markers(self, items: list[TaskMarker]) -> MarkerArray:
        kinds = {'points': Marker.SPHERE_LIST, 'line_strip': Marker.LINE_STRIP,
                 'discs': Marker.CYLINDER}
        markers = MarkerArray()
        for item in items:
            points = [Point(x=float(x), y=float(y)) for x, y in np.reshape(item.points, (-1, 2))]
            # RViz has no cylinder list: one cylinder marker per disc.
            groups = [[pt] for pt in points] if item.kind == 'discs' else [points]
            for i, group in enumerate(groups):
                m = Marker(ns=item.ns, id=i, type=kinds.get(item.kind, Marker.SPHERE_LIST),
                           action=Marker.ADD)
                m.header.frame_id = self.odom_frame
                m.pose.orientation.w = 1.0
                m.scale.x = m.scale.y = m.scale.z = float(item.scale)
                if item.kind == 'discs':
                    m.pose.position.x, m.pose.position.y = group[0].x, group[0].y
                    m.scale.z = 0.02
                else:
                    m.points = group
                m.color.r, m.color.g, m.color.b, m.color.a = (float(c) for c in item.rgba)
                markers.markers.append(m)
        return markers


def main(args: list[str] | None = None) -> int:
    """Run the simulator alone (`ros2 run cpo_ros sim_bridge`)."""
    return run_nodes('sim_bridge', [SimBridge], [False], args)


if __name__ == '__main__':
    raise SystemExit(main())
