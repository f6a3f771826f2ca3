"""The policy executor on a robot: learn in real time from the robot's own topics.

`ros2 run cpo_ros policy_executor --robot` (bring-up learn_on_robot). Every control_dt on the
ROS clock (the robot profile's; wall time on a robot, /clock with use_sim_time beside the
stand-in) it reads the pose (cpo_ros.ros.pose_input: odom or pose, checked for frame and
stamp), samples the stochastic policy and sends the command on `policy/cmd_vel` to the
safe-area monitor in gate mode, which passes it to `cmd_vel` or replaces it. The bookkeeping
(training/realtime.py) completes each transition on the measured next state, runs the
reset behaviour between episodes and cuts rollout chunks, which go to the learner on
`cpo/rollout` as any executor's.

The robot stands still (zero command; an episode in progress is truncated, bootstrapped):
- while paused by the operator: `learning/pause` (std_srvs/SetBool, true pauses, false
  resumes);
- while the monitor's e-stop is latched (`e_stop/latched`, the monitor's state), or while
  another node publishes there or on `shield/interventions` too (its state and counts could
  not be told from a stranger's; cpo_ros.ros.sole_publisher);
- when the pose is stale, refused or missing;
- when the learner is lost: nothing from it (policy, or the `cpo/iteration` status of the
  loaded policy's session, re-sent every second) for max_policy_age_s (steady clock); it
  samples again when the learner returns.
Only the policy the learner announced on `cpo/iteration` is loaded
(training/announcements.py): a policy from any other publisher never moves the robot.
The task's sensor readings are taken at the measured pose (Task.sensors). A task with a range
scan (Task.scan_spec: navigation) reads the robot's sensor_msgs/LaserScan on `scan`,
resampled onto the policy's rays as the deployed executor does (cpo_ros.ros.laser_scan); a
stale, missing or refused scan stops the robot like a stale pose, and the robot's contacts
(Task.contacts, the task's collision cost) are a return within robot_radius_m of the base or
one too near to measure.
Ctrl-C, SIGTERM and errors send a zero command first. `diagnostics` counts episodes,
samples, interventions, late steps, pauses and stops.
"""

import math
import time

from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import TwistStamped
import numpy as np
from rclpy.duration import Duration
from rclpy.node import Node
from std_msgs.msg import Bool, Float32
from std_srvs.srv import SetBool

from cpo_ros.ros import qos
from cpo_ros.ros.conversions import array_to_twist_stamped
from cpo_ros.ros.faults import FaultReport
from cpo_ros.ros.laser_scan import ScanInput
from cpo_ros.ros.learner_input import LearnerInput
from cpo_ros.ros.params import declare_parameters, declare_task, task_identity
from cpo_ros.ros.pose_input import PoseInput
from cpo_ros.ros.rollout_sender import ChunkSender
from cpo_ros.ros.sole_publisher import SolePublisher
from cpo_ros.ros.specs import node_parameters
from cpo_ros.ros.watchdog import create_steady_timer
from cpo_ros.training.realtime import (
    episodes_per_chunk,
    Measured,
    RealtimeConfig,
    RobotSampler,
)

MONITOR_INPUT_HOLD_S = 1.0
"""After a publisher of the monitor's topics leaves, the robot stands this long (the monitor
re-sends its latched state at least this often at its default diagnostics rate)."""


