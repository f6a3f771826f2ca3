"""Clocks for safety checks: timers on the steady clock, ages on the clock that drives the data.

The system clock steps (back, at boot, on robots without a real-time clock) and stalls a timer
that follows it: every watchdog timer runs on the steady clock. The age of an input is measured
on the steady clock on a robot, and on the node's ROS clock in simulated training, where
`/clock` stands still while the learner updates and nothing should count as stale then.
"""

import time

from rclpy.clock import Clock, ClockType
from rclpy.node import Node


def steady_clock() -> Clock:
    """Return a steady (monotonic) clock for timers that must never stall."""
    return Clock(clock_type=ClockType.STEADY_TIME)


def create_steady_timer(node: Node, period_s: float, callback):
    """Create a timer on the steady clock (watchdogs, gates, diagnostics)."""
    return node.create_timer(period_s, callback, clock=steady_clock())


def uses_sim_time(node: Node) -> bool:
    """Return whether the node follows /clock."""
    return bool(node.get_parameter('use_sim_time').value)


class ArrivalClock:
    """Seconds for input ages: steady time on a robot, the ROS (simulation) clock in training."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.sim = uses_sim_time(node)

    def now(self) -> float:
        """Return the current time in seconds on this clock."""
        if self.sim:
            return self._node.get_clock().now().nanoseconds * 1e-9
        return time.monotonic()
