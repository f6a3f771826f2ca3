"""CPU per env step of `cpo-ros bringup circle_sim`, per thread, node callback and process.

Run: ROS_DOMAIN_ID=<free> .venv/bin/python bench/bench_graph_cpu.py [--iterations 6]
     [--num-envs 16] [--steps 50000] [--repeats 1] [--profile FILE] [--checkout DIR]

Wall-clock rates mislead on a shared machine; CPU seconds per env step do not (much). The
bring-up runs in a child process (the `make demo` graph: sim_bridge, safe_area_monitor,
policy_executor and learner composed in one process, the critics' fit in a process of its own)
under this file's `--child` mode, which
- charges the CPU time (time.thread_time) of every subscription and timer callback to its node
  and topic, by wrapping the callbacks the nodes register (two clock reads per callback);
- reads, at each new progress.csv row, the CPU time of every thread of the process
  (/proc/self/task: the executor's thread that runs every callback, the learner's update
  thread, DDS and torch threads) and of its child processes (the critics' fit);
- optionally (--profile FILE) profiles the executor's thread with cProfile (slower: for
  attribution by function, not for the figures).
The figures are CPU milliseconds per 1,000 env steps between the end of the first iteration
(imports, discovery, warm-up) and the end of the last, and the median through-graph env
steps/s of progress.csv (iterations 2 on). --checkout DIR measures another checkout of the
project with this interpreter (PYTHONPATH=DIR), e.g. a `git worktree add /tmp/old <commit>`.
"""

import argparse
import csv
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time

HERE = Path(__file__).resolve()
CLK_TCK = os.sysconf('SC_CLK_TCK')


# -- the child: the bring-up with its accounting -------------------------------------------------
def _proc_cpu(path: str) -> float:
    """Return utime + stime [s] of a /proc/.../stat file (0 when it is gone)."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _threads() -> dict[str, float]:
    """Return {'<tid> <name>': CPU seconds} of this process's threads."""
    out = {}
    for tid in os.listdir('/proc/self/task'):
        try:
            with open(f'/proc/self/task/{tid}/comm') as f:
                name = f.read().strip()
        except OSError:
            continue
        out[f'{tid} {name}'] = _proc_cpu(f'/proc/self/task/{tid}/stat')
    return out


def _children(known: dict[int, float]) -> dict[int, float]:
    """Update and return {pid: CPU seconds} of this process's children, living or last seen."""
    for tid in os.listdir('/proc/self/task'):
        try:
            with open(f'/proc/self/task/{tid}/children') as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            cpu = _proc_cpu(f'/proc/{pid}/stat') + _proc_cpu_children(pid)
            known[pid] = max(known.get(pid, 0.0), cpu)
    return known


def _proc_cpu_children(pid: int) -> float:
    """Return the CPU [s] of the waited-for children of pid (cutime + cstime)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[13]) + int(fields[14])) / CLK_TCK


def _name_threads() -> None:
    """Give each Python thread its name in /proc (comm), so that its CPU can be told apart."""
    import ctypes
    libc = ctypes.CDLL(None)
    run = threading.Thread.run

    def named_run(self):
        libc.prctl(15, self.name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
        run(self)
    threading.Thread.run = named_run


def _account_callbacks(accounts: dict[str, float]) -> None:
    """Charge every subscription and timer callback's thread CPU time to 'node topic'."""
    from rclpy.node import Node

    def wrap(key, callback):
        clock = time.thread_time

        def timed(*args):
            t0 = clock()
            try:
                return callback(*args)
            finally:
                accounts[key] = accounts.get(key, 0.0) + clock() - t0
        return timed

    subscribe, timer = Node.create_subscription, Node.create_timer

    def create_subscription(self, msg_type, topic, callback, *args, **kwargs):
        return subscribe(self, msg_type, topic, wrap(f'{self.get_name()} {topic}', callback),
                         *args, **kwargs)

    def create_timer(self, period, callback, *args, **kwargs):
        name = getattr(callback, '__name__', 'timer')
        return timer(self, period, wrap(f'{self.get_name()} timer:{name}', callback), *args,
                     **kwargs)
    Node.create_subscription, Node.create_timer = create_subscription, create_timer


def _trace_phases(events: list, kids: dict[int, float]) -> None:
    """Note the time and per-thread CPU at each phase boundary of an iteration.

    policy: the learner publishes a policy (the executors sample from then on); chunk: the
    executor publishes its rollout; record/recorded: the learner's update starts and ends
    (the policy goes out before the end, while the critics fit).
    """
    from cpo_ros.nodes.learner import Learner
    from cpo_ros.nodes.policy_executor import PolicyExecutor
    run_class = sys.modules[Learner.__module__].TrainingRun

    def note(name: str) -> None:
        events.append((name, time.monotonic(), _threads(), dict(_children(kids))))

    def traced(cls, method: str, before: str, after: str | None = None) -> None:
        original = getattr(cls, method)

        def wrapper(self, *a, **k):
            note(before)
            try:
                return original(self, *a, **k)
            finally:
                if after:
                    note(after)
        setattr(cls, method, wrapper)
    traced(Learner, '_policy_ready', 'policy')
    traced(PolicyExecutor, '_publish_chunk', 'chunk')
    traced(run_class, 'record', 'record', 'recorded')


