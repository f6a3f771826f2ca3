"""Fuzz: every subscription of every node gets random and mutated messages, from outside.

Real node processes of the training graph (sim bridge, executor, learner) and of the deploy
graph (stand-in robot, deployed executor, monitor). The probe publishes as `ros2 topic pub`
does (reliable, volatile; transient-local where the subscription is latched, as `ros2 topic
pub --qos-durability transient_local` must). Afterwards every node is alive, its peak memory
within its bound, the refusal counters on /diagnostics account for every malformed message
sent, training goes on, and under the deploy the robot never moved on a forged command.
"""

import io
import os
import re
import sys
import threading
import time

from conftest import NodeProcess, wait_until
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
import numpy as np
import pytest
from rclpy.clock import Clock
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool, Float32MultiArray, MultiArrayDimension, String, UInt8MultiArray
from std_srvs.srv import SetBool

from cpo_ros.algo.buffer import RolloutCollector
from cpo_ros.algo.networks import GaussianPolicy
from cpo_ros.ros import qos
from cpo_ros.ros.conversions import (
    arrays_to_msg,
    encode_batch,
    pose_twist_to_odometry,
)
from cpo_ros.training.fleet import ChunkGatherer
from cpo_ros.wire import CMD_FIELDS, state_fields

TINY = ['num_envs:=2', 'steps_per_iteration:=40', 'circle.max_episode_steps:=10']
OBS, ACT = 6, 2
MIB = 2 ** 20


