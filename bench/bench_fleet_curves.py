"""Fleet learning curves: K worker processes against one, at equal samples, several seeds.

Run: .venv/bin/python bench/bench_fleet_curves.py [--workers 1 4] [--seeds 0 1 2]
     [--steps 25000] [--iterations 40] [--parallel 2] [--domain-base 60]

Each run is `cpo-ros bringup fleet_sim -p workers:=K` on Point-Circle with the same
steps_per_iteration and iterations, so every K learns from the same number of samples; each run
gets its own ROS_DOMAIN_ID (domain-base + run index). Prints the mean return and cost of the last
10 iterations per K and seed, Welch's t-test between the K's on both, the share of iterations
after the 10th with cost <= 1.2 d, and plots the mean curves (fleet_curves.png in --out).
"""

import argparse
from concurrent.futures import ThreadPoolExecutor
import csv
import os
from pathlib import Path
import subprocess

from bench_fleet import fleet_command
import numpy as np


def run(args, workers: int, seed: int, domain: int) -> Path:
    """Train through fleet_sim with K workers (its own DDS domain); return the run directory."""
    out = Path(args.out) / f'k{workers}_s{seed}'
    if (out / 'progress.csv').is_file() and len(_column(out, 'iteration')) >= args.iterations:
        return out
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    subprocess.run(fleet_command(args, workers, out, seed), check=True, capture_output=True,
                   env=env, timeout=7200)
    return out


def _column(out: Path, name: str) -> np.ndarray:
    with open(out / 'progress.csv') as f:
        return np.array([float(r[name]) for r in csv.DictReader(f)])


def welch(a: list[float], b: list[float]) -> float:
    """Return the two-sided p-value of Welch's t-test (nan with fewer than 2 runs a side)."""
    from scipy import stats
    if len(a) < 2 or len(b) < 2:
        return float('nan')
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def main() -> None:
    """Train every K and seed, then print and plot the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 4])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--steps', type=int, default=25_000)
    parser.add_argument('--iterations', type=int, default=40)
    parser.add_argument('--num-envs', type=int, default=16, help='robots per worker')
    parser.add_argument('--parallel', type=int, default=2, help='runs at the same time')
    parser.add_argument('--domain-base', type=int, default=60)
    parser.add_argument('--out', default='runs/bench_fleet_curves')
    args = parser.parse_args()
    jobs = [(k, seed) for seed in args.seeds for k in args.workers]
    with ThreadPoolExecutor(args.parallel) as pool:
        dirs = list(pool.map(lambda item: run(args, *item[1], args.domain_base + item[0]),
                             enumerate(jobs)))
    runs = dict(zip(jobs, dirs, strict=True))
    limit = float(_column(dirs[0], 'cost_limit')[0])
    print(f'Point-Circle through fleet_sim, {args.steps} samples/iteration, {args.iterations} '
          f'iterations, {args.num_envs} robots per worker, d = {limit}')
    last = {}
    for k in args.workers:
        for seed in args.seeds:
            out = runs[(k, seed)]
            ret, cost = _column(out, 'episode_return'), _column(out, 'episode_cost')
            last[(k, seed)] = (ret[-10:].mean(), cost[-10:].mean(),
                               float(np.mean(cost[10:] <= 1.2 * limit)))
            print(f'K = {k} seed {seed}: last 10 iterations return {last[(k, seed)][0]:6.2f} '
                  f'cost {last[(k, seed)][1]:5.2f}; after the 10th within 1.2 d '
                  f'{last[(k, seed)][2]:.0%}')
    base = min(args.workers)
    for k in args.workers:
        values = [last[(k, s)] for s in args.seeds]
        line = (f'K = {k}: return {np.mean([v[0] for v in values]):6.2f} '
                f'+- {np.std([v[0] for v in values]):5.2f}, cost '
                f'{np.mean([v[1] for v in values]):5.2f}, within 1.2 d '
                f'{np.mean([v[2] for v in values]):.0%}')
        if k != base:
            for i, name in ((0, 'return'), (1, 'cost')):
                p = welch([last[(base, s)][i] for s in args.seeds],
                          [last[(k, s)][i] for s in args.seeds])
                line += f'; Welch p ({name}, against K = {base}) {p:.2f}'
        print(line)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k in args.workers:
        for ax, name in zip(axes, ('episode_return', 'episode_cost'), strict=True):
            series = np.stack([_column(runs[(k, s)], name) for s in args.seeds])
            steps = _column(runs[(k, args.seeds[0])], 'env_steps')
            ax.plot(steps, series.mean(0), label=f'K = {k}')
            ax.fill_between(steps, series.min(0), series.max(0), alpha=0.2)
            ax.set_xlabel('env steps')
            ax.set_ylabel(name.replace('_', ' '))
    axes[1].axhline(limit, color='k', linestyle='--', label='limit')
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    path = Path(args.out) / 'fleet_curves.png'
    fig.savefig(path, dpi=100)
    print(f'plot: {path}')


if __name__ == '__main__':
    main()