def child(args: argparse.Namespace, ros_args: list[str]) -> int:
    """Run the bring-up in this process, writing snapshots at each progress.csv row."""
    _name_threads()
    accounts: dict[str, float] = {}
    _account_callbacks(accounts)
    events: list = []
    progress = Path(args.out) / 'progress.csv'
    snapshots: list[dict] = []
    kids: dict[int, float] = {}
    _trace_phases(events, kids)
    stop = threading.Event()

    def snapshot(rows: int) -> None:
        snapshots.append({'rows': rows, 'wall': time.monotonic(), 'pid': os.getpid(),
                          'threads': _threads(), 'python_threads': {
                              str(t.native_id): t.name for t in threading.enumerate()},
                          'children': dict(_children(kids)), 'callbacks': dict(accounts)})

    def watch() -> None:
        rows = 0
        while not stop.wait(0.05):
            _children(kids)
            try:
                with open(progress) as f:
                    now = sum(1 for _ in f) - 1
            except OSError:
                continue
            if now > rows:
                rows = now
                snapshot(rows)
    watcher = threading.Thread(target=watch, name='bench_watch', daemon=True)
    watcher.start()
    profiler = None
    if args.profile:
        import cProfile
        profiler = cProfile.Profile(time.thread_time)  # CPU, not wall: the machine is shared
        profiler.enable()
    from cpo_ros.cli import main as cli_main
    try:
        code = cli_main(['bringup', 'circle_sim', '--ros-args', *ros_args])
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        stop.set()
        watcher.join()
    with open(args.snapshots, 'w') as f:
        json.dump({'snapshots': snapshots, 'events': events}, f)
    return int(code or 0)


# -- the parent: run, read the snapshots, print -------------------------------------------------
def group_thread(key: str, pid: int) -> str:
    """Return the group of a thread ('<tid> <comm name>') of process pid."""
    tid, name = key.split(' ', 1)
    if int(tid) == pid:
        return 'main thread (the executor: every callback)'
    if name == 'cpo_update':
        return 'learner update thread'
    if name == 'bench_watch':
        return 'bench watcher'
    return 'other threads (DDS, rclpy, torch)'


