"""Clocks for safety checks: timers on the steady clock, ages on the clock that drives the data.

The system clock steps (back, at boot, on robots without a real-time clock) and stalls a timer
that follows it: every watchdog timer runs on the steady clock. The age of an input is measured
on the steady clock on a robot, and on the node's ROS clock in simulated training, where
`/clock` stands still while the learner updates and nothing should count as stale then.
"""

import math
import time

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.time import Time


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


class InputGate:
    """The state every robot input keeps: why it cannot be used, and the hold after a refusal.

    An input (odom, pose, scan) is usable when its last message was taken, no message was
    refused within `timeout` (a source that mixes good and bad messages, a failing driver or a
    stranger's forgeries between them, is not followed between them), and it arrived within
    `timeout` with a header.stamp neither older than timeout + tolerance nor ahead by more than
    tolerance. Arrival is timed on the ArrivalClock, stamps against the node's ROS clock; in
    simulation a stamp is not judged on arrival (/clock and the data come from one publisher
    on two topics that may arrive in either order).
    """

    def __init__(self, node: Node, topic: str, timeout: float, tolerance: float,
                 timeout_name: str) -> None:
        self.node = node
        self.topic = topic
        self.timeout = timeout
        self.tolerance = tolerance
        self.timeout_name = timeout_name
        """The parameter that sets timeout, named in the reasons."""
        self.clock = ArrivalClock(node)
        self.rejected = 0
        self.refused: str | None = f'no {topic} yet'
        """Why the latest message cannot be used, or None when it was taken."""
        self._held: tuple[float, str] = (-math.inf, '')
        self._arrival = -math.inf
        self._stamp = -math.inf

    def stamp_age(self, stamp: float) -> float:
        """Return the age of a header.stamp [s] on the node's ROS clock."""
        clock = self.node.get_clock()
        return (clock.now() - Time(seconds=stamp, clock_type=clock.clock_type)
                ).nanoseconds * 1e-9

    def check_stamp(self, stamp: float) -> None:
        """Raise ValueError for a stamp too old or ahead of this clock (not in simulation)."""
        if self.clock.sim:
            return
        problem = self._stamp_problem(self.stamp_age(stamp), ahead=True)
        if problem:
            raise ValueError(problem)

    def _stamp_problem(self, age: float, ahead: bool) -> str | None:
        """Return why a header.stamp `age` s old is unusable (ahead: judge stamps ahead too)."""
        # Ahead first: a message from the future must not become a reference for the next.
        if ahead and age < -self.tolerance:
            return (f'{self.topic} header.stamp is {-age:.2f} s ahead of this clock '
                    f'(tolerance {self.tolerance:g} s)')
        if age > self.timeout + self.tolerance:
            return (f'{self.topic} stale: header.stamp {age:.2f} s old (limit '
                    f'{self.timeout:g} + {self.tolerance:g} s)')
        return None

    def refuse(self, reason: str, count: bool = True) -> None:
        """Refuse the latest message and hold the input for `timeout` (counted unless told)."""
        if count:
            self.rejected += 1
            self.node.get_logger().warn(f'refused {self.topic}: {reason}',
                                        throttle_duration_sec=5.0)
        self.refused = reason
        self._held = (self.clock.now(), reason)

    def take(self, stamp: float) -> None:
        """Record a message taken, stamped `stamp`."""
        self.refused = None
        self._arrival, self._stamp = self.clock.now(), stamp

    def stop_reason(self) -> str | None:
        """Return why the input cannot be used now, or None when it is fresh and valid."""
        if self.refused is not None:
            return self.refused
        refused_at, why = self._held
        now = self.clock.now()
        # A clock that went back (a simulation's reset) ends the hold rather than stretch it.
        if refused_at <= now < refused_at + self.timeout:
            return (f'{self.topic}: held still {self.timeout:g} s ({self.timeout_name}) after a '
                    f'refused message: {why}')
        if now - self._arrival > self.timeout:
            return f'{self.topic} stale: none for {now - self._arrival:.1f} s'
        return self._stamp_problem(self.stamp_age(self._stamp), ahead=not self.clock.sim)
