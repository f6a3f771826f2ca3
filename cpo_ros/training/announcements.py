"""What the learner announced: executors load only the policy its `cpo/iteration` names.

The learner's status (`cpo/iteration`, latched, re-sent every second with the policy) carries
`policy_digest`, the SHA-256 of the exact `cpo/policy` message it publishes for that version
and session. An executor loads a policy message only when its digest is one the learner
announced, so a policy published by anyone else -- any version, any session, well-formed or
not -- is refused before it is even parsed (field `announcement`), counted, and never acts.
Nothing here is secret: a stranger who publishes a status of his own and the policy it names
imitates the learner exactly, which only SROS2 prevents (docs/safety.md).

Checking a digest costs one hash of the payload, so an executor refuses a flood of forged
policies faster than a publisher can send them, and the learner's own message, re-sent with
its status every second, gets through: an executor that lost it under a flood (a latched
reader keeps only a few messages) has it again within a second.

The learner publishes the status first, but two topics are not ordered in transit: a policy
whose announcement has not come yet is held (the newest one only) for HOLD_S of steady time.
Only when a newer unannounced policy displaces it, or HOLD_S passes, is it refused and
counted, so the learner's own policy overtaking its status is never reported as forged.

No ROS here: the executors (nodes/policy_executor.py, nodes/robot_executor.py) feed it.
"""

from collections import OrderedDict
import hashlib

from cpo_ros.validation import InvalidField

HOLD_S = 0.25
"""Steady seconds a policy is held for its announcement before it is refused."""

KEEP = 32
"""Announcements (and sessions' statuses) kept: a flood of forged statuses must send this many
between the learner's status and its policy to make an executor refuse that policy once."""


def policy_digest(data) -> bytes:
    """Return the SHA-256 of a `cpo/policy` payload (bytes or any buffer: msg.data)."""
    return hashlib.sha256(data).digest()


class Announcements:
    """The policies and statuses the learner announced, newest last, bounded."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._digests: OrderedDict[bytes, tuple[int, int]] = OrderedDict()
        self._statuses: OrderedDict[int, dict[str, object]] = OrderedDict()
        self._early: tuple[bytes, bytes, float] | None = None
        """(digest, payload, arrival) of the newest policy not announced yet: held."""
        self._refused = 0
        """Held policies displaced by a newer one since the last refused() call."""

    def announce(self, status: dict[str, object]) -> bytes | None:
        """Record a checked status (wire.check_status); return a held payload it announces."""
        digest, session = status['policy_digest'], int(status['session'])
        # One policy per session: the newest status names it (an older one is no longer due).
        for old in [d for d, (s, _v) in self._digests.items() if s == session]:
            del self._digests[old]
        self._digests[digest] = (session, int(status['version']))
        self._statuses.pop(session, None)
        self._statuses[session] = status
        for book in (self._digests, self._statuses):
            while len(book) > self.keep:
                book.popitem(last=False)
        if self._early is not None and self._early[0] == digest:
            payload, self._early = self._early[1], None
            return payload
        return None

    def status(self, session: int) -> dict[str, object] | None:
        """Return the newest status of a learner session, None when none is kept."""
        return self._statuses.get(session)

    def check(self, payload, now: float) -> bytes | None:
        """Return the digest of an announced policy payload, None when it is held.

        A payload not announced yet is held (the newest one only, since now, steady seconds)
        in case its announcement is on the way: announce() hands it back. The one it
        displaces is refused (refused()).
        """
        digest = policy_digest(payload)
        if digest in self._digests:
            return digest
        if self._early is not None:  # a repeat too: a stranger may re-send one forgery
            self._refused += 1
        self._early = (digest, bytes(payload), now)
        return None

    def refused(self, now: float) -> list[InvalidField]:
        """Return the held policies refused since the last call: displaced, or held HOLD_S."""
        count, self._refused = self._refused, 0
        if self._early is not None and now - self._early[2] >= HOLD_S:
            self._early, count = None, count + 1
        return [InvalidField('announcement', 'a policy the learner did not announce on '
                             'cpo/iteration (policy_digest): another publisher sent it')
                for _ in range(count)]
