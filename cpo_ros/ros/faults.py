"""Refused messages and failed work: one throttled warning per kind and field, and counters.

Every node that reads a message from the wire reports a refusal here: the warning names the
message and the field (InvalidField.field) and is throttled per (message, field), so a flood of
one bad field cannot hide another; the counters go out on `diagnostics` (a
diagnostic_msgs/DiagnosticStatus per node) for rqt_runtime_monitor and `ros2 topic echo`.
"""

from collections import Counter
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from cpo_ros.ros import qos
from cpo_ros.ros.watchdog import create_steady_timer

WARN_PERIOD_S = 5.0
PUBLISH_PERIOD_S = 0.2
"""Refusals publish the node's status at most this often: a flood of bad messages must not
become a flood on /diagnostics (the counts of the ones between go out with the next)."""
RECENT_S = 60.0
"""The status is WARN while a refusal or failure is this recent; older ones stay counted, OK."""


def status_name(node: Node) -> str:
    """Return the DiagnosticStatus name of node's one status: its fully qualified name.

    One path-like scheme for every node ('/safe_area_monitor', '/worker_0/sim_bridge'), as
    diagnostic_aggregator's analyzers match names by prefix or part (config/diagnostics.yaml).
    """
    return node.get_fully_qualified_name()


class FaultReport:
    """Count a node's refusals and failures; warn (throttled) and publish them as diagnostics."""

    def __init__(self, node: Node) -> None:
        self.node, self.name = node, status_name(node)
        self.counts: Counter[str] = Counter()
        self._last_warn: dict[str, float] = {}
        self._silenced: Counter[str] = Counter()
        self._own: tuple[bytes | None, str, dict[str, object] | None] = (None, '', None)
        """The node's last own status (publish), repeated with every refusal's counters."""
        self.pub = node.create_publisher(DiagnosticArray, '/diagnostics', qos.METRICS)
        self._published = -PUBLISH_PERIOD_S  # steady time of the last refusal's status
        self._pending = False  # refusals counted since then, not yet published
        self._last_fault = -RECENT_S
        self._warned = False  # the last status went out as WARN for a recent fault
        create_steady_timer(node, PUBLISH_PERIOD_S, self._publish_pending)

    def refuse(self, what: str, exc: Exception) -> None:
        """Count a dropped message of kind what (e.g. 'rollout') and warn, throttled per field."""
        field = getattr(exc, 'field', 'payload')
        key = f'refused_{what}.{field}'
        self.counts[key] += 1
        self.counts[f'refused_{what}'] += 1
        now = time.monotonic()
        if now - self._last_warn.get(key, -WARN_PERIOD_S) >= WARN_PERIOD_S:
            more = self._silenced.pop(key, 0)
            note = f' ({more} more like it since the last warning)' if more else ''
            self.node.get_logger().warn(
                f'dropped a malformed {what} (field {field}): {exc}; {self.counts[key]} '
                f'refused so far{note}')
            self._last_warn[key] = now
        else:
            self._silenced[key] += 1
        self._last_fault = now
        # The node's own status and values with the new counters: a monitor (rqt) never sees
        # the status flick to a bare list of counters between the node's own reports.
        if now - self._published >= PUBLISH_PERIOD_S:
            self._published = now
            self._publish(*self._own)
        else:
            self._pending = True

    def _publish_pending(self) -> None:
        now = time.monotonic()
        # Also once a WARN has aged out: a node that reports only on refusals would show its
        # last WARN for good.
        aged = self._warned and now - self._last_fault >= RECENT_S
        if self._pending or aged:
            self._pending = False
            self._published = now
            self._publish(*self._own)

    def count(self, key: str, n: int = 1) -> None:
        """Add n to a counter (e.g. 'failed_updates') without a warning."""
        self.counts[key] += n
        self._last_fault = time.monotonic()

    def publish(self, level: bytes | None = None, message: str = '',
                values: dict[str, object] | None = None) -> None:
        """Publish the counters (and values) as this node's DiagnosticStatus."""
        self._own = (level, message, dict(values) if values else None)
        self._publish(level, message, values)

    def _publish(self, level: bytes | None, message: str,
                 values: dict[str, object] | None) -> None:
        recent = bool(self.counts) and time.monotonic() - self._last_fault < RECENT_S
        self._warned = level is None and recent
        if level is None:
            level = DiagnosticStatus.WARN if recent else DiagnosticStatus.OK
        if not message:
            message = ('input refused or work failed (see values)' if recent
                       else 'ok (earlier refusals and failures counted in the values)'
                       if self.counts else 'ok')
        status = DiagnosticStatus(level=level, name=self.name, message=message,
                                  hardware_id=self.node.get_namespace())
        items = {**(values or {}), **dict(sorted(self.counts.items()))}
        status.values = [KeyValue(key=k, value=str(v)) for k, v in items.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(array)