class RobotExecutor(Node):
    """Sample the learner's policy on a robot in real time and send it rollout chunks."""

    def __init__(self, **kwargs) -> None:
        super().__init__('policy_executor', **kwargs)
        p = declare_parameters(self, node_parameters(type(self)))
        # The task's reward, costs and resets, as the simulator calls them.
        task = declare_task(self, p['task'])
        self.task = task
        self.dt = p['control_dt']
        episodes = episodes_per_chunk(p['chunk_episodes'], p['steps_per_iteration'],
                                      task.max_episode_steps, self.dt, p['iteration_timeout_s'])
        self.cfg = RealtimeConfig(
            control_dt=self.dt, late_tolerance=p['late_tolerance'], chunk_episodes=episodes,
            shield_samples=p['shield_samples'], intervention_cost=p['intervention_cost'],
            max_linear_velocity=p['max_linear_velocity'],
            max_angular_velocity=p['max_angular_velocity'],
            reset_position_tolerance=p['reset_position_tolerance'],
            reset_yaw_tolerance=p['reset_yaw_tolerance'], reset_timeout_s=p['reset_timeout_s'])
        self.sampler = RobotSampler(task, task.obs_dim, 2, self.cfg,
                                    seed=p['seed'] + p['seed_offset'])
        self.executor_id = p['executor_id']
        self.base_frame = p['base_frame']
        self.max_policy_age = p['max_policy_age_s']
        self._learner_seen = time.monotonic()
        self.paused = p['start_paused']
        self.e_stop = False
        self.interventions = 0
        self.stop_reason: str | None = 'no policy yet'
        self.phase = 'wait'
        self.pose_input = PoseInput(self, p)
        # A navigation task reads the robot's LaserScan; its body disc tells contacts.
        self.scan = ScanInput(self, p, task.scan_spec) if task.scan_spec is not None else None
        self.robot_radius = p['robot_radius_m']

        self.cmd_pub = self.create_publisher(TwistStamped, 'policy/cmd_vel', qos.COMMAND)
        self.return_pub = self.create_publisher(Float32, 'episode/return', qos.METRICS)
        self.cost_pub = self.create_publisher(Float32, 'episode/cost', qos.METRICS)
        self.faults = FaultReport(self)
        self.chunks = ChunkSender(self, self.faults, self.executor_id)
        self.learner = LearnerInput(self, self.faults, self.sampler.set_policy,
                                    self._policy_loaded, self._on_status,
                                    task_identity(task))
        # The monitor's state and count, from the monitor alone: a stranger's false would
        # unlatch the sampling, its huge count would hide every later intervention.
        self.monitor_inputs = {topic: SolePublisher(self, topic, MONITOR_INPUT_HOLD_S)
                               for topic in ('e_stop/latched', 'shield/interventions')}
        for (topic, sole), (msg_type, callback, profile) in zip(
                self.monitor_inputs.items(), ((Bool, self._on_e_stop, qos.LATCHED),
                                              (Float32, self._on_interventions, qos.METRICS)),
                strict=True):
            sole.subscription = self.create_subscription(
                msg_type, topic, callback, profile, event_callbacks=sole.event_callbacks())
        self.create_service(SetBool, 'learning/pause', self._on_pause)
        # The control period follows the ROS clock: /clock beside the stand-in, wall time on
        # a robot. Diagnostics follow the steady clock.
        self.create_timer(self.dt, self._control)
        create_steady_timer(self, 1.0 / p['diagnostics_rate_hz'], self._publish_diagnostics)
        self.get_logger().info(
            f'learning on the robot as {self.executor_id!r}: {1.0 / self.dt:.3g} Hz, episodes '
            f'of {task.max_episode_steps} steps, {episodes} per chunk, shield samples '
            f'{self.cfg.shield_samples}, pose from '
            f'{self.resolve_topic_name(self.pose_input.topic)}'
            + (f", scan from {self.resolve_topic_name('scan')}" if self.scan is not None else '')
            + (' (paused: call learning/pause false)' if self.paused else ''))

    # -- inputs ---------------------------------------------------------------------------------
    def _policy_loaded(self, swapped: bool) -> None:
        self._heard_learner()
        if swapped:
            self.chunks.policy_loaded(self.sampler.version, self.sampler.session)
            self.get_logger().info(f'policy version {self.sampler.version} loaded')
        self._maybe_resume()

    def _on_status(self, status: dict[str, object]) -> None:
        if self.sampler.policy is None or int(status['session']) == self.sampler.session:
            # Only the session whose policy drives the robot proves the learner alive: a
            # stranger's statuses must not keep a robot learning after the learner died.
            self._heard_learner()
        self._maybe_resume()

    def _heard_learner(self) -> None:
        self._learner_seen = time.monotonic()

    def _maybe_resume(self) -> None:
        """Sample another chunk of this version when the learner wants more than it has."""
        s = self.sampler
        if s.waiting and self.chunks.wants_more(self.learner.status(s.session), s.version):
            s.resume()

    def _on_e_stop(self, msg: Bool) -> None:
        # Not taken while another node publishes there too (the control step stops then).
        if self.monitor_inputs['e_stop/latched'].check() is None:
            self.e_stop = bool(msg.data)

    def _on_interventions(self, msg: Float32) -> None:
        if self.monitor_inputs['shield/interventions'].check() is None and (
                math.isfinite(msg.data) and 0.0 <= msg.data < 2.0 ** 53):
            self.interventions = int(msg.data)  # the monitor's running count

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response
                  ) -> SetBool.Response:
        self.paused = bool(request.data)
        self.get_logger().info('learning paused by the operator' if self.paused
                               else 'learning resumed by the operator')
        response.success = True
        response.message = 'paused' if self.paused else 'resumed'
        return response

    # -- the control step -----------------------------------------------------------------------
    def _stop_reason(self) -> str | None:
        if self.paused:
            return 'paused by the operator (learning/pause)'
        if self.e_stop:
            return 'e-stop latched'
        for sole in self.monitor_inputs.values():
            if sole.check() is not None:
                return sole.reason
        silent = time.monotonic() - self._learner_seen
        if silent > self.max_policy_age:
            # The learner re-sends its status every second: silence means it is gone.
            return f'learner lost: nothing from it for {silent:.0f} s (max_policy_age_s)'
        if self.sampler.policy is None:
            return 'no policy yet'
        return self.pose_input.stop_reason() or (
            self.scan.stop_reason() if self.scan is not None else None)

    def _control(self) -> None:
        try:
            self.stop_reason = self._stop_reason()
            pose, twist = self.pose_input.pose, self.pose_input.twist
            measured = None
            if pose is not None and twist is not None:
                readings = self._readings(pose)
                if readings is not None:
                    measured = Measured(pose, twist, readings, self.interventions)
            now = self.get_clock().now().nanoseconds * 1e-9
            tick = self.sampler.control(now, measured, self.stop_reason)
        except Exception:
            self.stop_robot()
            raise
        self.phase = tick.phase
        cmd = tick.cmd if np.all(np.isfinite(tick.cmd)) else np.zeros(2)
        self.cmd_pub.publish(array_to_twist_stamped(cmd, self.get_clock().now().to_msg(),
                                                    self.base_frame))
        for episode in tick.episodes:
            if episode.cut is None:
                self.return_pub.publish(Float32(data=episode.ret))
                self.cost_pub.publish(Float32(data=float(episode.costs[0])))
            else:
                self.get_logger().info(f'episode cut after {episode.length} steps: '
                                       f'{episode.cut} (truncated, bootstrapped)')
        if tick.chunk is not None:
            self._publish_chunk(tick.chunk)

    def _readings(self, pose: np.ndarray) -> np.ndarray | None:
        """Return the task's readings at the measured pose; None without a usable scan."""
        if self.scan is None:
            return self.task.sensors(pose[None])[0]
        if self.scan.ranges is None:
            return None
        # The step's collision cost comes from the scan: the robot's body is touched.
        self.task.contacts[0] = self.scan.touching(self.robot_radius)
        return self.task.sensors(pose[None], scan=self.scan.ranges[None])[0]

    def _publish_chunk(self, chunk: dict[str, np.ndarray]) -> None:
        self.chunks.send(chunk)
        self._maybe_resume()

    def stop_robot(self) -> None:
        """Send a zero command (Ctrl-C, SIGTERM, an error) and wait briefly for delivery."""
        self.cmd_pub.publish(array_to_twist_stamped(np.zeros(2), self.get_clock().now().to_msg(),
                                                    self.base_frame))
        self.cmd_pub.wait_for_all_acked(Duration(seconds=0.5))

    def _publish_diagnostics(self) -> None:
        level = DiagnosticStatus.OK
        message = {'episode': 'learning: in an episode', 'reset': 'resetting to a start pose',
                   'wait': 'waiting for the next policy'}.get(self.phase, 'stopped')
        if self.stop_reason is not None:
            level, message = DiagnosticStatus.WARN, f'robot stopped: {self.stop_reason}'
        values = {'phase': self.phase, 'paused': self.paused, 'e_stop': self.e_stop,
                  'policy_version': self.sampler.version, 'stop_reason': self.stop_reason,
                  'chunk_episodes': self.cfg.chunk_episodes,
                  'shield_samples': self.cfg.shield_samples, **self.sampler.counts}
        if self.scan is not None:
            values.update(scans=self.scan.received, rejected_scans=self.scan.rejected)
        self.faults.publish(level, message, values)
