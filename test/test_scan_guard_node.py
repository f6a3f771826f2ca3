"""The monitor's scan guard across processes: scans sent with the ros2 CLI's default QoS.

The monitor (gate, scan_guard on) runs in its own process; the probe publishes the pose, a
"drive straight ahead" policy command and a 360-ray LaserScan, and reads the gated cmd_vel.
"""

import math
import threading
import time

from builtin_interfaces.msg import Time as TimeMsg
from conftest import wait_until
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
import numpy as np
from rclpy.clock import Clock
from sensor_msgs.msg import LaserScan

from cpo_ros.ros import qos
from cpo_ros.ros.conversions import pose_twist_to_odometry
from cpo_ros.ros.laser_scan import ranges_to_laser_scan

# Timeouts well above the feeder's period: a loaded test machine must not look like a stale
# input (the stale cases send stamps 5 s old, or nothing).
MONITOR = ('shield_mode:=gate', 'cmd_timeout_s:=2.0', 'pose_timeout_s:=2.0',
           'scan_timeout_s:=2.0', 'gate_rate_hz:=20.0', 'diagnostics_rate_hz:=5.0', 'task:=goal',
           'scan_margin_m:=0.1', 'command_source:=test_probe',
           'area_type:=rectangle', 'area_rectangle:=[-50.0, 50.0, -50.0, 50.0]')
DEGREES = np.arange(360) - 180


def wall_scan(distance: float) -> np.ndarray:
    """Return a 360-ray scan of a wall `distance` ahead (+inf elsewhere, NaN here and there)."""
    out = np.where(np.abs(DEGREES) < 70, distance / np.cos(np.radians(DEGREES)), np.inf)
    out[out > 4.0] = np.inf
    out[::17] = np.nan
    return out


class ScanFeeder:
    """Publish odometry, a forward command (0.5 m/s) and a scan at 20 Hz from a thread."""

    def __init__(self, probe) -> None:
        self.odom_pub = probe.create_publisher(Odometry, 'odom', qos.CLI_DEFAULT)
        self.cmd_pub = probe.create_publisher(TwistStamped, 'policy/cmd_vel', qos.CLI_DEFAULT)
        self.scan_pub = probe.create_publisher(LaserScan, 'scan', qos.CLI_DEFAULT)
        self.commands: list[tuple[float, float, float]] = []
        probe.create_subscription(TwistStamped, 'cmd_vel', self._on_cmd, qos.CLI_DEFAULT)
        self.wall = math.inf
        self.frame = 'base_scan'
        self.send_scan = True
        self.stamp_offset = 0.0
        self.scan_stamp: TimeMsg | None = None
        """Sent in place of the clock's stamp when set."""
        self.readings: np.ndarray | None = None
        """Sent in place of the wall's readings when set."""
        self.every_other_frame: str | None = None
        """Every other scan goes out in this frame when set (a refused one between good)."""
        self.every_other_offset = 0.0
        """Every other scan is stamped this much in the past (negative: the future)."""
        self._sent = 0
        self.running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _on_cmd(self, msg: TwistStamped) -> None:
        self.commands.append((time.monotonic(), msg.twist.linear.x, msg.twist.angular.z))

    def _run(self) -> None:
        while self.running:
            stamp = Clock().now().to_msg()
            self.odom_pub.publish(pose_twist_to_odometry(np.zeros(3), np.zeros(2), stamp,
                                                         'odom', 'base_link'))
            cmd = TwistStamped()
            cmd.header.stamp = stamp
            cmd.twist.linear.x, cmd.twist.angular.z = 0.5, 0.2
            self.cmd_pub.publish(cmd)
            if self.send_scan:
                t = Clock().now().nanoseconds * 1e-9 - self.stamp_offset
                t -= self.every_other_offset if self._sent % 2 else 0.0
                scan_stamp = self.scan_stamp or TimeMsg(sec=int(t), nanosec=int((t % 1) * 1e9))
                self._sent += 1
                frame = (self.every_other_frame if self.every_other_frame and self._sent % 2
                         else self.frame)
                readings = wall_scan(self.wall) if self.readings is None else self.readings
                self.scan_pub.publish(ranges_to_laser_scan(
                    readings, -math.pi, math.radians(1), 0.05, 4.0, frame, scan_stamp))
            time.sleep(0.05)

    def last_after(self, t0: float):
        after = [c for c in self.commands if c[0] > t0]
        return after[-1] if after else None

    def settled(self, v: float, w: float, timeout: float = 30.0) -> bool:
        """Return whether the gated command reaches (v, w) and holds it for 0.5 s."""
        def holds() -> bool:
            t0 = time.monotonic()
            time.sleep(0.5)
            after = [c for c in self.commands if c[0] > t0]
            return bool(after) and all(abs(c[1] - v) < 1e-6 and abs(c[2] - w) < 1e-6
                                       for c in after)
        return wait_until(holds, timeout, period=0.0)

    def close(self) -> None:
        self.running = False
        self._thread.join(timeout=2)


