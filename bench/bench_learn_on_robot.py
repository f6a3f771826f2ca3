"""Learning on the robot: the turtlebot3_burger profile's randomised stand-in as the robot.

Run (each prints its figures; --out keeps the runs):
  ROS_DOMAIN_ID=<free> .venv/bin/python bench/bench_learn_on_robot.py scratch \
      [--iterations 20] [--steps 900] [--rtf 10]
  ROS_DOMAIN_ID=<free> .venv/bin/python bench/bench_learn_on_robot.py finetune \
      [--sim-iterations 15] [--iterations 8] [--rtf 10] [--sim RUN] [--variants tuned frozen]
  ROS_DOMAIN_ID=<free> .venv/bin/python bench/bench_learn_on_robot.py rate [--rtf-list 1 10 20]
  ROS_DOMAIN_ID=<free> .venv/bin/python bench/bench_learn_on_robot.py shield \
      [--iterations 10] [--steps 900] [--modes keep cost drop] [--seed 0]

scratch: `cpo-ros bringup learn_on_robot --stand-in --robot turtlebot3_burger` from a random
policy: return and cost per iteration, exits from the safe area (steps measured outside the
strip: the episode cost), interventions of the shield, late steps.
finetune: a policy trained in simulation (`cpo-ros train --robot turtlebot3_burger`), then
learned on a stand-in with shifted dynamics (mass x1.5, actuator gain x0.7, up to 2 periods
of latency) with init_from, against the same learner with a trust region too small to move
the policy (no fine-tuning, equal samples); the cost against its limit throughout.
rate: the control steps actually taken against the control rate, from the stamps of
policy/cmd_vel (ROS clock), at each real-time factor: interval percentiles, the share of late
steps (> 1.5 control periods) and of samples dropped or flagged by the executor.
shield: the same run from scratch once per `shield_samples` choice (same seed): return, cost,
interventions and dropped steps per iteration (progress.csv), the share of the robot's steps
kept as samples, the monitor's exits from the safe area and the wall time.
"""

import argparse
import csv
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

PROFILE = 'turtlebot3_burger'
SHIFT = ('sim_bridge:mass:=1.5', 'sim_bridge:actuator_gain:=0.7',
         'dr_max_latency_steps:=2')


