"""The shield's stop inputs, across processes, sent as the `ros2` command line sends them.

The monitor runs in its own process; the probe publishes the pose and the policy's command,
and the e-stop with the command line's default QoS (reliable, volatile) or latched.
"""

import threading
import time

from builtin_interfaces.msg import Time as TimeMsg
from conftest import wait_until
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
import numpy as np
import pytest
from rclpy.clock import Clock
from std_msgs.msg import Bool
from std_srvs.srv import SetBool

from cpo_ros.ros import qos
from cpo_ros.ros.conversions import pose_twist_to_odometry

# The probe plays the executor: the gate takes policy/cmd_vel from it alone.
MONITOR = ('shield_mode:=gate', 'cmd_timeout_s:=2.0', 'pose_timeout_s:=2.0',
           'gate_rate_hz:=20.0', 'diagnostics_rate_hz:=5.0', 'command_source:=test_probe')


class Feeder:
    """Publish an inside pose and a forward policy command at 20 Hz from a thread."""

    def __init__(self, probe, pose_msg=None, speed: float = 0.3, cmd_node=None) -> None:
        self.speed = speed
        self.odom_pub = probe.create_publisher(Odometry, 'odom', qos.CLI_DEFAULT)
        self.cmd_pub = (cmd_node or probe).create_publisher(TwistStamped, 'policy/cmd_vel',
                                                            qos.CLI_DEFAULT)
        self.commands: list[tuple[float, float, float]] = []
        probe.create_subscription(TwistStamped, 'cmd_vel', self._on_cmd, qos.CLI_DEFAULT)
        self.pose_msg = pose_msg
        self.running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _on_cmd(self, msg: TwistStamped) -> None:
        self.commands.append((time.monotonic(), msg.twist.linear.x, msg.twist.angular.z))

    def _run(self) -> None:
        while self.running:
            stamp = Clock().now().to_msg()
            msg = self.pose_msg() if self.pose_msg else pose_twist_to_odometry(
                np.zeros(3), np.zeros(2), stamp, 'odom', 'base_link')
            msg.header.stamp = stamp
            self.odom_pub.publish(msg)
            cmd = TwistStamped()
            cmd.header.stamp = stamp
            cmd.twist.linear.x = self.speed
            cmd_pub = self.cmd_pub
            if cmd_pub is not None:  # None: the executor is gone
                cmd_pub.publish(cmd)
            time.sleep(0.05)

    def moving(self) -> bool:
        return bool(self.commands) and self.commands[-1][1] > 0.0

    def all_zero_after(self, t0: float) -> bool:
        after = [c for c in self.commands if c[0] > t0]
        return bool(after) and all(c[1] == 0.0 and c[2] == 0.0 for c in after)

    def stopped_for(self, seconds: float) -> bool:
        """Return whether every command of the last `seconds` was zero (waits that long)."""
        t0 = time.monotonic()
        time.sleep(seconds)
        return self.all_zero_after(t0)

    def close(self) -> None:
        self.running = False
        self._thread.join(timeout=2)


def release(probe) -> None:
    """Release the e-stop as an operator does: the e_stop service with false."""
    client = probe.create_client(SetBool, 'e_stop')
    assert client.wait_for_service(timeout_sec=10)
    assert client.call(SetBool.Request(data=False), timeout_sec=10).success


@pytest.fixture
def feeder(probe):
    f = Feeder(probe)
    yield f
    f.close()


def test_e_stop_from_the_command_line_qos_a_latched_publisher_and_the_service(
        start_node, probe, feeder):
    latched_states = []
    probe.create_subscription(Bool, 'e_stop/latched', lambda m: latched_states.append(m.data),
                              qos.LATCHED)
    monitor = start_node('safe_area_monitor', *MONITOR)
    assert wait_until(feeder.moving, 60), monitor.output
    # The state is re-sent with each report (a stranger's one-off false is corrected).
    assert wait_until(lambda: latched_states.count(False) >= 3, 10), latched_states
    # As `ros2 topic pub --once /e_stop std_msgs/msg/Bool '{data: true}'`: reliable, volatile.
    cli = probe.create_publisher(Bool, '/e_stop', qos.CLI_DEFAULT)
    assert wait_until(lambda: cli.get_subscription_count() > 0, 10), monitor.output
    cli.publish(Bool(data=True))
    assert wait_until(lambda: not feeder.moving(), 15)
    assert feeder.stopped_for(1.0)
    assert monitor.wait_for_output('e-stop latched by the e_stop topic', 15), monitor.output
    # A false on the topic (a stray message, a heartbeat, another node) releases nothing.
    cli.publish(Bool(data=False))
    assert monitor.wait_for_output('does not release a latched stop', 10), monitor.output
    assert feeder.stopped_for(0.5)
    # std_srvs/SetBool e_stop releases (false) and sets (true) the stop.
    client = probe.create_client(SetBool, 'e_stop')
    assert client.wait_for_service(timeout_sec=10)
    reply = client.call(SetBool.Request(data=False), timeout_sec=10)
    assert reply is not None and reply.success and reply.message == 'e-stop released'
    assert wait_until(feeder.moving, 15)
    # A latched (transient-local) publisher matches the volatile subscription too.
    latched = probe.create_publisher(Bool, 'e_stop', qos.LATCHED)
    assert wait_until(lambda: latched.get_subscription_count() > 0, 10)
    latched.publish(Bool(data=True))
    assert wait_until(lambda: not feeder.moving(), 15)
    assert feeder.stopped_for(0.5)
    reply = client.call(SetBool.Request(data=False), timeout_sec=10)
    assert reply is not None and reply.success and reply.message == 'e-stop released'
    assert wait_until(feeder.moving, 15)
    reply = client.call(SetBool.Request(data=True), timeout_sec=10)
    assert reply is not None and reply.message == 'e-stop latched'
    assert wait_until(lambda: not feeder.moving(), 15)
    assert feeder.stopped_for(0.5)


