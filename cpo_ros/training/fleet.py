"""Many executors, one learner: rollout chunks merged into exactly one iteration's samples.

Executors anywhere in the ROS domain send chunks (a rollout as in buffer.py plus
`executor_id`, `executor_session`, `chunk_seq` and `samples`) sampled by one policy version.
The learner keeps the chunks of its current version until `steps_per_iteration` samples have
arrived, then merges them into one rollout for the update:

- Every env stream of every chunk is laid end to end and cut into W columns of equal length
  L (W * L = samples). A stream's end, the end of a column and the end of the part of the last
  chunk that is used are *cuts*: there the step is marked truncated and final_obs holds the
  next observation, which is exactly how a rollout's own last step is bootstrapped (GAE stops
  there, the critic's value of the next state stands in). A single chunk whose streams fill the
  columns one each therefore merges into the very rollout it was.
- The last chunk needed is cut to the samples still missing, so an iteration has exactly
  `steps_per_iteration` samples; the rest of that chunk is counted as surplus. An episode
  counts towards J_C when it ended inside the part used.

`ChunkGatherer` is the learner's bookkeeping (free of ROS): stale versions, duplicates and
malformed chunks are dropped and counted, each executor's share is counted, and it decides
when an iteration proceeds: when full, or after `iteration_timeout_s` with at least
`min_fraction` of the samples. It also tells executors that already delivered whether to
sample another chunk of the same version (`more`): when an executor that delivered before is
overdue (dead, or left), the others make up its share. An executor whose chunk came too late
(stale) is expected from then on as well, so a slow source beside fast ones gets its share.

`ChunkQueue` holds the chunks that wait while an update runs, bounded in bytes: in total and
per executor id, so that a flood cannot exhaust memory and one executor cannot crowd out the
others.

`Deliveries` is an executor's side: what it sent of each version, and whether the learner's
status counts all of it before it samples more. A chunk can be lost on the way (a flooded
reader's history or the learner's queue drops it); one the learner has not counted
`LOST_AFTER_S` after it was sent, while the learner still wants more, is written off, so a lost
chunk costs seconds, never the run.
"""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
import math
import threading
import time

import numpy as np

from cpo_ros.wire import check_chunk

LOST_AFTER_S = 3.0
"""Steady seconds after an executor's last chunk before samples the learner has not counted are
written off as lost (the learner re-sends its status every second and counts chunks as they come;
waiting while it updates is not a status it sends)."""

STEP_KEYS = ('obs', 'u', 'logp', 'reward', 'cost', 'terminated', 'truncated', 'final_obs')
"""Rollout arrays with one entry per sample, (T, N, ...)."""
META_KEYS = ('executor_id', 'executor_session', 'chunk_seq', 'samples')
"""What a chunk carries beyond a rollout (buffer.ROLLOUT_KEYS with policy_version)."""


def _streams(chunk: dict[str, np.ndarray], take: int) -> dict[str, np.ndarray]:
    """Return the first `take` samples of a chunk, env streams end to end, every end a cut."""
    t, n = chunk['reward'].shape
    flat = {k: np.swapaxes(np.asarray(chunk[k]), 0, 1).reshape(t * n, *chunk[k].shape[2:])
            for k in STEP_KEYS}
    flat['truncated'] = flat['truncated'].copy()
    flat['final_obs'] = flat['final_obs'].copy()
    ends = np.arange(n) * t + t - 1
    open_end = ~(flat['terminated'][ends] | flat['truncated'][ends])
    flat['truncated'][ends[open_end]] = True
    flat['final_obs'][ends[open_end]] = np.asarray(chunk['last_obs'])[open_end]
    out = {k: v[:take] for k, v in flat.items()}
    last = take - 1
    if take < t * n and not (out['terminated'][last] or out['truncated'][last]):
        out['truncated'][last] = True
        out['final_obs'][last] = flat['obs'][take]
    return out


