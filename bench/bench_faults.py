"""Fault injection: kill -9 one node of a training graph at a random moment, and recover.

Each trial trains circle_sim for a fixed number of small iterations with the four nodes in
separate processes, respawned as launch/circle_sim.launch.py configures them (respawn=True,
respawn_delay=2 s; the launch ends when the learner exits 0, or when any node exits 2), and the
learner on its default resume: auto. At a random moment (after a random number of recorded
iterations plus a random delay) one node gets SIGKILL. The table reports, per killed node:
trials, runs completed, iterations lost and duplicated in progress.csv (goal: zero), whether the
final checkpoint (and best.pt) loads and is at the last iteration, and the time to recover (kill
to the next iteration recorded, against the median time per iteration).

Run (each run on its own DDS domain):
    ROS_DOMAIN_ID=53 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST .venv/bin/python
        bench/bench_faults.py [--trials 5] [--iterations 12] [--launch]

Without --launch the respawn is done here, the way launch does it (a supervisor of plain node
processes, as `ros2 run` would start them). --launch runs the real launch file with launch and
launch_ros instead (a ROS 2 install with cpo_ros built; the nodes are found by their
`__node:=<name>` argument among the launch's children).
"""

import argparse
import csv
import os
from pathlib import Path
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

REPO = Path(__file__).resolve().parent.parent
NODES = ('sim_bridge', 'safe_area_monitor', 'policy_executor', 'learner')
RESPAWN_DELAY_S = 2.0  # as cpo_ros.ros.launch_description


def params_file(directory: Path, out: Path, args: argparse.Namespace, seed: int) -> Path:
    """Write circle_sim.yaml with a small budget and this trial's run directory."""
    config = yaml.safe_load((REPO / 'config' / 'circle_sim.yaml').read_text())
    config['/**']['ros__parameters'].update(
        num_envs=args.num_envs, steps_per_iteration=args.steps, max_episode_steps=20, seed=seed)
    config['/**/learner']['ros__parameters'].update(
        iterations=args.iterations, out=str(out), value_epochs=2, resume='auto')
    path = directory / 'params.yaml'
    path.write_text(yaml.safe_dump(config))
    return path


def iterations(out: Path) -> list[int]:
    """Return the iteration column of progress.csv (empty before the first row)."""
    try:
        with open(out / 'progress.csv', newline='') as f:
            return [int(r['iteration']) for r in csv.DictReader(f)]
    except (FileNotFoundError, ValueError, KeyError):
        return []


class Supervisor:
    """The four node processes, respawned the way the launch file configures them."""

    def __init__(self, params: Path, env: dict[str, str], log: Path) -> None:
        self.params, self.env, self.log = params, env, open(log, 'w')
        self.procs: dict[str, subprocess.Popen] = {}
        self.restart_at: dict[str, float] = {}
        self.exit_code: int | None = None
        for name in NODES:
            self._start(name)

    def _start(self, name: str) -> None:
        cmd = [sys.executable, '-m', f'cpo_ros.nodes.{name}', '--ros-args', '--params-file',
               str(self.params), '-p', 'use_sim_time:=true', '-r', f'__node:={name}']
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=self.log,
                                            stderr=subprocess.STDOUT, cwd=REPO)

    def pid(self, name: str) -> int | None:
        proc = self.procs.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    def poll(self) -> bool:
        """Handle exits and respawns; return False once the run has ended."""
        now = time.monotonic()
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None or name in self.restart_at:
                continue
            if code == 2 or (name == 'learner' and code == 0):
                self.exit_code = code
                self.stop()
                return False
            self.restart_at[name] = now + RESPAWN_DELAY_S
        for name, when in list(self.restart_at.items()):
            if now >= when:
                del self.restart_at[name]
                self._start(name)
        return True

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log.close()


class LaunchRun:
    """launch/circle_sim.launch.py run by the real launch service in a child process."""

    def __init__(self, params: Path, env: dict[str, str], log: Path) -> None:
        code = ('import sys, launch; '
                'from launch.actions import IncludeLaunchDescription; '
                'from launch.launch_description_sources import PythonLaunchDescriptionSource; '
                'from ament_index_python.packages import get_package_share_directory as s; '
                'ls = launch.LaunchService(); '
                'ls.include_launch_description(IncludeLaunchDescription('
                'PythonLaunchDescriptionSource(s("cpo_ros") + "/launch/circle_sim.launch.py"), '
                f'launch_arguments=[("params_file", "{params}")])); '
                'sys.exit(ls.run())')
        self.log = open(log, 'w')
        self.proc = subprocess.Popen([sys.executable, '-c', code], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=REPO)
        self.exit_code: int | None = None

    def pid(self, name: str) -> int | None:
        """Return the pid of the launch's child running node `name`."""
        for entry in Path('/proc').iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / 'cmdline').read_bytes().split(b'\0')
                stat = (entry / 'stat').read_text().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == self.proc.pid and f'__node:={name}'.encode() in cmdline:
                return int(entry.name)
        return None

    def poll(self) -> bool:
        self.exit_code = self.proc.poll()
        return self.exit_code is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def check_checkpoints(out: Path, expected: int) -> str:
    """Return 'yes' when last.pt (and best.pt, if any) load and last.pt is at `expected`."""
    from cpo_ros.training.checkpoint import CheckpointError, load_checkpoint
    from cpo_ros.training.evaluate import load_policy
    try:
        payload = load_checkpoint(out / 'checkpoints' / 'last.pt', ('iteration',))
        load_policy(out / 'checkpoints' / 'last.pt')
        if (out / 'checkpoints' / 'best.pt').is_file():
            load_policy(out / 'checkpoints' / 'best.pt')
    except (CheckpointError, ValueError) as exc:
        return f'no ({exc})'
    return 'yes' if int(payload['iteration']) == expected else f'at {payload["iteration"]}'