def test_e_stop_heartbeat_deadman(start_node, probe, feeder):
    monitor = start_node('safe_area_monitor', *MONITOR, 'e_stop_heartbeat_s:=0.5')
    heartbeat = probe.create_publisher(Bool, 'e_stop', qos.CLI_DEFAULT)
    assert wait_until(lambda: heartbeat.get_subscription_count() > 0 and feeder.commands, 60), \
        monitor.output
    assert feeder.stopped_for(1.0)  # no heartbeat yet: stop
    beating = threading.Event()
    beating.set()

    def beat():
        while beating.is_set():
            heartbeat.publish(Bool(data=False))
            time.sleep(0.1)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        assert wait_until(feeder.moving, 15), monitor.output
        # A stop latched while the heartbeat goes on: the heartbeat's false never releases it.
        heartbeat.publish(Bool(data=True))
        assert wait_until(lambda: not feeder.moving(), 15), monitor.output
        assert feeder.stopped_for(1.0)
        assert monitor.wait_for_output('does not release a latched stop', 10)
        release(probe)
        assert wait_until(feeder.moving, 15), monitor.output
    finally:
        beating.clear()
        thread.join()
    t_quiet = time.monotonic()
    assert wait_until(lambda: not feeder.moving(), 10)
    assert time.monotonic() - t_quiet < 1.5
    assert feeder.stopped_for(1.0)


def test_the_gate_takes_commands_from_its_executor_alone(start_node, stranger_node, feeder):
    monitor = start_node('safe_area_monitor', *MONITOR)
    assert wait_until(feeder.moving, 60), monitor.output
    # Another node publishes on policy/cmd_vel: no command passes while it is there.
    intruder = stranger_node('intruder')
    forged = intruder.create_publisher(TwistStamped, 'policy/cmd_vel', qos.CLI_DEFAULT)
    try:
        assert wait_until(lambda: not feeder.moving(), 10), monitor.output
        t0 = time.monotonic()
        for _ in range(20):
            msg = TwistStamped()
            msg.twist.linear.x = 1.0
            forged.publish(msg)
            time.sleep(0.05)
        assert feeder.all_zero_after(t0), feeder.commands[-5:]
        assert monitor.wait_for_output("['/intruder']: commands refused", 10), monitor.output
    finally:
        intruder.destroy_publisher(forged)
        intruder.destroy_node()
    # Gone again: the executor's commands pass after the hold (cmd_timeout_s).
    assert wait_until(feeder.moving, 10), monitor.output


@pytest.mark.parametrize('latch, impostor_first', [(True, False), (True, True),
                                                    (False, False)])
def test_a_process_that_takes_a_dead_executors_name_does_not_drive(
        start_node, probe, stranger_node, latch, impostor_first):
    executor = stranger_node('executor')
    feeder = Feeder(probe, cmd_node=executor)
    try:
        monitor = start_node('safe_area_monitor', *MONITOR, 'command_source:=executor',
                             f'latch_on_source_loss:={str(latch).lower()}')
        assert wait_until(feeder.moving, 60), monitor.output
        # A process takes the executor's name, before or after the executor dies (its
        # publisher leaves the graph). Before: two publishers, refused; then the one left is
        # known by its endpoint, not by its name.
        impostor = stranger_node('executor') if impostor_first else None
        imp_pub = (impostor.create_publisher(TwistStamped, 'policy/cmd_vel', qos.CLI_DEFAULT)
                   if impostor_first else None)
        if impostor_first:
            assert wait_until(lambda: imp_pub.get_subscription_count() > 0, 10)
        cmd_pub, feeder.cmd_pub = feeder.cmd_pub, None
        executor.destroy_publisher(cmd_pub)
        executor.destroy_node()
        assert wait_until(lambda: not feeder.moving(), 10), monitor.output
        if not impostor_first:
            impostor = stranger_node('executor')
            imp_pub = impostor.create_publisher(TwistStamped, 'policy/cmd_vel', qos.CLI_DEFAULT)
        feeder.cmd_pub = imp_pub
        if not latch:  # as before this check: the name is all the gate knows
            assert wait_until(feeder.moving, 10), monitor.output
            return
        assert monitor.wait_for_output('e-stop latched by the publisher of policy/cmd_vel that '
                                       'commands were taken from (/executor) left', 10), \
            monitor.output
        assert wait_until(lambda: feeder.cmd_pub.get_subscription_count() > 0, 10)
        assert feeder.stopped_for(1.5), feeder.commands[-5:]
        # Only the operator's release lets the (new) publisher of that name drive.
        release(probe)
        assert wait_until(feeder.moving, 10), monitor.output
    finally:
        feeder.close()


