"""Hostile input: peak memory under a chunk flood, and refusals per second.

The learner's peak memory under a flood of maximum-size chunks, and the messages per second
each node refuses while it keeps doing its real work.

Run: ROS_DOMAIN_ID=<free> .venv/bin/python bench/bench_hostile.py [--part memory|refusals|all]
     [--seconds 5] [--rates 100 1000 5000]
Prints
- memory: the learner (Point-Circle, steps_per_iteration 50,000) while a probe floods
  `cpo/rollout` with chunks of 50,000 float64 samples sampled by the learner's own current
  policy (so they pass every check and are queued), each under another executor id: its peak
  RSS (VmHWM) against the stated bound  baseline + queue_bytes + 7 x the rollout size cap
  (4 in the reader's history, 3 copies while one is checked);
- refusals: the training graph (sim bridge, executor, learner; 16 robots) and a gate-mode
  monitor, each input flooded in turn with malformed messages at each of --rates: refusals
  per second (the node's /diagnostics counter) and the real work meanwhile against without
  the flood (lock-step env steps/s from the bridge's batch/state; the monitor's cmd_vel rate;
  the learner's iterations). --only limits the floods to some topics; --forged floods
  `cpo/policy` and `cpo/iteration` with well-formed messages of another session and version
  10**9 instead; --rollout-timeout 0 leaves the executors' own recovery alone to get past a
  lost policy (docs/safety.md, "The learner's topics").
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

MIB = 2 ** 20


def peak_rss(pid: int) -> tuple[int, int]:
    """Return (current RSS, peak RSS) of a process in bytes."""
    values = {}
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            key, _, rest = line.partition(':')
            if key in ('VmRSS', 'VmHWM'):
                values[key] = int(rest.split()[0]) * 1024
    return values['VmRSS'], values['VmHWM']


def start(module: str, *params: str) -> subprocess.Popen:
    """Start a node process with config/circle_sim.yaml and node-qualified -p overrides."""
    from cpo_ros.paths import config_file

    name = module.rsplit('.', 1)[-1]
    cmd = [sys.executable, '-m', module, '--ros-args', '--params-file',
           str(config_file('circle_sim'))]
    for p in params:
        cmd += ['-p', f'{name}:{p}']
    log = open(os.path.join(tempfile.gettempdir(), f'bench_hostile_{name}.log'), 'w')
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


class Probe:
    """An rclpy node spun on a thread, collecting /diagnostics counters and topic rates."""

    def __init__(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from cpo_ros.ros import qos

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('bench_probe', context=self.context)
        self.diag: dict[str, dict[str, str]] = {}
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag,
                                      qos.CLI_DEFAULT)
        self.counts: dict[str, int] = {}
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shut down under us
                return

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            self.diag.setdefault(status.name, {}).update(
                {kv.key: kv.value for kv in status.values})

    def count_topic(self, topic: str, kind, profile) -> None:
        """Count the messages arriving on topic (self.counts[topic])."""
        self.counts[topic] = 0

        def on(_msg) -> None:
            self.counts[topic] += 1
        self.node.create_subscription(kind, topic, on, profile)

    def counter(self, name: str, key: str) -> int:
        return int(self.diag.get(f'/{name.lstrip("/")}', {}).get(key, 0))

    def close(self) -> None:
        import rclpy
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def wait(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def memory(args) -> None:
    """Flood the learner with valid maximum-size chunks; print its peak RSS and the bound."""
    from std_msgs.msg import UInt8MultiArray

    from cpo_ros.algo.buffer import rollout_size_cap
    from cpo_ros.ros import qos
    from cpo_ros.ros.conversions import arrays_to_msg, msg_to_arrays
    from cpo_ros.training.worker import RolloutWorker

    samples, obs_dim, act_dim = 50_000, 6, 2
    cap = rollout_size_cap(samples, obs_dim, act_dim)
    queue_bytes = 2 * cap  # the learner's default (queue_bytes: 0)
    out = tempfile.mkdtemp(prefix='bench_hostile_')
    learner = start('cpo_ros.nodes.learner', f'out:={out}', 'resume:=false',
                    f'steps_per_iteration:={samples}', 'rollout_timeout_s:=0.0')
    probe = Probe()
    policies = []
    probe.node.create_subscription(UInt8MultiArray, 'cpo/policy',
                                   lambda m: policies.append(msg_to_arrays(m)), qos.LATCHED)
    pub = probe.node.create_publisher(UInt8MultiArray, 'cpo/rollout', qos.ROLLOUT)
    try:
        assert wait(lambda: policies and pub.get_subscription_count() > 0, 120), 'no learner'

        def valid_chunk(policy: dict, executor: str) -> dict:
            """Return a chunk of the policy's samples, every float array float64."""
            worker = RolloutWorker(50, obs_dim, act_dim, samples // 50, seed=0)
            worker.set_policy(policy)
            obs = np.random.default_rng(0).normal(size=(50, obs_dim)).astype(np.float32)
            chunk = None
            while chunk is None:
                worker.act(obs)
                worker.record(np.zeros(50), np.zeros(50), np.zeros(50, bool),
                              np.zeros(50, bool), obs)
                chunk = worker.take_rollout(obs)
            chunk = {k: (v.astype(np.float64) if v.dtype.kind == 'f' and k != 'logp' else v)
                     for k, v in chunk.items()}
            chunk.update(executor_id=np.asarray(executor), executor_session=np.asarray(1),
                         chunk_seq=np.asarray(0), samples=np.asarray(samples))
            return chunk

        # One ordinary iteration first: the baseline includes an update's working memory.
        progress = os.path.join(out, 'progress.csv')
        pub.publish(arrays_to_msg(valid_chunk(policies[-1], '/warm_up')))
        assert wait(lambda: os.path.isfile(progress)
                    and len(open(progress).read().splitlines()) > 1 and len(policies) > 1,
                    300), 'no first iteration'
        time.sleep(2.0)
        base_rss, base_peak = peak_rss(learner.pid)
        chunk = valid_chunk(policies[-1], '/flood')
        sent = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            chunk.update(executor_id=np.asarray(f'/flood_{sent}'),
                         executor_session=np.asarray(1), chunk_seq=np.asarray(0),
                         samples=np.asarray(samples))
            msg = arrays_to_msg(chunk)
            pub.publish(msg)
            sent += 1
        size = len(msg.data)
        time.sleep(3.0)
        assert learner.poll() is None, f'the learner ended ({learner.returncode}): see ' \
            f'{tempfile.gettempdir()}/bench_hostile_learner.log'
        rss, peak = peak_rss(learner.pid)
        bound = base_peak + queue_bytes + 7 * cap
        print(f'memory: learner of 50,000-sample iterations (rollout size cap {cap / MIB:.1f} '
              f'MiB, queue_bytes {queue_bytes / MIB:.1f} MiB); {sent} valid chunks of '
              f'{size / MIB:.1f} MiB in {args.seconds:.0f} s, each under a new executor id')
        print(f'  after one iteration RSS {base_rss / MIB:.0f} MiB (peak {base_peak / MIB:.0f}); '
              f'after the '
              f'flood RSS {rss / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB; stated bound '
              f'{bound / MIB:.0f} MiB -> {"within" if peak <= bound else "ABOVE"} the bound')
        counters = {k: v for k, v in probe.diag.get('/learner', {}).items()
                    if k.startswith(('refused', 'surplus', 'stale'))}
        print(f'  learner counters: {counters}')
    finally:
        learner.terminate()
        learner.wait(timeout=60)
        probe.close()


def refusals(args) -> None:
    """Flood each input of the training graph and a gate-mode monitor; print refusals/s."""
    from geometry_msgs.msg import TwistStamped
    from nav_msgs.msg import Odometry
    from std_msgs.msg import Float32MultiArray, UInt8MultiArray

    from cpo_ros.ros import qos
    from cpo_ros.ros.conversions import arrays_to_msg, pose_twist_to_odometry

    out = tempfile.mkdtemp(prefix='bench_hostile_')
    common = ('num_envs:=16', 'steps_per_iteration:=4000')
    procs = [start('cpo_ros.nodes.sim_bridge', *common),
             start('cpo_ros.nodes.policy_executor', *common),
             start('cpo_ros.nodes.learner', *common, f'out:={out}', 'resume:=false',
                   'iterations:=100000', 'value_epochs:=1',
                   f'rollout_timeout_s:={args.rollout_timeout}'),
             start('cpo_ros.nodes.safe_area_monitor', 'shield_mode:=gate',
                   'command_source:=bench_probe', 'diagnostics_rate_hz:=5.0')]
    probe = Probe()
    # Lock-step progress: the states the sim bridge publishes (the probe floods the others).
    probe.count_topic('batch/state', Float32MultiArray, qos.LOCKSTEP)
    probe.count_topic('batch/cmd_vel', Float32MultiArray, qos.LOCKSTEP)
    probe.count_topic('cmd_vel', TwistStamped, qos.CLI_DEFAULT)
    # The probe plays the deploy executor for the monitor: a pose and a command at 20 Hz.
    odom_pub = probe.node.create_publisher(Odometry, 'odom', qos.CLI_DEFAULT)
    cmd_pub = probe.node.create_publisher(TwistStamped, 'policy/cmd_vel', qos.CLI_DEFAULT)
    feeding = threading.Event()
    feeding.set()

    def feed() -> None:
        from rclpy.clock import Clock
        while feeding.is_set():
            stamp = Clock().now().to_msg()
            odom_pub.publish(pose_twist_to_odometry(np.zeros(3), np.zeros(2), stamp, 'odom',
                                                    'base_link'))
            cmd = TwistStamped()
            cmd.header.stamp = stamp
            cmd.twist.linear.x = 0.2
            cmd_pub.publish(cmd)
            time.sleep(0.05)
    threading.Thread(target=feed, daemon=True).start()
    bad_npz = arrays_to_msg({'obs': np.zeros((2, 2, 3), np.float32)})
    latched_messages = {'cpo/policy': bad_npz, 'cpo/iteration': bad_npz}
    if args.forged:
        from cpo_ros.algo.networks import GaussianPolicy
        from cpo_ros.training.fleet import ChunkGatherer

        forged = GaussianPolicy(6, 2).to_arrays()  # Point-Circle's sizes: well-formed
        forged.update(version=np.asarray(10 ** 9), session=np.asarray(4242))
        status = ChunkGatherer(4000, 6, 2).status()
        status.update(version=np.asarray(10 ** 9), session=np.asarray(4242),
                      policy_digest=np.arange(32, dtype=np.uint8))
        latched_messages = {'cpo/policy': arrays_to_msg(forged),
                            'cpo/iteration': arrays_to_msg(status)}
    bad_batch = Float32MultiArray(data=[1.0, 2.0, 3.0])
    nan_odom = pose_twist_to_odometry(np.array([np.nan, 0.0, 0.0]), np.zeros(2),
                                      _stamp(), 'odom', 'base_link')
    # The latched inputs last: a flood there may displace the learner's own policy or status
    # from the executor's reader; the learner re-sends both every second.
    floods = (
        ('learner', 'cpo/rollout', UInt8MultiArray, qos.CLI_DEFAULT, bad_npz, 'refused_rollout'),
        ('policy_executor', 'batch/state', Float32MultiArray, qos.CLI_DEFAULT, bad_batch,
         'refused_batch/state'),
        ('sim_bridge', 'batch/cmd_vel', Float32MultiArray, qos.CLI_DEFAULT, bad_batch,
         'refused_batch/cmd_vel'),
        ('safe_area_monitor', 'odom', Odometry, qos.CLI_DEFAULT, nan_odom, 'rejected_poses'),
        ('policy_executor', 'cpo/iteration', UInt8MultiArray, qos.LATCHED,
         latched_messages['cpo/iteration'], 'refused_iteration'),
        ('policy_executor', 'cpo/policy', UInt8MultiArray, qos.LATCHED,
         latched_messages['cpo/policy'], 'refused_policy'),
    )
    if args.only:
        floods = tuple(f for f in floods if f[1] in args.only)
    progress = os.path.join(out, 'progress.csv')

    def iterations() -> int:
        if not os.path.isfile(progress):
            return 0
        with open(progress) as f:
            return max(0, sum(1 for _ in f) - 1)
    try:
        assert wait(lambda: probe.counts['batch/state'] > 100 and probe.counts['cmd_vel'] > 20,
                    180), 'the graph did not start'

        def work(seconds: float, steps_topic: str = 'batch/state'
                 ) -> tuple[float, float, int]:
            steps0, gate0 = probe.counts[steps_topic], probe.counts['cmd_vel']
            done = iterations()
            time.sleep(seconds)
            return ((probe.counts[steps_topic] - steps0) * 16 / seconds,
                    (probe.counts['cmd_vel'] - gate0) / seconds, iterations() - done)

        quiet_steps, quiet_gate, quiet_its = work(args.seconds)
        print(f'refusals: without a flood the graph steps {quiet_steps:,.0f} env steps/s '
              f'(16 robots, lock-step; {quiet_its} iterations of 4,000 samples in '
              f'{args.seconds:.0f} s) and the monitor sends {quiet_gate:.1f} cmd_vel/s')
        for node, topic, kind, profile, message, key in floods:
            pub = probe.node.create_publisher(kind, topic, profile)
            assert wait(lambda pub=pub: pub.get_subscription_count() > 0, 30), topic
            for rate in args.rates:
                before = probe.counter(node, key)
                stop = threading.Event()
                sent = [0]

                def flood(pub=pub, message=message, stop=stop, sent=sent, rate=rate) -> None:
                    due = time.monotonic()
                    while not stop.is_set():
                        pub.publish(message)
                        sent[0] += 1
                        due += 1.0 / rate
                        pause = due - time.monotonic()
                        if pause > 0:
                            time.sleep(pause)
                thread = threading.Thread(target=flood, daemon=True)
                thread.start()
                # Steps counted on the lock-step topic the probe does not flood itself.
                steps, gate, its = work(args.seconds, 'batch/cmd_vel'
                                        if topic == 'batch/state' else 'batch/state')
                stop.set()
                thread.join()
                time.sleep(1.0)  # the last diagnostics
                refused = probe.counter(node, key) - before
                print(f'  {topic:<14} -> {node:<20} sent {sent[0] / args.seconds:7,.0f}/s, '
                      f'refused {refused / args.seconds:7,.0f}/s; meanwhile {steps:6,.0f} env '
                      f'steps/s ({steps / quiet_steps:4.0%}), {its:2d} iterations, cmd_vel '
                      f'{gate:5.1f}/s', flush=True)
            probe.node.destroy_publisher(pub)
        print(f'alive after the floods: {[p.poll() is None for p in procs]}')
    finally:
        feeding.clear()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        probe.close()


def _stamp():
    from rclpy.clock import Clock
    return Clock().now().to_msg()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--part', choices=('memory', 'refusals', 'all'), default='all')
    parser.add_argument('--seconds', type=float, default=5.0)
    parser.add_argument('--rates', type=float, nargs='+', default=[100.0, 1000.0, 5000.0],
                        help='flood rates to try [messages/s]')
    parser.add_argument('--only', nargs='+', metavar='TOPIC',
                        help='flood only these topics (e.g. cpo/policy cpo/iteration)')
    parser.add_argument('--forged', action='store_true',
                        help='well-formed forged messages on cpo/policy and cpo/iteration')
    parser.add_argument('--rollout-timeout', type=float, default=5.0,
                        help="the learner's rollout_timeout_s (0: never re-publish)")
    args = parser.parse_args()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    print(f'command: {" ".join([os.path.basename(sys.executable), *sys.argv])} '
          f'(ROS_DOMAIN_ID={os.environ.get("ROS_DOMAIN_ID", "0")})', flush=True)
    if args.part in ('memory', 'all'):
        memory(args)
    if args.part in ('refusals', 'all'):
        refusals(args)


if __name__ == '__main__':
    main()
