"""Point-Circle (or Gather) at the paper's settings: CPO vs TRPO vs PDO over seeds.

Run: .venv/bin/python bench/bench_circle_algos.py --iterations 100 --seeds 0 1 2 --out runs/bench
     [--task gather --algos cpo pdo]
Writes one run directory per (algo, seed), then a table of mean episode cost and return over
seeds every 10 iterations, the share of iterations after the 10th with cost <= 1.2 d, and a
plot (OUT/<task>_algos.png).
"""

import argparse
import csv
from pathlib import Path

import numpy as np

from cpo_ros.core.config import AlgoConfig, TrainConfig
from cpo_ros.core.trainer import train


def load(path: Path) -> dict[str, np.ndarray]:
    """Return progress.csv columns as float arrays."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in ('iteration', 'env_steps',
                                                              'episode_return', 'episode_cost')}


def main() -> None:
    """Train every algorithm and seed, then print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--iterations', type=int, default=100)
    parser.add_argument('--steps', type=int, default=50_000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--algos', nargs='+', default=['cpo', 'trpo', 'pdo'])
    parser.add_argument('--task', default='circle', choices=('circle', 'gather'))
    parser.add_argument('--cost-limit', type=float, default=None,
                        help="default: the task's (circle 5, gather 0.1)")
    parser.add_argument('--out', default='runs/bench_circle')
    args = parser.parse_args()
    from cpo_ros.envs.make import DEFAULT_COST_LIMITS
    if args.cost_limit is None:
        args.cost_limit = DEFAULT_COST_LIMITS[args.task]
    out = Path(args.out)
    results: dict[str, list[dict[str, np.ndarray]]] = {}
    for algo in args.algos:
        for seed in args.seeds:
            run_dir = out / f'{algo}_s{seed}'
            if not (run_dir / 'progress.csv').is_file() or len(
                    load(run_dir / 'progress.csv')['iteration']) < args.iterations:
                train(TrainConfig(task=args.task, iterations=args.iterations,
                                  steps_per_iteration=args.steps, num_envs=16, seed=seed,
                                  out=str(run_dir),
                                  algo=AlgoConfig(algo=algo, cost_limit=args.cost_limit)),
                      resume=True, show_progress=False)
            results.setdefault(algo, []).append(load(run_dir / 'progress.csv'))
    d = args.cost_limit
    print(f'Point-{args.task.title()}, {args.steps} samples/iteration, d = {d}, '
          f'seeds {args.seeds}')
    print('mean over seeds of the per-iteration mean episode cost / return')
    header = 'iter ' + ' '.join(f'{a + " cost":>10} {a + " return":>11}' for a in results)
    print(header)
    n = min(len(r['iteration']) for runs in results.values() for r in runs)
    for i in list(range(9, n, 10)) + ([n - 1] if (n - 1) % 10 != 9 else []):
        cells = []
        for runs in results.values():
            cells.append(f"{np.mean([r['episode_cost'][i] for r in runs]):10.2f} "
                         f"{np.mean([r['episode_return'][i] for r in runs]):11.2f}")
        print(f'{i + 1:4d} ' + ' '.join(cells))
    for algo, runs in results.items():
        after = np.concatenate([r['episode_cost'][10:n] for r in runs])
        last = np.mean([r['episode_return'][max(0, n - 10):n].mean() for r in runs])
        share = float(np.mean(after <= 1.2 * d)) if after.size else float('nan')
        print(f'{algo}: iterations after the 10th with cost <= 1.2 d: {share:.0%}; '
              f'mean return over the last 10 iterations {last:.2f}')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax_r, ax_c) = plt.subplots(1, 2, figsize=(11, 4))
    for algo, runs in results.items():
        steps = runs[0]['env_steps'][:n]
        for ax, key in ((ax_r, 'episode_return'), (ax_c, 'episode_cost')):
            values = np.stack([r[key][:n] for r in runs])
            ax.plot(steps, values.mean(0), label=algo.upper())
            ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2)
    ax_c.axhline(d, color='k', ls='--', label='limit')
    ax_r.set_ylabel('episode return')
    ax_c.set_ylabel('episode cost')
    for ax in (ax_r, ax_c):
        ax.set_xlabel('environment steps')
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f'{args.task}_algos.png', dpi=100)
    print(f'plot: {out / f"{args.task}_algos.png"}')


if __name__ == '__main__':
    main()