def bringup(out: Path, rtf: float, params: list[str], timeout: float) -> subprocess.Popen:
    """Start learn_on_robot with the stand-in; return the process (output to out/log.txt)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'learn_on_robot', '--stand-in',
           '--robot', PROFILE, '--ros-args', '-p', f'learner:out:={out / "run"}',
           '-p', f'real_time_factor:={rtf}', '-p', 'learner:resume:=false']
    for p in params:
        cmd += ['-p', p]
    log = open(out / 'log.txt', 'w')
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / 'progress.csv') as f:
        return list(csv.DictReader(f))


def table(run: Path) -> list[str]:
    lines = [f'{"it":>3} {"return":>8} {"cost":>6} {"limit":>6} {"episodes":>8} '
             f'{"samples":>7} {"kl":>7} case']
    for r in rows(run):
        lines.append(f'{int(r["iteration"]):>3} {float(r["episode_return"]):>8.3f} '
                     f'{float(r["episode_cost"]):>6.2f} {float(r["cost_limit"]):>6.2f} '
                     f'{float(r["episodes"]):>8.0f} {int(r["samples"]):>7} '
                     f'{float(r["kl"]):>7.4f} {r["case"]}')
    return lines


class Diagnostics:
    """Listen to the executor's diagnostics and policy/cmd_vel stamps (rclpy in a thread)."""

    def __init__(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import TwistStamped
        import rclpy

        from cpo_ros.ros import qos

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('bench_probe', context=self.context)
        self.last: dict[str, str] = {}
        self.monitor: dict[str, str] = {}
        self.stamps: list[float] = []
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag,
                                      qos.CLI_DEFAULT)
        self.node.create_subscription(
            TwistStamped, 'policy/cmd_vel',
            lambda m: self.stamps.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9),
            qos.COMMAND)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _on_diag(self, msg) -> None:
        for s in msg.status:
            values = {kv.key: kv.value for kv in s.values}
            if s.name.endswith('policy_executor'):
                self.last = values
            elif s.name.endswith(('safe area', 'safe_area_monitor')):
                self.monitor = values

    def _spin(self) -> None:
        from rclpy.executors import SingleThreadedExecutor
        ex = SingleThreadedExecutor(context=self.context)
        ex.add_node(self.node)
        while not self._stop.is_set() and self.context.ok():
            ex.spin_once(timeout_sec=0.1)

    def close(self) -> None:
        import rclpy
        self._stop.set()
        self._thread.join(timeout=5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def run_learning(out: Path, rtf: float, params: list[str], timeout: float
                 ) -> tuple[int, dict[str, str], dict[str, str]]:
    probe = Diagnostics()
    proc = bringup(out, rtf, params, timeout)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(2)
        code = proc.wait(timeout=60)
    time.sleep(0.5)
    probe.close()
    return code, probe.last, probe.monitor


def counts_line(diag: dict[str, str], monitor: dict[str, str]) -> str:
    keys = ('samples', 'episodes', 'cut_episodes', 'late_steps', 'interventions',
            'discarded_samples', 'resets', 'reset_timeouts', 'stops')
    line = 'executor: ' + ', '.join(f'{k} {diag.get(k, "?")}' for k in keys)
    return line + (f'\nmonitor: exits {monitor.get("exits", "?")}, interventions '
                   f'{monitor.get("interventions", "?")}, takeovers '
                   f'{monitor.get("takeovers", "?")}')


def scratch(args) -> list[str]:
    out = Path(args.out) / 'scratch'
    t0 = time.monotonic()
    code, diag, monitor = run_learning(
        out, args.rtf, [f'steps_per_iteration:={args.steps}',
                        f'learner:iterations:={args.iterations}'], timeout=3600)
    wall = time.monotonic() - t0
    run = out / 'run'
    r = rows(run)
    costs = np.array([float(x['episode_cost']) for x in r])
    limit = float(r[0]['cost_limit'])
    lines = [f'from scratch on the stand-in robot ({PROFILE}, randomised), real_time_factor '
             f'{args.rtf}, {args.steps} samples per iteration, exit code {code}, '
             f'{wall:.0f} s wall', *table(run),
             f'iterations with cost > 0 (steps outside the strip): '
             f'{int((costs > 0).sum())} of {len(costs)}',
             f'cost within 1.2 d from the 5th iteration: '
             f'{bool(np.all(costs[4:] <= 1.2 * limit))} (max {costs[4:].max():.2f}, '
             f'd = {limit:g})', counts_line(diag, monitor)]
    return lines


def finetune(args) -> list[str]:
    base = Path(args.out) / 'finetune'
    sim = Path(args.sim) if args.sim else base / 'sim'
    t0 = time.monotonic()
    if not args.sim:
        subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'train', '--robot', PROFILE,
                        '--iterations', str(args.sim_iterations), '--steps-per-iteration',
                        str(args.sim_steps), '--num-envs', '8', '--out', str(sim), '--quiet'],
                       check=True)
    sim_rows = rows(sim)
    last_returns = ' '.join(f'{float(r["episode_return"]):.3f}' for r in sim_rows[-3:])
    last_costs = ' '.join(f'{float(r["episode_cost"]):.2f}' for r in sim_rows[-3:])
    lines = [f'simulation: {len(sim_rows)} iterations of {args.sim_steps} samples '
             f'({time.monotonic() - t0:.0f} s): last 3 returns {last_returns}, costs '
             f'{last_costs}']
    # No fine-tuning: the same learner with a trust region too small to move the policy
    # (target_kl 1e-6), so both see the same shifted robot for the same samples.
    variants = {'tuned': ('fine-tuned', args.target_kl),
                'frozen': ('not fine-tuned (target_kl 1e-6: the transferred policy)', 1e-6)}
    for key in args.variants:
        label, kl = variants[key]
        out = base / key
        code, diag, monitor = run_learning(
            out, args.rtf, [f'steps_per_iteration:={args.steps}',
                            f'learner:iterations:={args.iterations}',
                            f'learner:init_from:={sim}',
                            f'learner:target_kl:={kl}', *SHIFT], timeout=3600)
        r = rows(out / 'run')
        ret = [float(x['episode_return']) for x in r]
        cost = [float(x['episode_cost']) for x in r]
        lines += [f'{label} on the shifted stand-in ({" ".join(SHIFT)}), target_kl {kl:g}, '
                  f'exit code {code}', *table(out / 'run'),
                  f'return: iteration 1 {ret[0]:.3f}; mean of the last 3 '
                  f'{np.mean(ret[-3:]):.3f}; cost max {max(cost):.2f} against '
                  f'{float(r[0]["cost_limit"]):g}', counts_line(diag, monitor)]
    return lines


def rate(args) -> list[str]:
    lines = [f'{"rtf":>5} {"steps":>6} {"p50 [dt]":>8} {"p95 [dt]":>8} {"max [dt]":>8} '
             f'{"late %":>7} {"cut %":>6} {"discarded":>9}']
    for rtf in args.rtf_list:
        out = Path(args.out) / f'rate_{rtf:g}'
        probe = Diagnostics()
        proc = bringup(out, rtf, ['steps_per_iteration:=100000', 'learner:iterations:=1'],
                       timeout=0)
        time.sleep(args.seconds)
        proc.send_signal(2)
        proc.wait(timeout=60)
        time.sleep(0.5)
        probe.close()
        dt = 0.1  # the profile's control period
        stamps = np.array(probe.stamps)
        gaps = np.diff(stamps[stamps > 0]) / dt
        gaps = gaps[gaps > 0]
        d = probe.last
        samples = max(1, int(d.get('samples', 0)))
        late = int(d.get('late_steps', 0))
        cut = int(d.get('cut_episodes', 0))
        episodes = int(d.get('episodes', 0)) + cut
        lines.append(f'{rtf:>5g} {len(gaps):>6} {np.percentile(gaps, 50):>8.2f} '
                     f'{np.percentile(gaps, 95):>8.2f} {gaps.max():>8.2f} '
                     f'{100 * late / samples:>7.2f} {100 * cut / max(1, episodes):>6.1f} '
                     f'{d.get("discarded_samples", "?"):>9}')
    return lines


