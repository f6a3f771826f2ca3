"""Diagnostics that agree with themselves: names, stop_reason, and the cost cross-check.

The probe plays the simulator as sim_bridge does (odom, then the cost of the same step) with
real messages; the monitor is the real node.
"""

import time

from conftest import wait_until
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from std_msgs.msg import Float32

from cpo_ros.ros import qos
from cpo_ros.ros.conversions import pose_twist_to_odometry

X_LIMIT = 2.5  # config/circle_sim.yaml


class MonitorStatus:
    """Keep the latest /diagnostics status of the monitor, by name."""

    def __init__(self, probe) -> None:
        self.names: set[str] = set()
        self.values: dict[str, str] = {}
        probe.create_subscription(DiagnosticArray, '/diagnostics', self._on, qos.CLI_DEFAULT)

    def _on(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.names.add(status.name)
            if status.name == '/safe_area_monitor':
                self.values = {kv.key: kv.value for kv in status.values}


def _play(probe, odom_pub, cost_pub, xs, *, drop_every: int = 0, wrong: bool = False) -> int:
    """Publish odom and the cost of each step; drop every drop_every-th odom; return drops."""
    dropped = 0
    for k, x in enumerate(xs):
        stamp = probe.get_clock().now().to_msg()
        inside = abs(x) <= X_LIMIT
        if drop_every and k % drop_every == drop_every - 1:
            dropped += 1  # the odometry of this step is lost; its cost still arrives
        else:
            odom_pub.publish(pose_twist_to_odometry((x, 0.0, 0.0), (0.0, 0.0), stamp, 'odom',
                                                    'base_link'))
        cost = float(inside) if wrong else float(not inside)
        cost_pub.publish(Float32(data=cost))
        time.sleep(0.02)  # the bridge's telemetry rate, 50 Hz
    return dropped


def test_cost_check_counts_no_disagreement_when_odometry_drops(start_node, probe):
    status = MonitorStatus(probe)
    odom_pub = probe.create_publisher(Odometry, 'odom', qos.METRICS)
    cost_pub = probe.create_publisher(Float32, 'safety/cost', qos.METRICS)
    monitor = start_node('safe_area_monitor')  # training: shield_mode none, simulator's cost
    assert wait_until(lambda: 'shield_mode' in status.values, 60), monitor.output
    assert wait_until(lambda: odom_pub.get_subscription_count() and
                      cost_pub.get_subscription_count(), 30)
    # A robot that crosses the strip's edge again and again: the costs agree with the area.
    xs = [3.2 * ((k % 40) / 20.0 - 1.0) for k in range(400)]
    dropped = _play(probe, odom_pub, cost_pub, xs, drop_every=4)
    assert wait_until(lambda: int(status.values.get('cost_checks', 0)) +
                      int(status.values.get('unpaired_costs', 0)) >= len(xs) - 5, 20), \
        status.values
    assert status.values['disagreements'] == '0', status.values
    assert int(status.values['unpaired_costs']) >= dropped // 2, status.values
    assert int(status.values['cost_checks']) >= (len(xs) - dropped) // 2
    # Training (shield_mode none): the monitor commands nothing, so it names no stop reason.
    assert 'stop_reason' not in status.values
    assert status.names == {'/safe_area_monitor'}  # its fully qualified name
    # A simulator whose cost really differs is counted, once per compared step.
    before = int(status.values['cost_checks'])
    _play(probe, odom_pub, cost_pub, [0.0] * 20 + [3.0] * 20, wrong=True)
    assert wait_until(lambda: int(status.values['cost_checks']) >= before + 35, 20)
    assert int(status.values['disagreements']) == (int(status.values['cost_checks']) - before)
