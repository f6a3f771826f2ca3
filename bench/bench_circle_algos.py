"""CPO against TRPO, PDO, PPO-Lagrangian and PID-Lagrangian over seeds on a project task.

Run: .venv/bin/python bench/bench_circle_algos.py --iterations 100 --seeds 0 1 2 --out runs/bench
     [--task gather --algos cpo pdo]
     [--speed-limit 1.0 --cost-limit 5 10 --algos cpo cpo_shaped pdo]   (two constraints)
     [--task circle_long --algos cpo cpo_paper trpo pdo]                 (long horizon)
     [--task circle_long --steps 20000 --iterations 30 --seeds 0 1 2 3 4 --within-after 5
      --algos cpo cpo_z1 cpo_share085 cpo_share085_z1 pdo ppo_lag pid_lag]     (small batches)
     [--algos cpo pdo --set value_minibatch=512]   (an update setting for every variant)
Writes one run directory per (algo, seed), then a table of mean episode cost (each constraint)
and return over seeds every 10 iterations, the share of iterations after the 10th (or
--within-after N) with every cost <= 1.2 d, the last-10 return per seed and its mean with the
standard error over seeds, the predicted against the measured cost change of each update, and
a plot (OUT/<task>_algos.png). A finished run in OUT is reported, not retrained, and refused
when its config.yaml holds other update settings. The variants beside the rules are the
presets of cpo_ros.algo.registry (cpo_paper, cpo_z1, cpo_share085, cpo_share085_z1,
cpo_shaped).
"""

import argparse
import csv
from pathlib import Path

import numpy as np

from cpo_ros.algo import registry
from cpo_ros.tasks.registry import registered
from cpo_ros.training.config import AlgoConfig, TrainConfig
from cpo_ros.training.run import update_setting_differences
from cpo_ros.training.settings import add_update_set_argument, update_sets
from cpo_ros.training.trainer import train