def trial(node: str, index: int, args: argparse.Namespace, rng: random.Random,
          root: Path) -> dict:
    """Run one training, kill node once at a random moment; return the trial's figures."""
    directory = root / f'{node}_{index}'
    directory.mkdir()
    out = directory / 'run'
    params = params_file(directory, out, args, seed=index)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    graph = (LaunchRun if args.launch else Supervisor)(params, env, directory / 'log.txt')
    kill_after = rng.randint(0, args.iterations - 2)  # recorded iterations before the kill
    # Then a random delay: into the start-up (0 iterations) or into the next iteration.
    delay = rng.uniform(1.0, 8.0) if kill_after == 0 else rng.uniform(0.0, 0.5)
    start = time.monotonic()
    killed_at = recovered_at = None
    rows_at_kill = 0
    stamps: dict[int, float] = {}
    try:
        while graph.poll():
            now = time.monotonic()
            rows = iterations(out)
            for it in rows:
                stamps.setdefault(it, now)
            if (killed_at is None and len(rows) >= kill_after
                    and now - stamps.get(kill_after, start) >= delay):
                pid = graph.pid(node)
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    killed_at, rows_at_kill = now, len(rows)
            if killed_at is not None and recovered_at is None and len(rows) > rows_at_kill:
                recovered_at = now
            if now - start > args.timeout:
                break
            time.sleep(0.05)
    finally:
        graph.stop()
    rows = iterations(out)
    completed = graph.exit_code == 0 and rows[-1:] == [args.iterations]
    expected = set(range(1, args.iterations + 1))
    times = sorted(stamps.values())
    periods = [b - a for a, b in zip(times, times[1:], strict=False)]
    return {'node': node, 'trial': index, 'killed_after': rows_at_kill,
            'killed': killed_at is not None, 'completed': completed,
            'lost': len(expected - set(rows)), 'duplicated': len(rows) - len(set(rows)),
            'checkpoint': check_checkpoints(out, args.iterations),
            'recover_s': (recovered_at - killed_at) if recovered_at and killed_at else None,
            'period_s': statistics.median(periods) if periods else None,
            'wall_s': time.monotonic() - start, 'exit_code': graph.exit_code}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--trials', type=int, default=5, help='trials per killed node')
    parser.add_argument('--iterations', type=int, default=12)
    parser.add_argument('--steps', type=int, default=2000, help='samples per iteration')
    parser.add_argument('--num-envs', type=int, default=8)
    parser.add_argument('--nodes', nargs='+', default=list(NODES), choices=NODES)
    parser.add_argument('--timeout', type=float, default=240.0, help='per trial [s]')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--launch', action='store_true',
                        help='run launch/circle_sim.launch.py with launch_ros (a ROS install)')
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix='bench_faults_') as tmp:
        for node in args.nodes:
            for index in range(args.trials):
                r = trial(node, index, args, rng, Path(tmp))
                results.append(r)
                rec = f'{r["recover_s"]:.1f}' if r['recover_s'] is not None else '-'
                print(f'{node:18s} trial {index}: killed after {r["killed_after"]:2d} '
                      f'iterations, completed {r["completed"]}, lost {r["lost"]}, duplicated '
                      f'{r["duplicated"]}, checkpoint {r["checkpoint"]}, recover {rec} s, '
                      f'wall {r["wall_s"]:.0f} s', flush=True)
    mode = 'ros2 launch (launch_ros)' if args.launch else 'node processes, launch-style respawn'
    print(f'\n{mode}; {args.iterations} iterations x {args.steps} samples, {args.num_envs} '
          f'envs; kill -9 once per trial at a random iteration and delay')
    print(f'{"killed node":18s} {"trials":>6s} {"completed":>9s} {"lost":>5s} {"dup":>4s} '
          f'{"ckpt ok":>7s} {"recover s (median/max)":>23s} {"s/iteration":>11s}')
    for node in args.nodes:
        rs = [r for r in results if r['node'] == node]
        recs = [r['recover_s'] for r in rs if r['recover_s'] is not None]
        periods = [r['period_s'] for r in rs if r['period_s'] is not None]
        rec = f'{statistics.median(recs):.1f} / {max(recs):.1f}' if recs else '-'
        period = f'{statistics.median(periods):.2f}' if periods else '-'
        print(f'{node:18s} {len(rs):6d} {sum(r["completed"] for r in rs):9d} '
              f'{sum(r["lost"] for r in rs):5d} {sum(r["duplicated"] for r in rs):4d} '
              f'{sum(r["checkpoint"] == "yes" for r in rs):7d} {rec:>23s} {period:>11s}')


if __name__ == '__main__':
    main()