def test_a_second_odometry_publisher_stops_the_robot_until_it_leaves(start_node, probe,
                                                                    stranger_node, feeder):
    monitor = start_node('safe_area_monitor', *MONITOR)
    assert wait_until(feeder.moving, 60), monitor.output
    # A replayed bag or a stranger: valid, fresh poses from a second node, the robot "inside".
    bag = stranger_node('bag_player')
    odom = bag.create_publisher(Odometry, 'odom', qos.CLI_DEFAULT)
    assert wait_until(lambda: odom.get_subscription_count() > 0, 10)
    t0 = time.monotonic()
    for _ in range(20):
        odom.publish(pose_twist_to_odometry(np.zeros(3), np.zeros(2), Clock().now().to_msg(),
                                            'odom', 'base_link'))
        time.sleep(0.05)
    assert feeder.all_zero_after(t0 + 0.5), feeder.commands[-5:]
    assert monitor.wait_for_output("odom has 2 publishers ['/test_probe', '/bag_player']", 10) \
        or monitor.wait_for_output("odom has 2 publishers ['/bag_player', '/test_probe']", 1), \
        monitor.output
    bag.destroy_publisher(odom)
    bag.destroy_node()
    assert wait_until(feeder.moving, 10), monitor.output  # one publisher again


def test_the_gate_clips_to_the_profile_limits_in_every_mode(start_node, probe):
    fast = Feeder(probe, speed=5.0)
    try:
        monitor = start_node('safe_area_monitor', *MONITOR, 'shield_mode:=pass',
                             'max_linear_velocity:=0.5', 'max_linear_accel:=1.0')
        assert wait_until(lambda: fast.moving() and fast.commands[-1][1] >= 0.5, 60), \
            monitor.output
        speeds = [c[1] for c in fast.commands]
        assert max(speeds) == pytest.approx(0.5)
        # The ramp: no step above max_linear_accel times two gate periods.
        steps = np.diff([0.0] + speeds)
        assert steps.max() <= 1.0 * 2 / 20.0 + 1e-9, steps.max()
    finally:
        fast.close()


def test_monitor_staleness_follows_the_simulation_clock_in_training(start_node, probe):
    """A learner update pauses /clock and odom: not stale; sim time moving without odom is."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rosgraph_msgs.msg import Clock as ClockMsg

    monitor = start_node('safe_area_monitor', 'pose_timeout_s:=0.5', 'diagnostics_rate_hz:=10.0',
                         'use_sim_time:=true')
    diags = []
    probe.create_subscription(DiagnosticArray, '/diagnostics',
                              lambda m: diags.extend(m.status), qos.CLI_DEFAULT)
    clock_pub = probe.create_publisher(ClockMsg, '/clock', qos.CLI_DEFAULT)
    odom_pub = probe.create_publisher(Odometry, 'odom', qos.CLI_DEFAULT)
    assert wait_until(lambda: odom_pub.get_subscription_count() > 0 and diags, 60), \
        monitor.output
    sim = [100.0]

    def tick(with_odom=True):
        sim[0] += 0.04
        stamp = sim_stamp(sim[0])
        clock_pub.publish(ClockMsg(clock=stamp))
        if with_odom:
            odom_pub.publish(pose_twist_to_odometry(np.zeros(3), np.zeros(2), stamp, 'odom',
                                                    'base_link'))
        time.sleep(0.01)

    for _ in range(50):
        tick()
    assert wait_until(lambda: diags[-1].message == 'inside the safe area', 15), \
        [d.message for d in diags[-3:]]
    # Sim time stands still for 2 s of wall time (a learner update): still fresh.
    t0 = time.monotonic()
    time.sleep(2.0)
    during = diags[-15:]
    assert all('stale' not in d.message for d in during), [d.message for d in during]
    assert time.monotonic() - t0 >= 2.0
    # Sim time runs on without odometry: stale after pose_timeout_s of sim time.
    for _ in range(30):
        tick(with_odom=False)
    assert wait_until(lambda: 'stale' in diags[-1].message, 15), [d.message for d in diags[-3:]]


def sim_stamp(seconds: float) -> TimeMsg:
    """Return a builtin_interfaces/Time of simulated seconds."""
    return TimeMsg(sec=int(seconds), nanosec=int(round((seconds % 1) * 1e9)))
