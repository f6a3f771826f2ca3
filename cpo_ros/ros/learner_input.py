"""What an executor hears from the learner: its status (`cpo/iteration`) and its policy.

Both executors, the training one (nodes/policy_executor.py) and the robot's
(nodes/robot_executor.py), receive them the same way. A status is checked (wire.check_status)
and recorded as an announcement. A policy is loaded only when the learner announced it
(training/announcements.py), then parsed and checked (wire.check_policy), once per digest: the
learner re-sends both every second. A policy that overtook its announcement is held briefly
and refused only when none comes (a steady timer counts it). Every refusal is counted with
the field that failed, under `policy` or `iteration` (ros/faults.py), and never reaches the
executor.
"""

from collections.abc import Callable
import time

import numpy as np
from rclpy.node import Node
from std_msgs.msg import UInt8MultiArray

from cpo_ros.ros import qos
from cpo_ros.ros.conversions import msg_to_arrays
from cpo_ros.ros.faults import FaultReport
from cpo_ros.ros.watchdog import create_steady_timer
from cpo_ros.training.announcements import Announcements, HOLD_S
from cpo_ros.wire import check_policy, check_status


class LearnerInput:
    """Subscribe a node to the learner's status and policy; hand on what passes the checks.

    load(arrays) puts a checked policy in place and returns whether it changed the policy
    (a ValueError from it refuses the policy); loaded(changed) follows a successful load;
    on_status(status) follows every checked status, after any policy it released.
    """

    def __init__(self, node: Node, faults: FaultReport,
                 load: Callable[[dict[str, np.ndarray]], bool],
                 loaded: Callable[[bool], None],
                 on_status: Callable[[dict[str, object]], None], task: str) -> None:
        self.faults, self._load, self._loaded, self._on_status = faults, load, loaded, on_status
        self.task = task
        """This node's task identity (ros.params.task_identity): a policy of another is refused."""
        self.announcements = Announcements()
        self._loaded_digest = b''
        # The status first: the learner announces a policy before it publishes it, and with
        # both ready at once the executor takes them in the order they were created.
        node.create_subscription(UInt8MultiArray, 'cpo/iteration', self._status,
                                 qos.LEARNER_INPUT)
        node.create_subscription(UInt8MultiArray, 'cpo/policy', self._policy, qos.LEARNER_INPUT)
        create_steady_timer(node, HOLD_S / 2, self._count_refused)

    def status(self, session: int) -> dict[str, object] | None:
        """Return the newest status of a learner session, None when none is kept."""
        return self.announcements.status(session)

    def _policy(self, msg: UInt8MultiArray) -> None:
        # Held before it is parsed unless the learner announced it: cheap under a flood.
        digest = self.announcements.check(msg.data, time.monotonic())
        self._count_refused()
        if digest is not None and digest != self._loaded_digest:  # re-sent every second
            self._load_payload(msg.data, digest)

    def _count_refused(self) -> None:
        for exc in self.announcements.refused(time.monotonic()):
            self.faults.refuse('policy', exc)

    def _load_payload(self, payload, digest: bytes) -> None:
        try:
            arrays = msg_to_arrays(UInt8MultiArray(data=bytes(payload)))
            check_policy(arrays, self.task)  # wire.POLICY_FIELDS; weights checked when built
            changed = self._load(arrays)
        except ValueError as exc:
            self.faults.refuse('policy', exc)
            return
        self._loaded_digest = digest
        self._loaded(changed)

    def _status(self, msg: UInt8MultiArray) -> None:
        try:
            status = check_status(msg_to_arrays(msg))
        except ValueError as exc:
            self.faults.refuse('iteration', exc)
            return
        early = self.announcements.announce(status)
        if early is not None:  # the policy came before its announcement
            self._load_payload(early, status['policy_digest'])
        self._on_status(status)