def _episodes(chunk: dict[str, np.ndarray], take: int) -> dict[str, np.ndarray]:
    """Return the episode sums of a chunk whose ends lie in its first `take` samples."""
    t, _ = chunk['reward'].shape
    keys = ('episode_return', 'episode_cost', 'episode_length')
    if 'episode_end' not in chunk:
        if take < chunk['reward'].size and len(chunk['episode_return']):
            raise ValueError('a chunk cut short needs episode_end to tell its episodes apart')
        return {k: np.asarray(chunk[k]) for k in keys}
    end = np.asarray(chunk['episode_end'], np.int64).reshape(-1, 2)
    keep = end[:, 1] * t + end[:, 0] < take
    return {k: np.asarray(chunk[k])[keep] for k in keys}


def merge_chunks(chunks: list[dict[str, np.ndarray]], samples: int | None = None
                 ) -> dict[str, np.ndarray]:
    """Return one rollout of exactly `samples` samples (default: all) from chunks, in order.

    Chunks may differ in length T and width N; all must come from one policy version. The
    result has W = gcd(samples, number of streams) columns.
    """
    if not chunks:
        raise ValueError('no chunks to merge')
    versions = {int(np.asarray(c['policy_version'])) for c in chunks}
    if len(versions) != 1:
        raise ValueError(f'chunks of several policy versions {sorted(versions)}')
    total = sum(int(c['reward'].size) for c in chunks)
    samples = total if samples is None else int(samples)
    if not 0 < samples <= total:
        raise ValueError(f'cannot take {samples} samples from chunks holding {total}')
    parts, episodes, left, streams = [], [], samples, 0
    for chunk in chunks:
        if left == 0:
            break
        take = min(left, int(chunk['reward'].size))
        parts.append(_streams(chunk, take))
        episodes.append(_episodes(chunk, take))
        t, n = chunk['reward'].shape
        streams += math.ceil(take / t)
        left -= take
    flat = {k: np.concatenate([p[k] for p in parts]) for k in STEP_KEYS}
    width = math.gcd(samples, streams)
    length = samples // width
    # Column ends that fall inside a stream become cuts bootstrapped from the next sample.
    col_ends = np.arange(1, width) * length - 1
    inner = col_ends[~(flat['terminated'][col_ends] | flat['truncated'][col_ends])]
    flat['truncated'][inner] = True
    flat['final_obs'][inner] = flat['obs'][inner + 1]
    rollout = {k: np.ascontiguousarray(np.swapaxes(v.reshape(width, length, *v.shape[1:]), 0, 1))
               for k, v in flat.items()}
    rollout['last_obs'] = rollout['final_obs'][-1].copy()
    for key in ('episode_return', 'episode_cost', 'episode_length'):
        rollout[key] = np.concatenate([e[key] for e in episodes])
    rollout['policy_version'] = np.asarray(versions.pop(), np.int64)
    return rollout


@dataclass
class IterationReport:
    """What one iteration was made of (progress.csv columns and the learner's diagnostics)."""

    samples: int
    shares: dict[str, int]
    chunks: int
    stale_chunks: int
    stale_samples: int
    duplicate_chunks: int
    malformed_chunks: int
    surplus_samples: int
    timed_out: bool
    wait_s: float
    late_steps: int = 0
    """Samples used whose control step came late (a robot's chunks flag them)."""
    interventions: int = 0
    """Steps the shield replaced: samples flagged intervened plus the dropped ones."""
    dropped_samples: int = 0
    """Replaced steps left out of the chunks used (shield_samples drop)."""

    def row(self) -> dict[str, object]:
        """Return the progress.csv columns of this report."""
        return {'executors': len(self.shares),
                'executor_shares': ' '.join(f'{k}={v}' for k, v in sorted(self.shares.items())),
                'chunks': self.chunks, 'stale_chunks': self.stale_chunks,
                'stale_samples': self.stale_samples, 'duplicate_chunks': self.duplicate_chunks,
                'malformed_chunks': self.malformed_chunks,
                'surplus_samples': self.surplus_samples, 'timed_out': int(self.timed_out),
                'late_steps': self.late_steps, 'interventions': self.interventions,
                'dropped_samples': self.dropped_samples}


FLEET_COLUMNS = ('samples', 'executors', 'executor_shares', 'chunks', 'stale_chunks',
                 'stale_samples', 'duplicate_chunks', 'malformed_chunks', 'surplus_samples',
                 'timed_out', 'late_steps', 'interventions', 'dropped_samples')
"""progress.csv columns of a learner fed by executors (the direct trainer has none)."""