def measure(args: argparse.Namespace, out: Path) -> dict:
    """Run one bring-up under the child mode; return its figures."""
    ros_args = ['-p', f'num_envs:={args.num_envs}', '-p', f'steps_per_iteration:={args.steps}',
                '-p', 'seed:=0', '-p', f'learner:iterations:={args.iterations}',
                '-p', f'learner:out:={out}']
    snap_path = out.parent / f'{out.name}_snapshots.json'
    cmd = [sys.executable, str(HERE), '--child', '--out', str(out), '--snapshots',
           str(snap_path), *(['--profile', args.profile] if args.profile else []),
           '--', *ros_args]
    env = dict(os.environ)
    if args.checkout:
        env['PYTHONPATH'] = os.pathsep.join(p for p in (args.checkout,
                                                       env.get('PYTHONPATH')) if p)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    load = os.getloadavg()[0]
    subprocess.run(cmd, check=True, env=env, timeout=3600, cwd=args.checkout or None,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load = max(load, os.getloadavg()[0])
    with open(snap_path) as f:
        saved = json.load(f)
    snaps = saved['snapshots']
    with open(out / 'progress.csv') as f:
        rows = list(csv.DictReader(f))
    first, last = snaps[0], snaps[-1]
    if first['rows'] != 1 or last['rows'] != len(rows):
        raise RuntimeError(f'snapshots at rows {first["rows"]}..{last["rows"]} of {len(rows)}')
    steps = float(rows[-1]['env_steps']) - float(rows[0]['env_steps'])
    per_k = 1e6 / steps  # seconds -> ms per 1,000 env steps

    def diff(key: str) -> dict:
        return {k: (v - first[key].get(k, 0.0)) for k, v in last[key].items()}
    groups: dict[str, float] = {}
    for k, v in diff('threads').items():
        g = group_thread(k, last['pid'])
        groups[g] = groups.get(g, 0.0) + v * per_k
    groups['critic fit process'] = sum(
        last['children'].get(pid, 0.0) - first['children'].get(pid, 0.0)
        for pid in last['children']) * per_k
    callbacks = {k: v * per_k for k, v in diff('callbacks').items()}
    phases = phase_figures(saved['events'], last['pid'], len(rows))
    rates = sorted(float(r['steps_per_s']) for r in rows[1:])
    wall = last['wall'] - first['wall']
    return {'groups': groups, 'callbacks': callbacks, 'phases': phases, 'median_steps_per_s':
            rates[len(rates) // 2], 'steps_per_wall_s': steps / wall, 'load': load,
            'sample_s': sorted(float(r['sample_time_s']) for r in rows[1:])[len(rates) // 2],
            'update_s': sorted(float(r['update_time_s']) for r in rows[1:])[len(rates) // 2]}


def phase_figures(events: list, pid: int, iterations: int) -> dict[str, float]:
    """Return the median wall seconds of each phase and CPU seconds per thread group in it.

    An iteration i >= 2: sampling (policy i-1 out -> chunk out), transit (chunk out ->
    update starts: DDS, the learner's checks, the queue), update (-> policy i out). The
    period policy i-1 -> policy i is their sum.
    """
    by_name: dict[str, list] = {}
    for name, wall, threads, children in events:
        by_name.setdefault(name, []).append((wall, threads, children))
    policy, chunk, record = by_name['policy'], by_name['chunk'], by_name['record']
    out: dict[str, list[float]] = {}

    def cpu(a, b) -> dict[str, float]:
        groups: dict[str, float] = {}
        for key, value in b[1].items():
            g = group_thread(key, pid)
            groups[g] = groups.get(g, 0.0) + value - a[1].get(key, 0.0)
        groups['critic fit process'] = sum(v - a[2].get(p, 0.0) for p, v in b[2].items())
        return groups
    # policy[j] follows update j + 1 (the first publication, at start-up, is not traced).
    for j in range(1, min(len(policy), len(chunk), len(record))):
        start, sent, upd, done = policy[j - 1], chunk[j], record[j], policy[j]
        for phase, (a, b) in (('sampling', (start, sent)), ('transit', (sent, upd)),
                              ('update', (upd, done))):
            out.setdefault(f'{phase} wall s', []).append(b[0] - a[0])
            for g, v in cpu(a, b).items():
                out.setdefault(f'{phase} CPU s: {g}', []).append(v)
        out.setdefault('period wall s', []).append(done[0] - start[0])
    return {k: sorted(v)[len(v) // 2] for k, v in out.items()}


def report(results: list[dict]) -> None:
    """Print each figure's median over the repeats."""
    def med(values: list[float]) -> float:
        values = sorted(values)
        return values[len(values) // 2]

    def table(key: str) -> None:
        names = sorted({k for r in results for k in r[key]},
                       key=lambda k: -med([r[key].get(k, 0.0) for r in results]))
        for name in names:
            values = [r[key].get(k, 0.0) for r in results for k in [name]]
            if abs(med(values)) >= 0.005:
                each = ', '.join(f'{v:.1f}' for v in values)
                print(f'  {name:58s} {med(values):8.1f}   ({each})')
    print('CPU ms per 1,000 env steps, by thread (median of repeats; each repeat):')
    table('groups')
    total = [sum(r['groups'].values()) for r in results]
    print(f'  {"total (process and critic fit)":58s} {med(total):8.1f}   '
          f'({", ".join(f"{v:.1f}" for v in total)})')
    print('Phases of an iteration (median over iterations; wall and CPU seconds):')
    table('phases')
    print('CPU ms per 1,000 env steps, by node callback (within the main thread):')
    table('callbacks')
    cb = [sum(r['callbacks'].values()) for r in results]
    print(f'  {"all callbacks":58s} {med(cb):8.1f}')
    for key, label, unit in (('median_steps_per_s', 'through-graph env steps/s (median '
                              'iteration)', '.0f'),
                             ('steps_per_wall_s', 'env steps per wall second (iterations 2 on)',
                              '.0f'),
                             ('sample_s', 'sampling s per iteration (median)', '.2f'),
                             ('update_s', 'update s per iteration (median)', '.2f'),
                             ('load', 'load average (1 min, the larger of start and end)',
                              '.2f')):
        values = [r[key] for r in results]
        each = ', '.join(format(v, unit) for v in values)
        print(f'{label}: {format(med(values), unit)} ({each})')


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--iterations', type=int, default=6)
    parser.add_argument('--num-envs', type=int, default=16)
    parser.add_argument('--steps', type=int, default=50_000)
    parser.add_argument('--repeats', type=int, default=1)
    parser.add_argument('--profile', default='', help='cProfile the executor thread into FILE')
    parser.add_argument('--checkout', default='', help='measure this checkout (PYTHONPATH)')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--out', default='', help=argparse.SUPPRESS)
    parser.add_argument('--snapshots', default='', help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    ros_args = argv[argv.index('--') + 1:] if '--' in argv else []
    args = parser.parse_args(argv[:argv.index('--')] if '--' in argv else argv)
    if args.child:
        raise SystemExit(child(args, ros_args))
    if args.checkout:
        args.checkout = str(Path(args.checkout).resolve())
    if args.profile:
        args.profile = str(Path(args.profile).resolve())
    print(f'bring-up circle_sim, {args.num_envs} robots, {args.steps} samples per iteration, '
          f'{args.iterations} iterations (the first skipped), {args.repeats} repeat(s); code: '
          f'{args.checkout or "this checkout"}', flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix='bench_graph_cpu_') as tmp:
        for i in range(args.repeats):
            results.append(measure(args, Path(tmp) / f'run{i}'))
    report(results)


if __name__ == '__main__':
    main()
