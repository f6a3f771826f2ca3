"""Throughput of `cpo-ros train` on a project task: sampling and update split, steps per second.

Run: .venv/bin/python bench/bench_train.py [--task circle|circle_long|gather|goal]
     [--num-envs 16] [--steps 50000] [--iterations 3] [--torch-threads 1] [--busy 1]
Prints env steps/s of sampling (env stepping and policy forward separately) and the wall time of
a whole iteration (sampling + CPO update), with the machine's load average and the OpenMP wait
policy in force. --busy N starts N competing busy Python loops for the duration (a robot's
other work, or the graph's other nodes), so the figures show how the update degrades under
contention.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import cpo_ros  # noqa: F401  (sets the OpenMP wait policy before torch loads)
from cpo_ros.core.config import AlgoConfig, TrainConfig
from cpo_ros.core.trainer import train
from cpo_ros.envs.make import default_cost_limits

BUSY_LOOP = 'while True:\n    pass\n'


def main() -> None:
    """Train a few iterations and print the per-iteration split."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--task', default='circle', help='project task (default circle)')
    parser.add_argument('--num-envs', type=int, default=16)
    parser.add_argument('--steps', type=int, default=50_000)
    parser.add_argument('--iterations', type=int, default=3)
    parser.add_argument('--algo', default='cpo')
    parser.add_argument('--torch-threads', type=int, default=TrainConfig.torch_threads)
    parser.add_argument('--busy', type=int, default=0,
                        help='competing busy Python processes during the run')
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, '-c', BUSY_LOOP]) for _ in range(args.busy)]
    try:
        with tempfile.TemporaryDirectory() as out:
            config = TrainConfig(task=args.task, iterations=args.iterations,
                                 steps_per_iteration=args.steps, num_envs=args.num_envs,
                                 out=out, torch_threads=args.torch_threads,
                                 algo=AlgoConfig(algo=args.algo,
                                                 cost_limit=default_cost_limits(args.task)[0]))
            rows = []
            train(config, show_progress=False, on_iteration=rows.append)
        load = os.getloadavg()
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    print(f'cpo-ros train --task {args.task}, {args.algo}, {args.num_envs} envs, {args.steps} '
          f'samples/iteration, {args.torch_threads} torch thread(s), OMP_WAIT_POLICY='
          f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}, {args.busy} busy process(es), "
          f'load average {load[0]:.2f}')
    print(f"{'it':>3} {'sample s':>9} {'env s':>7} {'policy s':>9} {'update s':>9} "
          f"{'iter s':>7} {'sampling steps/s':>17}")
    for r in rows:
        sample, update = r['sample_time_s'], r['update_time_s']
        print(f"{r['iteration']:>3} {sample:9.2f} {r['env_time_s']:7.2f} "
              f"{r['policy_time_s']:9.2f} {update:9.2f} {sample + update:7.2f} "
              f"{r['samples'] / sample:17.0f}")
    best = rows[-1]
    print(f"last iteration: sampling {best['samples'] / best['sample_time_s']:.0f} env steps/s "
          f"(target >= 25000), iteration {best['sample_time_s'] + best['update_time_s']:.2f} s "
          f'(target <= 1 s)')


if __name__ == '__main__':
    main()
