"""Take velocity commands from one configured node only: the gate's check of who publishes.

Jazzy's rclpy does not tell a subscription callback which publisher sent a message (the
publisher GID in MessageInfo arrived in rclpy after Jazzy, ros2/rclpy#1466). What it does
offer, and what this check uses:

- the number of publishers the subscription is matched with (DDS matching: a writer is
  matched before any of its data is delivered), read when each message is taken;
- the ROS graph: the node name and namespace of every publisher on the topic;
- the matched event, fired whenever a publisher joins or leaves.

A command is trusted only while exactly one publisher is matched and the graph shows exactly
one publisher on the topic, from the configured node. When a publisher leaves (the matched
event) or another publisher is seen, the last command is forgotten and commands are refused
for hold_s, so a message from a publisher that came and went between two checks is acted on
at most until its leaving is noticed (the same turn of the executor).

Once a command has been taken, the source is the publisher endpoint (its GID in the ROS
graph) that sent it, not only its node name: when that endpoint leaves the graph, or another
takes its place, on_lost is called once (the monitor latches its e-stop), so a process that
takes the executor's name after the executor died does not drive. Trust starts again with the
next command taken after release().

What this does not prevent: without DDS security (SROS2) any participant may create a node of
the configured name. While the real executor runs, such an impostor is a second publisher and
every command is refused (the robot stops); one that is there before the first command is
taken (or after a release) is indistinguishable from the executor. Only SROS2 permissions
(docs/safety.md) stop a participant from publishing on the topic at all.
"""

from collections.abc import Callable
import time

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node

from cpo_ros.ros.sole_publisher import publisher_endpoints


def resolve_node_name(node: Node, name: str) -> str:
    """Return the fully qualified name of `name`, relative names in node's namespace."""
    if name.startswith('/'):
        return name
    namespace = node.get_namespace().rstrip('/')
    return f'{namespace}/{name}'


class CommandSource:
    """Decide whether a command on a topic comes from the one configured node."""

    def __init__(self, node: Node, topic: str, source: str, hold_s: float,
                 on_untrusted: Callable[[str], None] | None = None,
                 on_lost: Callable[[str], None] | None = None) -> None:
        self.node = node
        self.topic = topic
        self.source = resolve_node_name(node, source)
        self.hold_s = hold_s
        self.on_untrusted = on_untrusted
        self.on_lost = on_lost
        self.subscription = None
        self.refused = 0
        """Commands refused because their source could not be trusted."""
        self.reason: str | None = 'no command yet'
        self.losses = 0
        """Times the endpoint commands were taken from left the graph or was replaced."""
        self._hold_until = 0.0
        self._gids: list[bytes] = []  # the publishers' endpoint GIDs at the last check
        self._trusted_gid: bytes | None = None  # the endpoint commands were taken from

    def event_callbacks(self) -> SubscriptionEventCallbacks:
        """Return the subscription's event callbacks (pass as event_callbacks=)."""
        return SubscriptionEventCallbacks(matched=self._on_matched)

    def _on_matched(self, info) -> None:
        # A joining publisher is caught by the count check of each message; one that left
        # may have sent something just before: forget it and trust nothing for hold_s. (A
        # join and a leave between two events net to no change in the current count.)
        if info.total_count_change - info.current_count_change > 0:
            self._untrusted('a publisher of policy/cmd_vel left')
            if info.current_count == 0 and self._trusted_gid is not None:
                self._lose()  # every publisher left, the trusted one with them

    def _lose(self) -> None:
        self._trusted_gid = None
        self.losses += 1
        if self.on_lost is not None:
            self.on_lost(f'the publisher of policy/cmd_vel that commands were taken from '
                         f'({self.source}) left')

    def _untrusted(self, reason: str) -> None:
        self._hold_until = time.monotonic() + self.hold_s
        self.reason = reason
        if self.on_untrusted is not None:
            self.on_untrusted(reason)

    def publishers(self) -> list[str]:
        """Return the fully qualified node names publishing on the topic (ROS graph)."""
        endpoints = publisher_endpoints(self.node, self.topic)
        self._gids = [gid for _name, gid in endpoints]
        return [name for name, _gid in endpoints]

    def release(self) -> None:
        """Trust the source again from the next command taken (after an explicit release)."""
        self._trusted_gid = None

    def check(self) -> str | None:
        """Return why commands cannot be trusted now, or None when they can."""
        names = self.publishers()
        if self._trusted_gid is not None and self._trusted_gid not in self._gids:
            # The endpoint commands came from left the graph (or its node died and another
            # took its name): whoever publishes next is not known to be the executor.
            self._lose()
        matched = (self.subscription.get_publisher_count() if self.subscription is not None
                   else len(names))
        if matched != 1 or names != [self.source]:
            unknown = [n for n in names if 'UNKNOWN' in n]
            if not names or unknown:  # a sender not (or no longer) named in the ROS graph
                reason = (f'the publisher of policy/cmd_vel is not identified in the ROS graph '
                          f'(just started, or gone; {matched} matched, named {names}): '
                          f'commands refused until only {self.source} is seen')
            else:
                others = sorted(set(names) - {self.source}) or names
                reason = (f'policy/cmd_vel has {matched} matched publisher(s), not only '
                          f'{self.source}: {others}: commands refused')
            self._untrusted(reason)
            self.node.get_logger().warn(self.reason, throttle_duration_sec=1.0)
            return self.reason
        if time.monotonic() < self._hold_until:
            return self.reason
        self.reason = None
        return None

    def accept(self) -> bool:
        """Return whether the message just taken may be used; count it when not."""
        if self.check() is None:
            if self._trusted_gid is None:
                self._trusted_gid = self._gids[0]  # the one publisher, named as the source
            return True
        self.refused += 1
        return False
