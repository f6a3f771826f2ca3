"""What an executor sends the learner: rollout chunks on `cpo/rollout`, and when to send more.

Both executors, the training one (nodes/policy_executor.py) and the robot's
(nodes/robot_executor.py), send their chunks the same way: with the executor's id, a random
instance number (a restarted executor starts a new count in the learner's duplicate check), a
sequence number and the sample count (training/fleet.py, wire.check_chunk). After a chunk an
executor samples the same policy version again only when the learner's status asks for more
and counts all it was sent; a chunk lost on the way is written off after LOST_AFTER_S
(training/fleet.py: Deliveries), counted under `lost_samples` and logged.
"""

import os
import time

import numpy as np
from rclpy.node import Node
from std_msgs.msg import UInt8MultiArray

from cpo_ros.ros import qos
from cpo_ros.ros.conversions import arrays_to_msg
from cpo_ros.ros.faults import FaultReport
from cpo_ros.training.fleet import Deliveries, LOST_AFTER_S


class ChunkSender:
    """Publish an executor's chunks and tell it when the learner wants another."""

    def __init__(self, node: Node, faults: FaultReport, executor_id: str) -> None:
        self.executor_id = executor_id
        self.instance = int.from_bytes(os.urandom(4), 'little') + 1
        self._node, self._faults = node, faults
        self._seq = 0
        self._deliveries = Deliveries()
        self._session: int | None = None
        self._pub = node.create_publisher(UInt8MultiArray, 'cpo/rollout', qos.ROLLOUT)

    def send(self, chunk: dict[str, np.ndarray]) -> None:
        """Publish a rollout chunk (buffer.py's arrays with policy_version) with its metadata."""
        samples = int(chunk['reward'].size)
        chunk.update(executor_id=np.asarray(self.executor_id, np.str_),
                     executor_session=np.asarray(self.instance, np.int64),
                     chunk_seq=np.asarray(self._seq, np.int64),
                     samples=np.asarray(samples, np.int64))
        self._seq += 1
        self._deliveries.sent(int(chunk['policy_version']), samples, time.monotonic())
        self._pub.publish(arrays_to_msg(chunk))

    def policy_loaded(self, version: int, session: int) -> None:
        """Forget what older versions (or another learner session) were sent."""
        if session != self._session:
            self._session = session
            self._deliveries.forget()
        self._deliveries.forget(before=version)

    def wants_more(self, status: dict[str, object] | None, version: int) -> bool:
        """Return whether the learner's status asks this executor for another chunk of version.

        Only once the learner counts all this executor sent of it (it has seen what it
        brought), or wrote the rest off as lost.
        """
        if status is None or status['version'] != version or status['more'] <= 0:
            return False
        lost = self._deliveries.delivered(version, status['counted'].get(self.executor_id, 0),
                                          time.monotonic())
        if lost:
            self._faults.count('lost_samples', lost)
            self._node.get_logger().warning(
                f'{lost} samples of policy version {version} sent but not counted by the '
                f'learner after {LOST_AFTER_S:g} s: lost on the way, sampling again')
        return lost is not None