def test_a_second_scan_publisher_cannot_clear_the_way(start_node, probe, stranger_node):
    feeder = ScanFeeder(probe)
    try:
        monitor = start_node('safe_area_monitor', *MONITOR)
        feeder.wall = 0.5  # the driver sees a wall ahead: no forward speed
        assert feeder.settled(0.0, 0.2), monitor.output
        # A stranger publishes fresh scans of free space: scans are refused while two send.
        stranger = stranger_node('fake_laser')
        pub = stranger.create_publisher(LaserScan, 'scan', qos.CLI_DEFAULT)
        stop = threading.Event()

        def send() -> None:
            while not stop.is_set():
                pub.publish(ranges_to_laser_scan(np.full(360, np.inf), -math.pi,
                                                 math.radians(1), 0.05, 4.0, 'base_scan',
                                                 Clock().now().to_msg()))
                time.sleep(0.02)

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        try:
            assert feeder.settled(0.0, 0.0), monitor.output[-3000:]
            assert monitor.wait_for_output('scan has 2 publishers', 30), monitor.output[-3000:]
        finally:
            stop.set()
            thread.join()
        stranger.destroy_publisher(pub)
        stranger.destroy_node()
        assert feeder.settled(0.0, 0.2), monitor.output[-3000:]  # the driver's wall again
    finally:
        feeder.close()


def test_the_scan_guard_passes_clear_commands_and_stops_short_of_a_wall(start_node, probe):
    feeder = ScanFeeder(probe)
    try:
        feeder.send_scan = False
        monitor = start_node('safe_area_monitor', *MONITOR)
        # No scan yet: stop.
        assert wait_until(lambda: feeder.commands, 60), monitor.output
        assert feeder.settled(0.0, 0.0), monitor.output
        # A wall 3 m ahead: 0.5 m/s for the 0.8 s horizon keeps clear, the command passes.
        feeder.wall, feeder.send_scan = 3.0, True
        assert feeder.settled(0.5, 0.2), monitor.output
        # A wall 0.5 m ahead: the rollout would bring the body (0.1 m) within 0.1 m of it; the
        # guard keeps the turn and takes out the forward speed.
        feeder.wall = 0.5
        assert feeder.settled(0.0, 0.2), monitor.output
        feeder.wall = 3.0
        assert feeder.settled(0.5, 0.2)
        # A scan in another frame is refused (stop), naming both frames.
        feeder.frame = 'laser'
        assert feeder.settled(0.0, 0.0)
        assert monitor.wait_for_output("frame 'laser', laser_frame is 'base_scan'", 30)
        feeder.frame = 'base_scan'
        assert feeder.settled(0.5, 0.2)
        # A scan whose stamp is old (a stalled driver re-sending): stop; stopped arriving: stop.
        feeder.stamp_offset = 5.0
        assert feeder.settled(0.0, 0.0)
        feeder.stamp_offset = 0.0
        assert feeder.settled(0.5, 0.2), (feeder.commands[-5:], monitor.output[-3000:])
        # A stamp that is no time (negative seconds): refused, never a crash of the gate; stop.
        feeder.scan_stamp = TimeMsg(sec=-5)
        assert feeder.settled(0.0, 0.0)
        assert monitor.wait_for_output('is no time', 30), monitor.output[-3000:]
        feeder.scan_stamp = None
        assert feeder.settled(0.5, 0.2), monitor.output[-3000:]
        # A scan without measurements (all NaN, or the 0 some drivers send for no return) is
        # no sight of free space: refused, stop.
        for value in (np.nan, 0.0):
            feeder.readings = np.full(360, value)
            assert feeder.settled(0.0, 0.0), monitor.output[-3000:]
            assert monitor.wait_for_output('0 of 360 readings are measurements', 30)
            feeder.readings = None
            assert feeder.settled(0.5, 0.2), monitor.output[-3000:]
        # Good scans between refused ones: held still (scan_timeout_s after each refusal).
        feeder.every_other_frame = 'laser'
        assert feeder.settled(0.0, 0.0), monitor.output[-3000:]
        assert monitor.wait_for_output('after a refused message', 30), monitor.output[-3000:]
        feeder.every_other_frame = None
        assert feeder.settled(0.5, 0.2), monitor.output[-3000:]
        for offset in (10.0, -30.0):  # stale, then ahead of the clock, between fresh scans
            feeder.every_other_offset = offset
            assert feeder.settled(0.0, 0.0), monitor.output[-3000:]
            feeder.every_other_offset = 0.0
            assert feeder.settled(0.5, 0.2), monitor.output[-3000:]
        assert monitor.proc.poll() is None
        feeder.send_scan = False
        assert feeder.settled(0.0, 0.0)
    finally:
        feeder.close()
