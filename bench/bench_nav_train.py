"""Goal trained through the graph (nav_sim, lock-step over the topics) against the direct trainer.

Run: nice .venv/bin/python bench/bench_nav_train.py [--seeds 0 1 2] [--iterations 10]
     [--steps 16000] [--num-envs 16] [--out bench/results/nav_train]
Both paths run the same task (Goal: MuJoCo obstacles, ray-cast scan), the same number of
samples per iteration and iterations, on each seed; the graph runs in its own ROS domain
(ROS_DOMAIN_ID, default 84). Prints per seed and path the mean episode return and cost of the
last three iterations, the wall time, and the means over seeds. Each run's progress.csv and
config.yaml stay under --out.
"""

import argparse
import csv
import os
from pathlib import Path
import subprocess
import sys
import time


def run(cmd: list[str], env: dict[str, str]) -> float:
    """Run a command to its end (exit 0 required); return its wall time [s]."""
    start = time.monotonic()
    result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f'{" ".join(cmd)} failed ({result.returncode}): {result.stderr[-2000:]}')
    return time.monotonic() - start


def tail(out: Path, last: int = 3) -> dict[str, float]:
    """Return the mean return and cost of the last iterations, samples and iterations."""
    with open(out / 'progress.csv') as f:
        rows = list(csv.DictReader(f))
    end = rows[-last:]
    return {'return': sum(float(r['episode_return']) for r in end) / len(end),
            'cost': sum(float(r['episode_cost']) for r in end) / len(end),
            'samples': float(rows[-1]['env_steps']), 'iterations': len(rows)}


def main() -> None:
    """Train Goal both ways per seed; print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--iterations', type=int, default=10)
    parser.add_argument('--steps', type=int, default=16000)
    parser.add_argument('--num-envs', type=int, default=16)
    parser.add_argument('--out', default='bench/results/nav_train')
    parser.add_argument('--domain', default=os.environ.get('ROS_DOMAIN_ID', '84'))
    args = parser.parse_args()
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    out = Path(args.out)
    results = []
    for seed in args.seeds:
        direct, graph = out / f'direct_seed{seed}', out / f'graph_seed{seed}'
        t_direct = run([sys.executable, '-m', 'cpo_ros.cli', 'train', '--task', 'goal',
                        '--iterations', str(args.iterations), '--steps-per-iteration',
                        str(args.steps), '--num-envs', str(args.num_envs), '--seed', str(seed),
                        '--out', str(direct), '--quiet'], env)
        t_graph = run([sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'nav_sim', '--ros-args',
                       '-p', f'seed:={seed}', '-p', f'num_envs:={args.num_envs}',
                       '-p', f'steps_per_iteration:={args.steps}',
                       '-p', f'learner:iterations:={args.iterations}',
                       '-p', f'learner:out:={graph}', '-p', 'learner:resume:=false'], env)
        for path, directory, wall in (('direct', direct, t_direct), ('graph', graph, t_graph)):
            row = {'seed': seed, 'path': path, 'wall_s': wall, **tail(directory)}
            results.append(row)
            print(f"seed {seed} {path:6s}: {row['iterations']} iterations, "
                  f"{row['samples']:.0f} samples, last-3 return {row['return']:7.2f}, "
                  f"cost {row['cost']:6.2f} (limit 50), {wall:6.1f} s", flush=True)
    print()
    for path in ('direct', 'graph'):
        rows = [r for r in results if r['path'] == path]
        n = len(rows)
        print(f'{path:6s} over {n} seed(s): return {sum(r["return"] for r in rows) / n:7.2f}, '
              f'cost {sum(r["cost"] for r in rows) / n:6.2f}, wall '
              f'{sum(r["wall_s"] for r in rows) / n:6.1f} s per run')


if __name__ == '__main__':
    main()