@dataclass
class _Executor:
    delay_s: float = math.inf
    """How long after an iteration's start its first chunk arrived, last time it delivered."""
    last_version: int = -1
    misses: int = 0
    """Iterations in a row it was expected in and did not deliver to."""
    delivered: int = -1
    """The newest version it delivered an accepted chunk to."""
    slow: bool = False
    """Once, its chunk of a version came too late and it had delivered nothing to that
    version: a source slower than the others (a robot), not a fast one's surplus."""
    seen: dict = field(default_factory=dict)
    """The (session, seq) of its latest MAX_SEEN chunks, oldest first (duplicates told)."""


MAX_EXECUTORS = 1024
"""Executors remembered (names come from the wire): beyond it the longest silent is forgotten."""

MAX_SEEN = 4096
"""Chunk keys remembered per executor: a duplicate older than that is stale by its version."""

MAX_MISSES = 3
"""Iterations an expected executor may miss in a row before it is no longer waited for."""


class ChunkGatherer:
    """Collect the chunks of one policy version until an iteration is complete.

    clock: seconds (monotonic); tests pass their own.
    """

    def __init__(self, samples: int, obs_dim: int, act_dim: int, num_costs: int = 1,
                 timeout_s: float = 60.0, min_fraction: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.needed, self.timeout_s, self.min_fraction = int(samples), timeout_s, min_fraction
        self.dims = (obs_dim, act_dim, num_costs)
        self.clock = clock
        self.executors: dict[str, _Executor] = {}
        self.version = -1
        self._lock = threading.Lock()
        self.start(0)

    def start(self, version: int) -> None:
        """Begin gathering for policy `version` (just published).

        A slow executor (once, its only chunk of a version came too late) expected in the
        iteration that ended and missing from it stays expected, with twice the patience (its
        wait at most half of timeout_s), for up to MAX_MISSES iterations in a row: a robot
        whose reset and episode outlast a simulator's iterations is cut before it delivers,
        often in its reset with nothing to send, and would never be waited for long enough.
        Any other executor that misses (a killed simulator) is not waited for again until it
        delivers.
        """
        with self._lock:
            executors = list(self.executors.items())
        for name, state in executors:
            if state.last_version == self.version - 1 and name not in getattr(
                    self, 'shares', {}):
                state.misses += 1
                if state.slow and state.misses <= MAX_MISSES:
                    state.last_version = int(version) - 1
                    # The wait, 2 delay + 1, at most half the timeout: the others make up
                    # the share in the other half.
                    state.delay_s = min(2.0 * state.delay_s + 1.0,
                                        max(0.0, 0.25 * self.timeout_s - 0.5))
        self.version = int(version)
        self.t0 = self.clock()
        self._starts = {v: t for v, t in getattr(self, '_starts', {}).items()
                        if v > self.version - 16}
        self._starts[self.version] = self.t0
        self.chunks: list[dict[str, np.ndarray]] = []
        self.shares: dict[str, int] = {}
        self.collected = 0
        with self._lock:
            self.counts = dict.fromkeys(('stale_chunks', 'stale_samples', 'duplicate_chunks',
                                         'malformed_chunks'), 0)
        self.warned_at = self.t0

    def note_stale(self, samples: int, executor: str | None = None,
                   version: int | None = None) -> None:
        """Count a stale chunk dropped before it was offered (the learner's callback).

        With its executor and version, that executor counts as expected from now on (see
        _expect_late).
        """
        with self._lock:
            self.counts['stale_chunks'] += 1
            self.counts['stale_samples'] += int(samples)
            if executor is not None and version is not None:
                self._expect_late(executor, version)

    def _expect_late(self, executor: str, version: int) -> None:
        """Expect an executor whose chunk of an older version came too late.

        Without this a slow source (a robot at its real pace beside lock-step simulators)
        would never be expected: the fast ones fill every iteration before its chunk comes,
        each of its chunks is stale, and it never gets a share. Its delay is taken from the
        start of the version it sampled, which bounds its cycle from above.
        """
        if version >= self.version:
            return
        state = self._state(executor)
        start = self._starts.get(int(version), min(self._starts.values()))
        state.delay_s = max(state.delay_s if state.misses else 0.0, self.clock() - start)
        state.slow = state.slow or state.delivered != int(version)
        state.last_version, state.misses = self.version - 1, 0

    def _state(self, executor: str) -> _Executor:
        """Return an executor's record (under the lock), made when new, the book bounded."""
        state = self.executors.get(executor)
        if state is None:
            if len(self.executors) >= MAX_EXECUTORS:
                silent = min(self.executors, key=lambda n: self.executors[n].last_version)
                del self.executors[silent]
            state = self.executors[executor] = _Executor()
        return state

    def offer(self, chunk: dict[str, np.ndarray]) -> str:
        """Take a chunk if it is of the current version; return what became of it.

        'accepted', 'stale', 'duplicate' or 'malformed: <reason>'.
        """
        try:
            executor, session, seq, samples, version = check_chunk(chunk, *self.dims)
        except ValueError as exc:
            self.counts['malformed_chunks'] += 1
            return f'malformed: {exc}'
        with self._lock:
            state = self._state(executor)
        key = (session, seq)
        if key in state.seen:
            self.counts['duplicate_chunks'] += 1
            return 'duplicate'
        state.seen[key] = None
        if len(state.seen) > MAX_SEEN:  # bounded: ever-new seqs from one name
            del state.seen[next(iter(state.seen))]
        if version != self.version:
            self.counts['stale_chunks'] += 1
            self.counts['stale_samples'] += samples
            with self._lock:
                self._expect_late(executor, version)
            return 'stale'
        if executor not in self.shares:
            state.delay_s = self.clock() - self.t0
        state.last_version = state.delivered = version
        state.misses = 0
        self.chunks.append(chunk)
        self.shares[executor] = self.shares.get(executor, 0) + samples
        self.collected += samples
        return 'accepted'

    def more(self) -> int:
        """Return samples still wanted beyond what expected executors will bring (>= 0).

        Expected: executors that delivered last iteration (or whose chunk of an older version
        came too late since), have not delivered in this one, and are not overdue (twice their
        last delay plus a second). While this is positive, executors that already delivered
        sample another chunk of the same version.
        """
        if self.collected >= self.needed:
            return 0
        now = self.clock() - self.t0
        with self._lock:
            executors = list(self.executors.items())
        expected = sum(1 for name, e in executors
                       if name not in self.shares and e.last_version == self.version - 1
                       and now < 2.0 * e.delay_s + 1.0)
        # An expected executor brings about what it brought before: the mean share.
        per = self.collected / max(1, len(self.shares)) if self.shares else self.needed
        return max(0, int(self.needed - self.collected - expected * per))

    @property
    def timed_out(self) -> bool:
        """Return whether iteration_timeout_s has passed since the iteration began."""
        return self.clock() - self.t0 >= self.timeout_s

    def ready(self) -> bool:
        """Return whether the iteration can proceed (full, or timed out with enough)."""
        if self.collected >= self.needed:
            return True
        return self.timed_out and self.collected >= self.min_fraction * self.needed

    def should_warn(self) -> bool:
        """Return True once per timeout period while an iteration waits past its timeout."""
        now = self.clock()
        if now - self.t0 >= self.timeout_s and now - self.warned_at >= self.timeout_s:
            self.warned_at = now
            return True
        return False

    def take(self) -> tuple[dict[str, np.ndarray], IterationReport]:
        """Merge the iteration's chunks (cut to steps_per_iteration) and report its make-up."""
        samples = min(self.collected, self.needed)
        rollout = merge_chunks(self.chunks, samples)
        shares, left = {}, samples
        flags = dict.fromkeys(('late_steps', 'interventions', 'dropped_samples'), 0)
        for chunk in self.chunks:
            name = str(np.asarray(chunk['executor_id']).reshape(()))
            used = min(left, int(chunk['reward'].size))
            if used:
                shares[name] = shares.get(name, 0) + used
                flags['late_steps'] += _flagged(chunk, 'late', used)
                flags['interventions'] += _flagged(chunk, 'intervened', used)
                dropped = int(chunk.get('dropped_samples', 0))
                flags['dropped_samples'] += dropped
                flags['interventions'] += dropped
            left -= used
        report = IterationReport(
            samples=samples, shares=shares, chunks=len(self.chunks),
            surplus_samples=self.collected - samples,
            timed_out=self.collected < self.needed, wait_s=self.clock() - self.t0,
            **self.counts, **flags)
        return rollout, report

    def status(self) -> dict[str, np.ndarray]:
        """Return the learner's `cpo/iteration` message: version, needed, collected, more."""
        names = sorted(self.shares)
        return {'version': np.asarray(self.version, np.int64),
                'needed': np.asarray(self.needed, np.int64),
                'collected': np.asarray(self.collected, np.int64),
                'more': np.asarray(self.more(), np.int64),
                'executors': np.asarray(names if names else [''], dtype=np.str_),
                'shares': np.asarray([self.shares[n] for n in names] or [0], np.int64)}


def _flagged(chunk: dict[str, np.ndarray], key: str, used: int) -> int:
    """Return how many of a chunk's first `used` samples (streams end to end) carry flag key."""
    if key not in chunk:
        return 0
    return int(np.count_nonzero(np.swapaxes(np.asarray(chunk[key]), 0, 1).reshape(-1)[:used]))


def chunk_bytes(chunk: dict[str, np.ndarray]) -> int:
    """Return the bytes a chunk's arrays hold."""
    return sum(int(np.asarray(a).nbytes) for a in chunk.values())


class ChunkQueue:
    """A FIFO of rollout chunks bounded in bytes, in total and per executor; thread-safe."""

    def __init__(self, max_bytes: int, executor_bytes: int) -> None:
        self.max_bytes, self.executor_bytes = int(max_bytes), int(executor_bytes)
        self.bytes = 0
        self.peak_bytes = 0
        self.by_executor: dict[str, int] = {}
        self._items: deque[tuple[str, int, dict[str, np.ndarray]]] = deque()
        self._cond = threading.Condition()

    def put(self, chunk: dict[str, np.ndarray], executor: str) -> str | None:
        """Queue chunk; return None, or why it was refused ('queue_full', 'executor_quota')."""
        size = chunk_bytes(chunk)
        with self._cond:
            if self.bytes + size > self.max_bytes:
                return 'queue_full'
            if self.by_executor.get(executor, 0) + size > self.executor_bytes:
                return 'executor_quota'
            self._items.append((executor, size, chunk))
            self.bytes += size
            self.peak_bytes = max(self.peak_bytes, self.bytes)
            self.by_executor[executor] = self.by_executor.get(executor, 0) + size
            self._cond.notify()
        return None

    def get(self, timeout: float | None = None) -> dict[str, np.ndarray] | None:
        """Return the oldest chunk, waiting up to timeout seconds; None when there is none."""
        with self._cond:
            if not self._items and timeout:
                self._cond.wait(timeout)
            if not self._items:
                return None
            executor, size, chunk = self._items.popleft()
            self.bytes -= size
            left = self.by_executor[executor] - size
            if left:
                self.by_executor[executor] = left
            else:
                del self.by_executor[executor]
            return chunk

    def empty(self) -> bool:
        """Return whether no chunk waits."""
        with self._cond:
            return not self._items


class Deliveries:
    """An executor's samples sent per policy version, checked against the learner's count."""

    def __init__(self) -> None:
        self._sent: dict[int, int] = {}
        self._last_sent = -math.inf
        self.lost = 0
        """Samples written off as lost in transit, in total."""

    def sent(self, version: int, samples: int, now: float) -> None:
        """Record a chunk of version sent at now (steady seconds)."""
        self._sent[version] = self._sent.get(version, 0) + samples
        self._last_sent = now

    def forget(self, before: int | None = None) -> None:
        """Forget versions older than before; everything (a new learner session) when None."""
        self._sent = {} if before is None else {
            v: n for v, n in self._sent.items() if v >= before}

    def delivered(self, version: int, counted: int, now: float) -> int | None:
        """Return the samples of version written off as lost; 0 when the learner has them all.

        counted: the learner's count of this executor's samples of version (its status).
        None while some may still be on the way; once LOST_AFTER_S has passed since the last
        chunk, the shortfall is written off and returned (0 from then on).
        """
        missing = self._sent.get(version, 0) - counted
        if missing <= 0:
            return 0
        if now - self._last_sent < LOST_AFTER_S:
            return None
        self._sent[version] = counted
        self.lost += missing
        return missing