def shield(args) -> list[str]:
    lines = []
    summary = [f'{"mode":>5} {"return":>7} {"ret last3":>9} {"cost max":>8} {"interv.":>7} '
               f'{"dropped":>7} {"kept %":>6} {"exits":>5} {"late %":>6} {"wall s":>6} '
               f'{"steps/used":>10}']
    for mode in args.modes:
        out = Path(args.out) / f'shield_{mode}'
        t0 = time.monotonic()
        code, diag, monitor = run_learning(
            out, args.rtf, [f'steps_per_iteration:={args.steps}',
                            f'learner:iterations:={args.iterations}',
                            f'policy_executor:shield_samples:={mode}',
                            f'seed:={args.seed}'], timeout=3600)
        wall = time.monotonic() - t0
        r = rows(out / 'run')
        ret = np.array([float(x['episode_return']) for x in r])
        cost = np.array([float(x['episode_cost']) for x in r])
        interventions = np.array([int(x['interventions']) for x in r])
        dropped = np.array([int(x['dropped_samples']) for x in r])
        late = np.array([int(x['late_steps']) for x in r])
        samples = np.array([int(x['samples']) for x in r])
        surplus = np.array([int(x['surplus_samples']) for x in r])
        lines += [f'shield_samples {mode}: {len(r)} iterations of {args.steps} samples, '
                  f'real_time_factor {args.rtf}, seed {args.seed}, exit code {code}',
                  f'{"it":>3} {"return":>8} {"cost":>6} {"interv.":>7} {"dropped":>7} '
                  f'{"late":>5} {"samples":>7}']
        lines += [f'{i + 1:>3} {ret[i]:>8.3f} {cost[i]:>6.2f} {interventions[i]:>7} '
                  f'{dropped[i]:>7} {late[i]:>5} {samples[i]:>7}' for i in range(len(r))]
        lines.append(counts_line(diag, monitor))
        kept = 100.0 * samples.sum() / max(1, samples.sum() + dropped.sum())
        # Robot steps per sample used: chunks of whole episodes fall short of an iteration
        # when steps are dropped, and the part of the extra chunk not needed is surplus.
        per_used = (samples.sum() + surplus.sum() + dropped.sum()) / max(1, samples.sum())
        summary.append(f'{mode:>5} {ret.mean():>7.3f} {ret[-3:].mean():>9.3f} '
                       f'{cost.max():>8.2f} {interventions.sum():>7} {dropped.sum():>7} '
                       f'{kept:>6.1f} {monitor.get("exits", "?"):>5} '
                       f'{100.0 * late.sum() / max(1, samples.sum()):>6.2f} {wall:>6.0f} '
                       f'{per_used:>10.2f}')
    return lines + ['summary (return: mean over all iterations; cost: episode cost, with '
                    'intervention_cost per replaced step in mode cost)', *summary]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('what', choices=('scratch', 'finetune', 'rate', 'shield'))
    parser.add_argument('--iterations', type=int, default=None)
    parser.add_argument('--steps', type=int, default=900, help='samples per iteration')
    parser.add_argument('--rtf', type=float, default=10.0)
    parser.add_argument('--rtf-list', type=float, nargs='+', default=[1.0, 10.0, 20.0])
    parser.add_argument('--seconds', type=float, default=40.0, help='rate: wall time per RTF')
    parser.add_argument('--sim-iterations', type=int, default=15)
    parser.add_argument('--sim-steps', type=int, default=8000)
    parser.add_argument('--target-kl', type=float, default=0.005)
    parser.add_argument('--sim', default=None, help='finetune: a simulation run to start from')
    parser.add_argument('--variants', nargs='+', default=['tuned', 'frozen'],
                        choices=('tuned', 'frozen'))
    parser.add_argument('--modes', nargs='+', default=['keep', 'cost', 'drop'],
                        choices=('keep', 'cost', 'drop'), help='shield: shield_samples choices')
    parser.add_argument('--seed', type=int, default=0, help="shield: the runs' seed")
    parser.add_argument('--out', default=None)
    args = parser.parse_args()
    if args.iterations is None:
        args.iterations = {'scratch': 20, 'shield': 10}.get(args.what, 8)
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix='bench_lor_')
        args.out = tmp.name
    lines = {'scratch': scratch, 'finetune': finetune, 'rate': rate,
             'shield': shield}[args.what](args)
    print('\n'.join(lines), flush=True)


if __name__ == '__main__':
    main()
