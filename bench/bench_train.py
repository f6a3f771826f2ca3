"""Throughput of `cpo-ros train` on a project task: sampling and update split, steps per second.

Run: .venv/bin/python bench/bench_train.py [--task circle|circle_long|gather|goal]
     [--num-envs 16] [--steps 50000] [--iterations 5] [--torch-threads 2] [--busy 0 1]
     [--set value_minibatch=512 ...]   (an update setting, as `cpo-ros train --set`)
Runs the training once per --busy count (default: idle, then beside one busy process) and
prints, per iteration: the wall time of sampling (env stepping and policy forward separately)
and of the CPO update, the whole iteration, the CPU seconds per iteration (all threads of the
process and of the critics' fit process, then the main process alone; the first iteration's
include start-up), and the update's split: advantages (GAE), direction (surrogate gradients,
Fisher-vector products and CG of the step), the split-half noise diagnostic (its gradient; its
CG solve runs in the critics' process after the fit), the line search, the critics' fit (in its
own process, beside the policy step and the next iteration's sampling) and how long the update
waited for that process. The machine's load average and the OpenMP wait policy
are printed with the figures. A busy process is a competing busy Python loop (a robot's other
work, or the graph's other nodes), so the figures show how the iteration degrades under
contention.
"""

import argparse
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

import cpo_ros  # noqa: F401  (sets the OpenMP wait policy before torch loads)
from cpo_ros.sim.make import default_cost_limits
from cpo_ros.training.config import AlgoConfig, TrainConfig
from cpo_ros.training.settings import add_update_set_argument, update_sets
from cpo_ros.training.trainer import train

BUSY_LOOP = 'while True:\n    pass\n'


SPLIT = (('adv s', 'time_advantages_s'), ('dir s', 'time_direction_s'),
         ('noise s', 'time_noise_s'), ('search s', 'time_line_search_s'),
         ('fit s', 'time_critic_fit_s'), ('wait s', 'time_critic_wait_s'))
"""Columns of the update's split: header and the update's figure (seconds)."""


def cpu_seconds(exclude: set[int]) -> float:
    """Return the CPU seconds of this process and of its children (the critics' fit process).

    Children listed in exclude (the busy loops) are left out; Linux /proc only.
    """
    total = time.process_time()
    tick = os.sysconf('SC_CLK_TCK')
    for children in Path('/proc/self/task').glob('*/children'):
        for pid in children.read_text().split():
            if int(pid) in exclude:
                continue
            try:
                fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def run(args: argparse.Namespace, busy_count: int) -> list[dict]:
    """Train args.iterations iterations beside busy_count busy processes; return the rows."""
    busy = [subprocess.Popen([sys.executable, '-c', BUSY_LOOP]) for _ in range(busy_count)]
    try:
        with tempfile.TemporaryDirectory() as out:
            config = TrainConfig(task=args.task, iterations=args.iterations,
                                 steps_per_iteration=args.steps, num_envs=args.num_envs,
                                 out=out, torch_threads=args.torch_threads,
                                 algo=AlgoConfig(algo=args.algo, **args.overrides,
                                                 cost_limit=default_cost_limits(args.task)[0]))
            rows: list[dict] = []
            exclude = {proc.pid for proc in busy}
            cpu = [cpu_seconds(exclude), time.process_time()]

            def collect(row: dict) -> None:
                now, main_now = cpu_seconds(exclude), time.process_time()
                rows.append({**row, 'cpu_s': now - cpu[0], 'main_cpu_s': main_now - cpu[1]})
                cpu[:] = now, main_now

            train(config, show_progress=False, on_iteration=collect)
        load = os.getloadavg()
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    settings = ''.join(f', {k} = {v}' for k, v in args.overrides.items())
    print(f'\ncpo-ros train --task {args.task}, {args.algo}{settings}, {args.num_envs} envs, '
          f'{args.steps} samples/iteration, {args.torch_threads} torch thread(s), OMP_WAIT_POLICY='
          f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}, {busy_count} busy process(es), "
          f'load average {load[0]:.2f} (1 min) {load[1]:.2f} (5 min)')
    print(f"{'it':>3} {'sample s':>9} {'env s':>7} {'policy s':>9} {'update s':>9} "
          f"{'iter s':>7} {'cpu s':>6} {'main':>5} {'steps/s':>8} | "
          + ' '.join(f'{h:>8}' for h, _ in SPLIT))
    for r in rows:
        sample, update = r['sample_time_s'], r['update_time_s']
        print(f"{r['iteration']:>3} {sample:9.2f} {r['env_time_s']:7.2f} "
              f"{r['policy_time_s']:9.2f} {update:9.2f} {sample + update:7.2f} {r['cpu_s']:6.2f} "
              f"{r['main_cpu_s']:5.2f} "
              f"{r['samples'] / sample:8.0f} | "
              + ' '.join(f'{r.get(key, float("nan")):8.2f}' for _, key in SPLIT))
    return rows


def main() -> None:
    """Train a few iterations per busy count and print the per-iteration split."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--task', default='circle', help='project task (default circle)')
    parser.add_argument('--num-envs', type=int, default=16)
    parser.add_argument('--steps', type=int, default=50_000)
    parser.add_argument('--iterations', type=int, default=5)
    parser.add_argument('--algo', default='cpo')
    parser.add_argument('--torch-threads', type=int, default=TrainConfig.torch_threads)
    parser.add_argument('--busy', type=int, nargs='+', default=[0, 1],
                        help='competing busy Python processes: one run per count given '
                             '(default 0 1: idle, then beside one busy process)')
    add_update_set_argument(parser, 'the timed run')
    args = parser.parse_args()
    args.overrides = update_sets(parser, args)
    print('iteration = sample + update (the update excludes the next sampling, done while the '
          'critics fit); split columns are parts of the update, fit s runs on its own thread')
    summary = []
    for busy_count in args.busy:
        rows = run(args, busy_count)
        # Steady state: the first iteration pays for warm-up, and the last has no next rollout
        # to sample while the critics fit.
        steady = rows[1:-1] or rows
        iters = sorted(r['sample_time_s'] + r['update_time_s'] for r in steady)
        summary.append((busy_count, iters[len(iters) // 2], steady[-1]))
    print()
    for busy_count, median, last in summary:
        print(f'{busy_count} busy: iteration {median:.2f} s (median of iterations 2 to n-1; '
              f"target <= 1 s); iteration {last['iteration']}: sampling "
              f"{last['samples'] / last['sample_time_s']:.0f} env steps/s, update "
              f"{last['update_time_s']:.2f} s, CPU {last['cpu_s']:.2f} s")


if __name__ == '__main__':
    main()
