"""Take a topic's messages only while one publisher sends them: the robot's inputs' check.

A robot has one odometry source, one laser driver per scan topic, one safe-area monitor. A
second publisher there (a second driver, a replayed bag, a stranger on the network) makes
every message suspect, since Jazzy's rclpy does not say which publisher sent one: while the
subscription is matched with more than one publisher (read at every check), or the ROS graph
shows more than one (read at most every CHECK_PERIOD_S, and at once when the matched count
changes), its messages are refused and the check names the publishers. A publisher that
leaves may have sent something just before (a `ros2 topic pub --once`): after every leave the
messages are refused for hold_s as well.

Unlike cpo_ros.ros.command_source (the gate's one command source, a configured node), the
publisher's name is not known here (any driver), so a sole impostor is not told from the
driver; SROS2 (docs/safety.md) keeps strangers off these topics.
"""

import time

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node

CHECK_PERIOD_S = 0.05
"""The graph is read at most this often (steady time) while the matched count stays."""


def publisher_endpoints(node: Node, topic: str) -> list[tuple[str, bytes]]:
    """Return (fully qualified node name, endpoint GID) of each publisher on topic (graph)."""
    infos = node.get_publishers_info_by_topic(node.resolve_topic_name(topic))
    return [(f'{i.node_namespace.rstrip("/")}/{i.node_name}', bytes(i.endpoint_gid))
            for i in infos]


def publisher_names(node: Node, topic: str) -> list[str]:
    """Return the fully qualified names of the nodes publishing on topic (ROS graph)."""
    return [name for name, _gid in publisher_endpoints(node, topic)]


class SolePublisher:
    """Tell whether a subscription's topic has one publisher, or why its messages are refused.

    Pass event_callbacks() to the subscription and set .subscription to it.
    """

    def __init__(self, node: Node, topic: str, hold_s: float = 0.0) -> None:
        self.node = node
        self.topic = topic
        self.hold_s = hold_s
        self.subscription = None
        self.reason: str | None = None
        self._names: list[str] = []
        self._matched: int | None = None
        self._checked = -float('inf')
        self._hold_until = -float('inf')

    def event_callbacks(self) -> SubscriptionEventCallbacks:
        """Return the subscription's event callbacks (pass as event_callbacks=)."""
        return SubscriptionEventCallbacks(matched=self._on_matched)

    def _on_matched(self, info) -> None:
        self._checked = -float('inf')  # a publisher came or went: read the graph again
        if info.total_count_change - info.current_count_change > 0:  # one left
            self._hold_until = time.monotonic() + self.hold_s

    def check(self) -> str | None:
        """Return why the topic's messages cannot be trusted now, or None with one publisher."""
        now = time.monotonic()
        matched = (self.subscription.get_publisher_count() if self.subscription is not None
                   else None)
        if now - self._checked >= CHECK_PERIOD_S or matched != self._matched:
            self._checked, self._matched = now, matched
            self._names = publisher_names(self.node, self.topic)
        count = max(matched or 0, len(self._names))
        if count > 1:
            self.reason = (f'{self.topic} has {count} publishers {self._names}: its messages '
                           f'are refused while more than one sends (a second driver, a '
                           f'replayed bag, a stranger)')
            self.node.get_logger().warn(self.reason, throttle_duration_sec=5.0)
        elif now < self._hold_until:
            self.reason = (f'{self.topic}: a publisher left; messages refused for '
                           f'{self.hold_s:g} s after it')
        else:
            self.reason = None
        return self.reason
