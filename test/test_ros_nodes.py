"""Single nodes with real rclpy: the safe-area monitor and the sim bridge's real-time mode."""

from conftest import wait_until
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
import numpy as np
import pytest
from rclpy.clock import Clock
from std_msgs.msg import Bool, Float32
from visualization_msgs.msg import MarkerArray

from cpo_ros.ros import qos
from cpo_ros.ros.conversions import odometry_to_pose_twist, pose_twist_to_odometry


def odom(x, y=0.0, yaw=0.0):
    return pose_twist_to_odometry(np.array([x, y, yaw]), np.zeros(2), Clock().now().to_msg(),
                                  'odom', 'base_link')


def test_monitor_on_a_robot_publishes_cost_state_diagnostics_and_markers(start_node, probe):
    # A whole number for a float parameter (as typed: rcl reads it as an integer) is taken.
    monitor = start_node('safe_area_monitor', 'publish_cost:=true', 'pose_timeout_s:=0.5',
                         'diagnostics_rate_hz:=10')
    costs, inside, diags, markers = [], [], [], []
    probe.create_subscription(Float32, 'safety/cost', lambda m: costs.append(m.data),
                              qos.METRICS)
    probe.create_subscription(Bool, 'safety/in_safe_area', lambda m: inside.append(m.data),
                              qos.METRICS)
    probe.create_subscription(DiagnosticArray, 'diagnostics', lambda m: diags.append(m.status[0]),
                              qos.METRICS)
    probe.create_subscription(MarkerArray, 'safe_area/markers', markers.append, qos.LATCHED)
    pub = probe.create_publisher(Odometry, 'odom', qos.METRICS)
    assert wait_until(lambda: pub.get_subscription_count() > 0 and markers, 60), monitor.output
    assert {p.x for p in markers[0].markers[0].points} == {-2.5, 2.5}  # the strip |x| <= 2.5
    # No odometry yet: ERROR.
    assert wait_until(lambda: diags and diags[-1].level == DiagnosticStatus.ERROR, 10)
    pub.publish(odom(1.0))
    assert wait_until(lambda: costs and inside, 10)
    assert costs[-1] == 0.0 and inside[-1] is True
    diags.clear()
    for _ in range(3):
        pub.publish(odom(3.0))
    assert wait_until(lambda: len(costs) >= 2 and costs[-1] == 1.0 and inside[-1] is False, 10)
    # Keep the pose fresh (pose_timeout_s 0.5) until a diagnostics tick reports it outside.
    assert wait_until(lambda: pub.publish(odom(3.0)) or (
        diags and diags[-1].level == DiagnosticStatus.WARN), 10)
    values = {kv.key: kv.value for kv in diags[-1].values}
    assert values['exits'] == '1'
    # A non-finite pose is refused with a warning, never trusted; then odometry goes stale.
    bad = odom(0.0)
    bad.pose.pose.position.x = float('nan')
    pub.publish(bad)
    assert monitor.wait_for_output('refused odom', 10), monitor.output
    assert wait_until(lambda: diags[-1].level == DiagnosticStatus.ERROR
                      and 'non-finite' in diags[-1].message, 10)
    # An orientation that is no unit quaternion (all zero, or scaled: its yaw would be a
    # guess, here 0 for a robot facing pi) is refused the same way.
    for q in ((0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.5, 0.0)):
        bad = odom(0.0)
        o = bad.pose.pose.orientation
        o.x, o.y, o.z, o.w = q
        pub.publish(bad)
        assert wait_until(lambda: diags[-1].level == DiagnosticStatus.ERROR
                          and 'no unit quaternion' in diags[-1].message, 10), monitor.output
    # A pose stamped older than pose_timeout_s is refused at arrival (counted), not taken.
    # Refused and held: a fresh pose right after it is not taken for pose_timeout_s.
    old = odom(0.0)
    old.header.stamp.sec -= 10
    assert wait_until(lambda: pub.publish(old) or pub.publish(odom(0.0)) or (
                      'held still' in diags[-1].message
                      and 'odom stale: header.stamp' in diags[-1].message), 10), monitor.output
    pub.publish(odom(0.0))
    assert wait_until(lambda: diags[-1].level == DiagnosticStatus.ERROR
                      and 'stale' in diags[-1].message, 10)
    assert monitor.proc.poll() is None


def test_yaw_only_from_a_unit_quaternion():
    from cpo_ros.ros.conversions import quaternion_to_yaw, yaw_to_quaternion

    for yaw in (0.0, 1.0, -2.5, np.pi):
        assert abs(quaternion_to_yaw(*yaw_to_quaternion(yaw)) - yaw) < 1e-9
    assert abs(abs(quaternion_to_yaw(0.0, 0.0, 0.98, 0.0)) - np.pi) < 1e-9  # float32 rounding
    for q in ((0.0, 0.0, 0.5, 0.0), (0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, np.nan),
              (0.0, 0.0, 2.0, 0.0)):
        with pytest.raises(ValueError, match='no unit quaternion'):
            quaternion_to_yaw(*q)


@pytest.mark.parametrize('stamped', [True, False])
def test_realtime_bridge_follows_cmd_vel_and_stops_when_it_goes_stale(start_node, probe,
                                                                       stamped):
    bridge = start_node('sim_bridge', 'mode:=realtime', 'odom_rate_hz:=25.0',
                        'cmd_timeout_s:=0.3', 'dr_gain_scale:=[0.9, 1.1]',
                        'dr_velocity_noise:=0.001', f'cmd_vel_stamped:={str(stamped).lower()}')
    poses = []
    probe.create_subscription(Odometry, 'odom',
                              lambda m: poses.append(odometry_to_pose_twist(m)), qos.SENSOR)
    # TwistStamped, as Jazzy's diff_drive_controller takes it, or Twist for older drivers.
    cmd_type = TwistStamped if stamped else Twist
    cmd_pub = probe.create_publisher(cmd_type, 'cmd_vel', qos.CLI_DEFAULT)
    assert wait_until(lambda: len(poses) > 2 and cmd_pub.get_subscription_count() > 0, 60), \
        bridge.output
    # The randomisation is logged with its settings.
    assert bridge.wait_for_output('gain_scale=(0.9, 1.1)', 10), bridge.output
    cmd = cmd_type()
    (cmd.twist if stamped else cmd).linear.x = 1.0
    for _ in range(10):
        cmd_pub.publish(cmd)
        wait_until(lambda: False, 0.1)
    assert wait_until(lambda: poses[-1][1][0] > 0.5, 15), poses[-1]
    # No new command: after cmd_timeout_s the robot is commanded to stop.
    assert wait_until(lambda: abs(poses[-1][1][0]) < 0.05, 15), poses[-1]
    nan = cmd_type()
    (nan.twist if stamped else nan).linear.x = float('nan')
    cmd_pub.publish(nan)
    assert bridge.wait_for_output('dropped cmd_vel', 10), bridge.output
    assert bridge.proc.poll() is None


def test_use_sim_time_is_fixed_once_a_node_runs(probe):
    # rclpy's own parameter is writable by default: switched under a deployed robot it stamped
    # commands 0 and stopped it.
    from rclpy.parameter import Parameter

    from cpo_ros.ros.params import declare_parameters, ParamSpec

    values = declare_parameters(probe, [ParamSpec('rate_hz', 10.0, 'a rate', 0.1, 100.0)])
    assert values == {'rate_hz': 10.0}
    (result,) = probe.set_parameters([Parameter('use_sim_time', value=True)])
    assert not result.successful and 'use_sim_time is fixed' in result.reason
    assert probe.get_parameter('use_sim_time').value is False
