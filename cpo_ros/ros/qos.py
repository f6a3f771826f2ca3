"""Named QoS profiles: one place decides what may drop and what must arrive."""

from rclpy.qos import (
                       DurabilityPolicy,
                       HistoryPolicy,
                       qos_profile_sensor_data,
                       QoSProfile,
                       ReliabilityPolicy,
)

SENSOR = qos_profile_sensor_data
"""Best effort: subscribers of `odom` match any robot driver, reliable or not."""

LOCKSTEP = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
"""Lock-step training traffic (`batch/state`, `batch/cmd_vel`): a lost sample stalls a step."""

ROLLOUT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=4,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
"""Rollouts to the learner: a dropped cost sample would bias the constraint."""

LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""Latched state (`cpo/policy`, `safe_area/markers`): a late subscriber gets the latest."""

LEARNER_INPUT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=4,
                           reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""The executors' readers of the learner's latched `cpo/policy` and `cpo/iteration`.

Matches the learner's latched publishers; a few messages deep, so that a burst from another
publisher must be longer than that to push the learner's message out before it is read (the
learner re-sends both every second; training/announcements.py). Not deeper: each message
held may be as large as a stranger makes it.
"""

METRICS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
"""Figures for rqt_plot, costs on `safety/cost`, `diagnostics`."""

E_STOP = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
"""The e-stop input: `ros2 topic pub`'s defaults (reliable, volatile, depth 10).

A volatile subscription matches volatile and transient-local (latched) publishers alike; a
transient-local one would refuse the command line's volatile publisher.
"""

CLI_DEFAULT = E_STOP
"""What `ros2 topic pub` and `ros2 topic echo` use unless told otherwise: tests publish with it."""

COMMAND = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
"""Velocity commands: only the newest matters."""