class Diagnostics:
    """The latest values of each /diagnostics status, by status name."""

    def __init__(self, probe) -> None:
        self.values: dict[str, dict[str, str]] = {}
        self.sub = probe.create_subscription(DiagnosticArray, '/diagnostics', self._on,
                                             qos.CLI_DEFAULT)

    def matched(self, publishers: int) -> bool:
        """Return whether this many /diagnostics publishers are matched (none missed)."""
        return self.sub.get_publisher_count() >= publishers

    def _on(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.values.setdefault(status.name, {}).update(
                {kv.key: kv.value for kv in status.values})

    def count(self, name: str, key: str) -> int:
        """Return a counter of the node named name (status name: its fully qualified name)."""
        return int(self.values.get(f'/{name.lstrip("/")}', {}).get(key, 0))


def peak_rss(pid: int) -> int:
    """Return a process's peak resident memory (VmHWM) in bytes."""
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    raise AssertionError(f'no VmHWM for {pid}')


def mutations(template: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Return invalid variants of a valid .npz message: per field missing, text, reshaped, bad."""
    out = []
    for key, value in template.items():
        value = np.asarray(value)
        out.append({k: v for k, v in template.items() if k != key})
        out.append(dict(template, **{key: np.full(value.shape, 'x') if value.dtype.kind != 'U'
                                     else np.zeros(value.shape, np.int64)}))
        out.append(dict(template, **{key: np.stack([value, value], axis=-1)}))
        if value.dtype.kind == 'f':
            bad = value.copy()
            bad.reshape(-1)[:1] = np.nan
            out.append(dict(template, **{key: bad}))
        elif value.dtype.kind in 'iu':
            out.append(dict(template, **{key: np.full(value.shape, -5, np.int64)}))
    return out


def garbage(rng: np.random.Generator, cap_bytes: int) -> list[UInt8MultiArray]:
    """Return .npz messages no reader may accept: noise, empty, truncated, pickle, too big."""
    good = arrays_to_msg({'a': np.zeros(1000, np.float32)})
    pickled = io.BytesIO()
    np.savez(pickled, a=np.asarray([{'x': 1}], dtype=object))
    too_big = arrays_to_msg({'a': np.zeros(cap_bytes // 4 + 1, np.float32)})
    return [UInt8MultiArray(data=rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()),
            UInt8MultiArray(data=b''),
            UInt8MultiArray(data=bytes(good.data)[:len(good.data) // 2]),
            UInt8MultiArray(data=pickled.getvalue()),
            too_big]


def batch_mutations(fields: tuple[str, ...], rows: int, seq: int) -> list[Float32MultiArray]:
    """Return Float32MultiArray messages that break the batch layout or its schema."""
    good = np.zeros((rows, len(fields) - 1), np.float32)
    out = [encode_batch(good[:1] if rows > 1 else np.zeros((2, len(fields) - 1)), fields, seq),
           Float32MultiArray(data=[1.0, 2.0, 3.0])]
    wrong_label = encode_batch(good, fields, seq)
    wrong_label.layout.dim[1].label = 'x,y'
    out.append(wrong_label)
    short = encode_batch(good, fields, seq)
    short.data = short.data[:-1]
    out.append(short)
    offset = encode_batch(good, fields, seq)
    offset.layout.data_offset = 3
    out.append(offset)
    for column, value in ((0, np.nan), (0, np.inf)):
        bad = good.copy()
        bad[0, column] = value
        out.append(encode_batch(bad, fields, seq))
    if 'terminated' in fields:
        bad = good.copy()
        bad[:, fields.index('terminated')] = 0.5
        out.append(encode_batch(bad, fields, seq))
    fractional = encode_batch(good, fields, seq)
    data = np.array(fractional.data, np.float32)
    data[len(fields) - 1::len(fields)] = seq + 0.5
    fractional.data = data.tolist()
    out.append(fractional)
    huge_dims = Float32MultiArray(data=[0.0] * len(fields))
    huge_dims.layout.dim = [MultiArrayDimension(label='env', size=2 ** 31, stride=0),
                            MultiArrayDimension(label=','.join(fields), size=len(fields))]
    out.append(huge_dims)
    return out


def chunk_template() -> dict[str, np.ndarray]:
    col = RolloutCollector(num_envs=2, obs_dim=OBS, act_dim=ACT, steps=20)
    for t in range(20):
        done = np.full(2, t % 10 == 9)
        col.add(np.zeros((2, OBS)), np.zeros((2, ACT)), np.zeros(2), np.ones(2), np.zeros(2),
                np.zeros(2, bool), done, np.zeros((2, OBS)))
    arrays = col.arrays(np.zeros((2, OBS)), 0)
    arrays.update(executor_id=np.asarray('/fuzz'), executor_session=np.asarray(1),
                  chunk_seq=np.asarray(0), samples=np.asarray(40))
    return arrays


def send_counted(pub, messages, counter, what: str, node: NodeProcess, held: int = 0) -> None:
    """Publish each message and wait until the node counted its refusal (an event, no sleep).

    held: how many of the newest messages a node may hold before refusing them (a policy
    waits briefly for its announcement, training/announcements.py): all counted in the end.
    """
    start = counter()
    for i, msg in enumerate(messages, 1):
        pub.publish(msg)
        # A held message is counted when the next displaces it or its hold ends, whichever
        # comes first: at least the ones before it by now; every one, exactly, at the end.
        exact = start + i if i == len(messages) or not held else None
        assert wait_until(lambda exact=exact, least=start + i - held: counter() == exact
                          if exact is not None else counter() >= least, 60), \
            (f'{what}: message {i} of {len(messages)} not counted ({counter() - start})\n'
             f'{node.output[-4000:]}')


def test_training_graph_under_fuzz(start_node, probe, stranger_node, tmp_path):
    diag = Diagnostics(probe)
    out = tmp_path / 'run'
    bridge = start_node('sim_bridge', *TINY)
    executor = start_node('policy_executor', *TINY)
    nodes = {'policy_executor': executor, 'sim_bridge': bridge}
    # On the latched topics as a stranger publishes (ATTACKER_QOS, 10 deep): a held policy is
    # counted by the timer before the next one has arrived, and a depth-1 writer like the
    # learner's would replace that one unsent (not a refusal).
    pubs = {topic: probe.create_publisher(kind, topic, profile) for topic, kind, profile in (
        ('cpo/rollout', UInt8MultiArray, qos.CLI_DEFAULT),
        ('cpo/policy', UInt8MultiArray, ATTACKER_QOS),
        ('cpo/iteration', UInt8MultiArray, ATTACKER_QOS),
        ('batch/state', Float32MultiArray, qos.CLI_DEFAULT),
        ('batch/cmd_vel', Float32MultiArray, qos.CLI_DEFAULT))}
    rng = np.random.default_rng(0)
    cap = 4 * MIB  # above every reader's cap for these sizes
    sent = {}

    def fuzz(topic: str, node: str, key: str, messages: list) -> None:
        send_counted(pubs[topic], messages, lambda: diag.count(node, key), topic, nodes[node],
                     held=int(topic == 'cpo/policy'))
        sent[(node, key)] = len(messages)

    # The executor's latched inputs first, before a learner publishes there (with no
    # announcement every policy is refused unread: field announcement).
    assert wait_until(lambda: all(pubs[t].get_subscription_count() > 0 for t in (
        'cpo/policy', 'cpo/iteration', 'batch/state', 'batch/cmd_vel')) and diag.matched(2),
        60), executor.output
    policy = GaussianPolicy(OBS, ACT).to_arrays()
    policy.update(version=np.asarray(10 ** 6), session=np.asarray(12345))
    status = ChunkGatherer(40, OBS, ACT).status()
    status.update(session=np.asarray(5), policy_digest=np.zeros(32, np.uint8))
    for topic, key, template in (('cpo/policy', 'refused_policy', policy),
                                 ('cpo/iteration', 'refused_iteration', status)):
        fuzz(topic, 'policy_executor', key,
             [arrays_to_msg(v) for v in mutations(template)] + garbage(rng, cap))
    fuzz('batch/state', 'policy_executor', 'refused_batch/state',
         batch_mutations(state_fields(), 2, 7))
    fuzz('batch/cmd_vel', 'sim_bridge', 'refused_batch/cmd_vel', batch_mutations(CMD_FIELDS, 2, 7))

    # Then the learner: the graph trains, and the learner's input is fuzzed while it does.
    learner = start_node('learner', *TINY, f'out:={out}', 'resume:=false', 'value_epochs:=1',
                         'iterations:=100000', 'rollout_timeout_s:=0.0')
    nodes['learner'] = learner
    progress = out / 'progress.csv'

    def iterations() -> int:
        return max(0, len(progress.read_text().splitlines()) - 1) if progress.is_file() else 0

    assert wait_until(lambda: iterations() >= 1 and diag.matched(3), 120), learner.output
    baseline = {name: peak_rss(n.proc.pid) for name, n in nodes.items()}
    fuzz('cpo/rollout', 'learner', 'refused_rollout',
         [arrays_to_msg(v) for v in mutations(chunk_template())] + garbage(rng, cap))

    # Floods: noise as fast as the probe can publish, huge payloads, and a type DDS will not
    # match (std_msgs/String on cpo/rollout: never delivered, nothing to count).
    # A participant of its own: one participant holds one type a topic.
    stranger = stranger_node('stranger')
    strings = stranger.create_publisher(String, 'cpo/rollout', qos.CLI_DEFAULT)
    flood = 0
    for _ in range(300):
        for topic in ('cpo/rollout', 'batch/state', 'batch/cmd_vel'):
            kind = pubs[topic].msg_type
            pubs[topic].publish(
                UInt8MultiArray(data=rng.integers(0, 256, 64, dtype=np.uint8).tobytes())
                if kind is UInt8MultiArray else Float32MultiArray(data=rng.normal(size=9)))
        strings.publish(String(data='x' * 100))
        flood += 1
    largest = 16 * MIB
    for _ in range(10):
        pubs['cpo/rollout'].publish(UInt8MultiArray(
            data=rng.integers(0, 256, largest, dtype=np.uint8).tobytes()))
    stranger.destroy_node()
    # Training goes on after all of it.
    done = iterations()
    assert wait_until(lambda: iterations() >= done + 1, 120), learner.output[-3000:]

    for name, node in nodes.items():
        assert node.proc.poll() is None, f'{name} died:\n{node.output[-3000:]}'
    # Every refusal counted: at least what was sent one by one, at most that plus the flood
    # (a reader's history may drop flood messages before they are taken: never counted twice).
    for (node, key), count in sent.items():
        got = diag.count(node, key)
        flooded = 0 if key in ('refused_policy', 'refused_iteration') else flood + 10
        assert count <= got <= count + flooded, (node, key, got, count)
    learner_diag = diag.values['/learner']
    assert 'failed_updates' not in learner_diag, learner_diag
    # Memory: the learner's chunk queue is bounded in bytes (queue_bytes); beyond it a node
    # holds the messages its reader keeps (QoS depth) and its copies while checking one.
    for name, node in nodes.items():
        grown = peak_rss(node.proc.pid) - baseline[name]
        bound = 10 * largest + 64 * MIB
        assert grown <= bound, (name, grown / MIB, bound / MIB)


def bringup_deploy(ros_env, policy_dir):
    return NodeProcess([sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'deploy', '--stand-in',
                        '--ros-args', '-p', f'policy_executor:policy_dir:={policy_dir}',
                        '-p', 'safe_area_monitor:diagnostics_rate_hz:=10.0'], ros_env)


def test_deploy_graph_under_fuzz_never_moves_on_a_forged_command(probe, ros_env, stranger_node,
                                                                  unsafe_policy):
    diag = Diagnostics(probe)
    commands: list[tuple[float, float, float]] = []

    def on_cmd(msg: TwistStamped) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        commands.append((stamp, msg.twist.linear.x, msg.twist.angular.z))

    probe.create_subscription(TwistStamped, 'cmd_vel', on_cmd, qos.CLI_DEFAULT)
    stack = bringup_deploy(ros_env, unsafe_policy)
    monitor = '/safe_area_monitor'  # status names are the nodes' fully qualified names

    def moving() -> bool:
        return bool(commands) and (commands[-1][1] != 0.0 or commands[-1][2] != 0.0)

    try:
        assert wait_until(moving, 90), stack.output
        pids = {m[0]: int(m[1]) for m in re.findall(r'started (\w+) \(pid (\d+)\)',
                                                        stack.output)}
        assert set(pids) == {'sim_bridge', 'policy_executor', 'safe_area_monitor'}, pids
        baseline = {name: peak_rss(pid) for name, pid in pids.items()}

        # 1. Forged commands from another node: valid, fast, NaN, infinite. From the moment
        # the monitor refused the first, nothing but zero goes to the robot.
        forger = stranger_node('forger')
        forged = forger.create_publisher(TwistStamped, 'policy/cmd_vel', qos.CLI_DEFAULT)
        assert wait_until(lambda: forged.get_subscription_count() > 0, 30)

        def forge(v: float) -> None:
            msg = TwistStamped()
            msg.header.stamp = Clock().now().to_msg()
            msg.twist.linear.x = v
            forged.publish(msg)

        # A legit command may still pass between the match and the first forged arrival.
        forge(1.5)
        assert wait_until(lambda: diag.count(monitor, 'refused_commands') >= 1, 10), \
            diag.values.get(monitor)
        t0 = Clock().now().nanoseconds * 1e-9
        values = [1.5, 100.0, float('nan'), float('inf'), -3.0] * 8
        for v in values:
            forge(v)
            time.sleep(0.02)
        assert wait_until(lambda: diag.count(monitor, 'refused_commands') > len(values), 10), \
            diag.values.get(monitor)
        during = [c for c in commands if c[0] >= t0]
        assert during and all(c[1] == 0.0 and c[2] == 0.0 for c in during), during[:5]
        forger.destroy_publisher(forged)

        # 1b. Another publisher on the robot's own cmd_vel: the shield cannot refuse what the
        # driver takes from it (SROS2 can), so its diagnostics name the publisher.
        rogue = forger.create_publisher(TwistStamped, 'cmd_vel', qos.CLI_DEFAULT)

        def named() -> bool:
            return '/forger' in diag.values.get(monitor, {}).get('cmd_vel_other_publishers', '')

        assert wait_until(named, 15), diag.values.get(monitor)
        forger.destroy_publisher(rogue)

        # 2. Malformed poses: NaN, infinite, another frame. Each is refused (a stop).
        odom = forger.create_publisher(Odometry, 'odom', qos.CLI_DEFAULT)
        assert wait_until(lambda: odom.get_subscription_count() >= 2, 30)
        rejected = diag.count(monitor, 'rejected_poses')
        bad_poses = []
        for value, frame in ((np.nan, 'odom'), (np.inf, 'odom'), (0.0, 'elsewhere')) * 5:
            bad_poses.append(pose_twist_to_odometry(np.array([value, 0.0, 0.0]), np.zeros(2),
                                                    Clock().now().to_msg(), frame,
                                                    'base_link'))
        for msg in bad_poses:
            odom.publish(msg)
            time.sleep(0.02)
        # Best effort reader (qos.SENSOR): a pose may drop, never count twice.
        assert wait_until(lambda: diag.count(monitor, 'rejected_poses') > rejected, 10)
        assert diag.count(monitor, 'rejected_poses') <= rejected + len(bad_poses)
        forger.destroy_publisher(odom)

        # 3. The e-stop: a true from anyone latches; falses and heartbeats never release.
        e_stop = forger.create_publisher(Bool, 'e_stop', qos.CLI_DEFAULT)
        assert wait_until(lambda: e_stop.get_subscription_count() > 0, 30)
        e_stop.publish(Bool(data=True))
        assert wait_until(lambda: diag.values.get(monitor, {}).get('e_stop') == 'True', 10)
        t1 = Clock().now().nanoseconds * 1e-9
        for _ in range(50):
            e_stop.publish(Bool(data=False))
            time.sleep(0.01)
        assert wait_until(lambda: diag.count(monitor, 'e_stop_releases_refused') >= 1, 10)
        latched = [c for c in commands if c[0] >= t1]
        assert diag.values[monitor]['e_stop'] == 'True'
        assert latched and all(c[1] == 0.0 and c[2] == 0.0 for c in latched)
        # The explicit release: the robot drives on its executor's commands again.
        client = probe.create_client(SetBool, 'e_stop')
        assert client.wait_for_service(timeout_sec=10)
        assert client.call(SetBool.Request(data=False), timeout_sec=10).success
        assert wait_until(moving, 30), stack.output[-3000:]
        forger.destroy_node()

        assert stack.proc.poll() is None, stack.output
        for name, pid in pids.items():
            assert os.path.exists(f'/proc/{pid}'), f'{name} died:\n{stack.output[-3000:]}'
            grown = peak_rss(pid) - baseline[name]
            assert grown <= 64 * MIB, (name, grown / MIB)
    finally:
        stack.stop(timeout=20)


# -- A stranger on the latched topics: floods, and a forged policy -----------------------------

ATTACKER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=qos.CLI_DEFAULT.depth,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""`ros2 topic pub`'s defaults, with the durability it takes to reach a latched subscription
(a volatile publisher does not match the executors' transient-local readers at all)."""


class Stranger:
    """A node of a participant of its own publishing on the learner's latched topics."""

    def __init__(self, node) -> None:
        self.node = node  # from the stranger_node fixture: destroyed at teardown in any case
        self.pubs = {topic: self.node.create_publisher(UInt8MultiArray, topic, ATTACKER_QOS)
                     for topic in ('cpo/policy', 'cpo/iteration')}
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def flood(self, messages: dict[str, list[UInt8MultiArray]], rate_hz: float) -> None:
        """Publish messages round-robin on their topics at rate_hz each, until stop()."""
        def run() -> None:
            i = 0
            while not self._stop.is_set():
                for topic, batch in messages.items():
                    self.pubs[topic].publish(batch[i % len(batch)])
                    self.sent += 1
                i += 1
                self._stop.wait(1.0 / rate_hz)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.node.destroy_node()


class Latched:
    """The first `cpo/policy` and `cpo/iteration` the probe read (the learner's), as arrays."""

    def __init__(self, probe) -> None:
        self.arrays: dict[str, dict[str, np.ndarray]] = {}
        for topic in ('cpo/policy', 'cpo/iteration'):
            probe.create_subscription(UInt8MultiArray, topic,
                                      lambda msg, t=topic: self._on(t, msg), qos.LATCHED)

    def _on(self, topic: str, msg: UInt8MultiArray) -> None:
        from cpo_ros.ros.conversions import msg_to_arrays

        if topic not in self.arrays:  # read before any stranger publishes there
            self.arrays[topic] = msg_to_arrays(msg)


def forged_policy(genuine: dict[str, np.ndarray], session: int
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return a well-formed policy of a huge version that always commands one action, and it.

    The learner's own policy with the last layer's weights zeroed, its bias set and a tiny
    std: every command it gives is that one action, which no genuine policy gives exactly.
    """
    from cpo_ros.algo.networks import NumpyActor

    arrays = {k: np.array(v, copy=True) for k, v in genuine.items()}
    last = max(k for k in arrays if k.startswith('mean_net.') and k.endswith('.weight'))
    arrays[last][:] = 0.0
    arrays[last.replace('weight', 'bias')][:] = np.asarray([0.37, -0.41], np.float32)
    arrays['log_std'][:] = -20.0
    arrays.update(version=np.asarray(10 ** 9, np.int64), session=np.asarray(session, np.int64))
    policy = GaussianPolicy.from_arrays(arrays)
    action = NumpyActor(policy).act(np.zeros((1, policy.norm.mean.numel()), np.float32),
                                    deterministic=True)[2][0]
    return arrays, action


def training_graph(start_node, out, **learner):
    """Start the learner first (its policy latched), then return a reader of its progress."""
    params = {'resume': 'false', 'value_epochs': '1', 'iterations': '100000',
              'rollout_timeout_s': '0.0', **learner}
    node = start_node('learner', *TINY, f'out:={out}', *(f'{k}:={v}' for k, v in params.items()))
    progress = out / 'progress.csv'

    def iterations() -> int:
        return max(0, len(progress.read_text().splitlines()) - 1) if progress.is_file() else 0

    return node, iterations


FLOODED_ITERATIONS = 10


@pytest.mark.parametrize('kind', ['malformed', 'forged'])
def test_a_flood_on_the_latched_topics_cannot_keep_the_learners_policy_from_executors(
        kind, start_node, probe, stranger_node, tmp_path):
    """Executors that start during a flood take the learner's policy and train (issue 18).

    rollout_timeout_s 0: the learner never re-publishes for want of rollouts, so only the
    executors' own recovery can get them going. The flood goes on for the whole test: every
    new policy (one per iteration) may be pushed out of the executor's reader before it is
    read, so before the fix one of the first FLOODED_ITERATIONS stalled training for good (the
    chance that each got through was about a half).
    """
    diag = Diagnostics(probe)
    latched = Latched(probe)
    learner, iterations = training_graph(start_node, tmp_path / 'run')
    assert wait_until(lambda: len(latched.arrays) == 2, 60), learner.output
    stranger = Stranger(stranger_node('stranger'))
    rng = np.random.default_rng(0)
    if kind == 'malformed':
        messages = {'cpo/policy': garbage(rng, 4 * MIB)[:4],
                    'cpo/iteration': garbage(rng, 4 * MIB)[:4]}
    else:  # well-formed, of other sessions and huge versions
        policies, statuses = [], []
        for session in range(100, 108):
            arrays, _ = forged_policy(latched.arrays['cpo/policy'], session)
            policies.append(arrays_to_msg(arrays))
            status = dict(latched.arrays['cpo/iteration'], session=np.asarray(session),
                          version=np.asarray(10 ** 9))
            if 'policy_digest' in status:
                status['policy_digest'] = rng.integers(0, 256, 32).astype(np.uint8)
            statuses.append(arrays_to_msg(status))
        messages = {'cpo/policy': policies, 'cpo/iteration': statuses}
    stranger.flood(messages, rate_hz=200.0)
    try:
        executor = start_node('policy_executor', *TINY)
        start_node('sim_bridge', *TINY)
        assert wait_until(lambda: iterations() >= FLOODED_ITERATIONS, 240), (
            f'{iterations()} iterations, {stranger.sent} messages flooded; executor:\n'
            f'{executor.output[-3000:]}')
        # The flood reached the executor (its diagnostics count what it refused).
        assert wait_until(lambda: diag.count('policy_executor', 'refused_policy') > 0, 30), \
            diag.values
    finally:
        stranger.stop()


@pytest.mark.parametrize('session', ['another', 'the_learners'])
def test_a_forged_policy_of_a_huge_version_is_refused_and_never_drives(
        session, start_node, probe, stranger_node, tmp_path):
    """A well-formed policy of version 10**9 (issue 18): refused, counted, training goes on.

    Before, executors took it, commanded the robots with it and then refused the learner's
    real (lower) versions until they restarted.
    """
    diag = Diagnostics(probe)
    latched = Latched(probe)
    commands: list[np.ndarray] = []
    probe.create_subscription(
        Float32MultiArray, 'batch/cmd_vel',
        lambda msg: commands.append(np.asarray(msg.data, np.float32).reshape(-1, 3)[:, :2]),
        qos.LOCKSTEP)
    learner, iterations = training_graph(start_node, tmp_path / 'run')
    executor = start_node('policy_executor', *TINY)
    start_node('sim_bridge', *TINY)
    assert wait_until(lambda: iterations() >= 1 and len(latched.arrays) == 2, 120), \
        learner.output[-3000:]
    learner_session = int(latched.arrays['cpo/iteration']['session'])
    forged, action = forged_policy(latched.arrays['cpo/policy'],
                                   learner_session if session == 'the_learners' else 4242)
    stranger = Stranger(stranger_node('stranger'))
    try:
        assert wait_until(lambda: stranger.pubs['cpo/policy'].get_subscription_count() >= 2,
                          30)
        first = len(commands)
        stranger.pubs['cpo/policy'].publish(arrays_to_msg(forged))
        assert wait_until(lambda: diag.count('policy_executor', 'refused_policy') >= 1, 30), (
            diag.values.get('/policy_executor'), executor.output[-3000:])
        done = iterations()
        assert wait_until(lambda: iterations() >= done + 2, 120), executor.output[-3000:]
        after = np.concatenate(commands[first:])
        forged_commands = np.all(np.abs(after - action) < 1e-3, axis=1)
        assert len(after) and not forged_commands.any(), (
            f"{int(forged_commands.sum())} of {len(after)} commands were the forged policy's")
    finally:
        stranger.stop()
    assert executor.proc.poll() is None, executor.output[-3000:]


def test_a_forged_stale_chunk_is_refused_not_taken_for_a_slow_executor(
        start_node, probe, stranger_node, tmp_path):
    """A chunk of an older version names an executor the fleet then waits for (a slow robot).

    A stranger's chunk of another policy, stamped with the previous version and a made-up
    executor, is checked against that version's policy and refused (field logp): before, it
    was counted stale unchecked and the learner expected '/ghost' executors that never came.
    """
    from test_hostile_input import chunk

    from cpo_ros.ros.conversions import arrays_to_msg

    diag = Diagnostics(probe)
    _learner, iterations = training_graph(start_node, tmp_path / 'run')
    start_node('policy_executor', *TINY)
    start_node('sim_bridge', *TINY)
    assert wait_until(lambda: iterations() >= 3, 180)
    pub = stranger_node('ghost').create_publisher(UInt8MultiArray, 'cpo/rollout',
                                                  qos.CLI_DEFAULT)
    assert wait_until(lambda: pub.get_subscription_count() >= 1, 30)
    other = GaussianPolicy(OBS, ACT, (8,))
    seq = iter(range(10 ** 6))

    def forge() -> bool:
        forged = chunk(other, version=iterations() - 1, obs_dim=OBS,
                       executor_id=np.asarray('/ghost'), chunk_seq=np.asarray(next(seq)))
        pub.publish(arrays_to_msg(forged))
        time.sleep(0.2)
        return diag.count('learner', 'refused_rollout.logp') >= 1

    assert wait_until(forge, 60), diag.values.get('/learner')