def load(path: Path, num_costs: int) -> dict[str, np.ndarray]:
    """Return progress.csv columns as float arrays; 'costs' is (iterations, m)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    data = {k: np.array([float(r[k] or 'nan') for r in rows])
            for k in ('iteration', 'env_steps', 'episode_return', 'predicted_cost_change',
                      'cost_grad_noise')}
    data['accepted'] = np.array([r['accepted'] == 'True' for r in rows])
    keys = ['episode_cost'] if num_costs == 1 else [f'episode_cost_{i}' for i in range(num_costs)]
    data['costs'] = np.array([[float(r[k]) for k in keys] for r in rows]).reshape(len(rows), -1)
    return data


def standard_error(values: list[float]) -> str:
    """Return ' +- s.e. X' of the mean over seeds (empty for one seed)."""
    if len(values) < 2:
        return ''
    return f' +- s.e. {np.std(values, ddof=1) / np.sqrt(len(values)):.2f}'


def main() -> None:
    """Train every algorithm and seed, then print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--iterations', type=int, default=100)
    parser.add_argument('--steps', type=int, default=50_000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--algos', nargs='+', default=['cpo', 'trpo', 'pdo', 'ppo_lag', 'pid_lag'],
                        choices=sorted([*registry.RULES, *registry.PRESETS]))
    parser.add_argument('--task', default='circle', choices=sorted(registered()))
    parser.add_argument('--speed-limit', type=float, default=None,
                        help='circle: add the speed constraint [m/s]')
    parser.add_argument('--cost-limit', type=float, nargs='+', default=None,
                        help="one per constraint (default: the task's)")
    parser.add_argument('--out', default='runs/bench_circle')
    parser.add_argument('--report-only', action='store_true',
                        help='train nothing: report the finished runs among those asked for')
    parser.add_argument('--within-after', type=int, default=10,
                        help='share of iterations within 1.2 d counted after this iteration')
    parser.add_argument('--torch-threads', type=int, default=1,
                        help='torch threads per run (1 degrades least beside other work)')
    add_update_set_argument(parser, 'every variant, over its preset')
    args = parser.parse_args()
    overrides = update_sets(parser, args)
    from cpo_ros.sim.make import default_cost_limits
    task_kwargs = {} if args.speed_limit is None else {'speed_limit': args.speed_limit}
    limits = tuple(args.cost_limit or default_cost_limits(args.task, **task_kwargs))
    m = len(limits)
    out = Path(args.out)
    results: dict[str, list[dict[str, np.ndarray]]] = {}
    used: dict[str, list[int]] = {}
    for variant in args.algos:
        algo, settings = registry.variant(variant)
        for seed in args.seeds:
            run_dir = out / f'{variant}_s{seed}'
            done = (run_dir / 'progress.csv').is_file() and len(
                load(run_dir / 'progress.csv', m)['iteration']) >= args.iterations
            if not done and args.report_only:
                continue
            asked = AlgoConfig(algo=algo, **{**settings, **overrides},
                               cost_limit=limits[0] if m == 1 else limits)
            if done and (differ := update_setting_differences(run_dir, asked)):
                parser.error(f'{run_dir} was trained with other update settings (run -> asked): '
                             f'{"; ".join(differ)}; choose another --out')
            if not done:
                train(TrainConfig(task=args.task, iterations=args.iterations,
                                  steps_per_iteration=args.steps, num_envs=16, seed=seed,
                                  out=str(run_dir), task_kwargs=task_kwargs,
                                  torch_threads=args.torch_threads, algo=asked),
                      resume='auto', show_progress=False)
            results.setdefault(variant, []).append(load(run_dir / 'progress.csv', m))
            used.setdefault(variant, []).append(seed)
    extra = f', speed limit {args.speed_limit} m/s' if args.speed_limit else ''
    if overrides:
        extra += ', every variant with ' + ', '.join(f'{k} = {v}' for k, v in overrides.items())
    print(f'Point-{args.task.title()}{extra}, {args.steps} samples/iteration, '
          f'd = {list(limits)}, seeds ' + '; '.join(f'{v} {s}' for v, s in used.items()))
    print('mean over seeds of the per-iteration mean episode cost (each constraint) / return')
    names = ['cost'] if m == 1 else [f'cost{i}' for i in range(m)]
    print('iter ' + ' '.join(' '.join(f'{v + " " + n:>14}' for n in names)
                             + f' {v + " return":>13}' for v in results))
    n = min(len(r['iteration']) for runs in results.values() for r in runs)
    for i in list(range(9, n, 10)) + ([n - 1] if (n - 1) % 10 != 9 else []):
        cells = []
        for runs in results.values():
            costs = np.mean([r['costs'][i] for r in runs], axis=0)
            cells.append(' '.join(f'{c:14.2f}' for c in costs)
                         + f" {np.mean([r['episode_return'][i] for r in runs]):13.2f}")
        print(f'{i + 1:4d} ' + ' '.join(cells))
    k = args.within_after
    for variant, runs in results.items():
        after = np.concatenate([r['costs'][k:n] for r in runs])
        within = np.all(after <= 1.2 * np.asarray(limits), axis=1)
        per_seed = [r['episode_return'][max(0, n - 10):n].mean() for r in runs]
        last_cost = np.mean([r['costs'][max(0, n - 10):n].mean(0) for r in runs], axis=0)
        share = float(np.mean(within)) if within.size else float('nan')
        print(f'{variant}: iterations after iteration {k} with every cost <= 1.2 d: '
              f'{share:.0%}; last 10 iterations: mean return {np.mean(per_seed):.2f}'
              f'{standard_error(per_seed)} (per seed '
              f'{", ".join(f"{v:.1f}" for v in per_seed)}), mean cost '
              f'{", ".join(f"{c:.2f}" for c in last_cost)}')
    print('the linear cost model: predicted change b.x of each update against the change of J_C '
          'measured at the next iteration (first constraint, all seeds)')
    for variant, runs in results.items():
        pred = np.concatenate([r['predicted_cost_change'][:n - 1] for r in runs])
        meas = np.concatenate([np.diff(r['costs'][:n, 0]) for r in runs])
        noise = np.concatenate([r['cost_grad_noise'][:n] for r in runs])
        noise_text = f'{np.nanmedian(noise):.2f}' if np.isfinite(noise).any() else 'n/a (no b)'
        ok = np.isfinite(pred) & np.isfinite(meas)
        if variant == 'trpo' or ok.sum() < 3:
            continue
        rises = ok & (pred > 0)
        accepted = np.concatenate([r['accepted'][:n] for r in runs])
        print(f'{variant}: mean predicted {pred[ok].mean():7.2f}, mean measured '
              f'{meas[ok].mean():7.2f}, correlation {np.corrcoef(pred[ok], meas[ok])[0, 1]:.2f}, '
              f'after predicted rises: predicted {pred[rises].mean():.2f} measured '
              f'{meas[rises].mean():.2f} ({rises.sum()} updates); share of the cost gradient '
              f'that is noise (split halves, median) {noise_text}; steps '
              f'accepted {np.mean(accepted):.0%}')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 1 + m, figsize=(5.5 * (1 + m), 4))
    for variant, runs in results.items():
        steps = runs[0]['env_steps'][:n]
        series = [('episode return', np.stack([r['episode_return'][:n] for r in runs]))]
        series += [(f'episode {names[i]}', np.stack([r['costs'][:n, i] for r in runs]))
                   for i in range(m)]
        for ax, (label, values) in zip(axes, series, strict=True):
            ax.plot(steps, values.mean(0), label=variant.upper())
            ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2)
            ax.set_ylabel(label)
    for i in range(m):
        axes[1 + i].axhline(limits[i], color='k', ls='--', label='limit')
    for ax in axes:
        ax.set_xlabel('environment steps')
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    name = f'{args.task}{"_speed" if args.speed_limit else ""}_algos.png'
    fig.savefig(out / name, dpi=100)
    print(f'plot: {out / name}')


if __name__ == '__main__':
    main()
