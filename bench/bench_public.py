"""CPO and the baselines on Safety-Gymnasium's public tasks, beside OmniSafe's published figures.

Run (in the Safety-Gymnasium environment, docs/benchmarks.md):
  .venv-safety/bin/python bench/bench_public.py --out runs/public
     [--tasks SafetyPointGoal1-v0 SafetyCarGoal1-v0 SafetyPointButton1-v0
              SafetyHalfCheetahVelocity-v1 SafetyHopperVelocity-v1]
     [--algos cpo trpo pdo] [--seeds 0 1 2] [--iterations 50] [--steps-per-iteration 20000]
     [--num-envs 4] [--env-workers 2] [--set value_minibatch=512 ...]
Trains every (task, algo, seed) with `cpo-ros train --env-id TASK --cost-limit 25` (OmniSafe's
limit), one run directory each (a finished run is read, not trained again), then prints per
task and algorithm the mean over seeds of the episode return and cost over the last
--last iterations, the share of iterations after the 5th with cost <= 1.2 d, the steps trained,
and OmniSafe's published figures for the same task as reference rows. The default budget is
1M steps per run (50 x 20,000, OmniSafe's iteration size); OmniSafe's rows are after 1e7.
The algorithms default to every one `cpo-ros train --algo` has. Each --set KEY=VALUE is an
update setting for every run; a finished run trained with other update settings is refused.
"""

import argparse
import csv
from pathlib import Path
import subprocess
import sys
import time

import numpy as np

from cpo_ros.training.config import AlgoConfig, ALGOS
from cpo_ros.training.run import update_setting_differences
from cpo_ros.training.settings import add_update_set_argument, update_sets

COST_LIMIT = 25.0
"""OmniSafe's cost limit for its Safety-Gymnasium benchmark."""

OMNISAFE_SOURCE = ('OmniSafe, benchmarks/on-policy/README.md, Table 2 (github.com/PKU-Alignment/'
                   'omnisafe at 15603dd, 2025-03-17): final reward and cost, mean +- std over 5 '
                   'seeds after 1e7 steps, iterations of 20,000 steps, cost_limit 25')
OMNISAFE = {
    'SafetyPointGoal1-v0': {'CPO': ('20.46 +- 1.38', '28.84 +- 7.76'),
                            'TRPO': ('27.20 +- 0.44', '45.88 +- 11.27'),
                            'TRPOLag': ('18.51 +- 3.83', '22.98 +- 8.45'),
                            'PPOLag': ('12.96 +- 6.95', '25.80 +- 34.99'),
                            'CPPOPID': ('8.43 +- 3.43', '25.74 +- 7.83')},
    'SafetyCarGoal1-v0': {'CPO': ('25.52 +- 2.65', '43.32 +- 14.35'),
                          'TRPO': ('36.60 +- 0.22', '55.58 +- 12.68'),
                          'TRPOLag': ('27.04 +- 1.82', '26.80 +- 5.64'),
                          'PPOLag': ('13.27 +- 9.26', '21.72 +- 32.06'),
                          'CPPOPID': ('10.60 +- 2.51', '30.66 +- 7.53')},
    'SafetyPointButton1-v0': {'CPO': ('4.04 +- 4.54', '40.00 +- 4.52'),
                              'TRPO': ('30.61 +- 0.40', '134.38 +- 22.06'),
                              'TRPOLag': ('6.93 +- 1.84', '31.16 +- 20.58'),
                              'PPOLag': ('4.60 +- 4.73', '20.8 +- 35.78'),
                              'CPPOPID': ('1.18 +- 1.02', '29.42 +- 12.10')},
    'SafetyHalfCheetahVelocity-v1': {'CPO': ('2786.48 +- 173.45', '4.70 +- 6.72'),
                                     'TRPO': ('6490.76 +- 2507.18', '734.26 +- 321.88'),
                                     'TRPOLag': ('2884.68 +- 77.47', '9.04 +- 11.83'),
                                     'PPOLag': ('2946.15 +- 306.35', '3.44 +- 4.77'),
                                     'CPPOPID': ('2837.89 +- 398.52', '8.06 +- 9.62')},
    'SafetyHopperVelocity-v1': {'CPO': ('1713.71 +- 18.26', '13.40 +- 5.82'),
                                'TRPO': ('2047.35 +- 447.33', '448.12 +- 103.87'),
                                'TRPOLag': ('1391.79 +- 269.07', '11.22 +- 9.97'),
                                'PPOLag': ('961.92 +- 752.87', '13.96 +- 19.33'),
                                'CPPOPID': ('1713.29 +- 10.21', '8.96 +- 4.28')},
}
"""OmniSafe's published figures (OMNISAFE_SOURCE), by task and OmniSafe algorithm name."""

OMNISAFE_NAME = {'cpo': 'CPO', 'trpo': 'TRPO', 'pdo': 'TRPOLag', 'ppo_lag': 'PPOLag',
                 'pid_lag': 'CPPOPID'}
"""The OmniSafe row each algorithm stands beside (PDO is a Lagrangian on the TRPO step)."""


def train_once(task: str, algo: str, seed: int, args: argparse.Namespace) -> Path:
    """Train one run unless its directory already holds a finished one; return the directory."""
    out = Path(args.out) / f'{task}_{algo}_s{seed}'
    progress = out / 'progress.csv'
    if progress.is_file() and len(read(progress)) >= args.iterations:
        asked = AlgoConfig(algo=algo, cost_limit=COST_LIMIT, **args.overrides)
        if differ := update_setting_differences(out, asked):
            raise SystemExit(f'{out} was trained with other update settings (run -> asked): '
                             f'{"; ".join(differ)}; choose another --out')
        return out
    command = [sys.executable, '-m', 'cpo_ros.cli', 'train', '--env-id', task, '--algo', algo,
               '--cost-limit', str(COST_LIMIT), '--iterations', str(args.iterations),
               '--steps-per-iteration', str(args.steps_per_iteration),
               '--num-envs', str(args.num_envs), '--env-workers', str(args.env_workers),
               '--seed', str(seed), '--out', str(out), '--quiet',
               '--resume' if (out / 'checkpoints' / 'last.pt').is_file() else '--overwrite']
    command += [arg for text in args.assignments for arg in ('--set', text)]
    t0 = time.perf_counter()
    subprocess.run(command, check=True)
    print(f'trained {out} in {time.perf_counter() - t0:.0f} s', flush=True)
    return out


def read(path: Path) -> list[dict[str, str]]:
    """Return the rows of a progress.csv."""
    with open(path) as f:
        return list(csv.DictReader(f))


def summary(rows: list[dict[str, str]], last: int) -> dict[str, float]:
    """Return a run's figures: return and cost over the last iterations, share within 1.2 d."""
    ret = np.array([float(r['episode_return']) for r in rows])
    cost = np.array([float(r['episode_cost']) for r in rows])
    later = cost[5:] if len(cost) > 5 else cost
    return {'return': float(ret[-last:].mean()), 'cost': float(cost[-last:].mean()),
            'within': float(np.mean(later <= 1.2 * COST_LIMIT)),
            'steps': float(rows[-1]['env_steps'])}


def main() -> None:
    """Train what is missing, then print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='runs/public')
    p.add_argument('--tasks', nargs='+', default=list(OMNISAFE))
    p.add_argument('--algos', nargs='+', default=list(ALGOS), choices=list(ALGOS))
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--iterations', type=int, default=50)
    p.add_argument('--steps-per-iteration', type=int, default=20_000)
    p.add_argument('--num-envs', type=int, default=4)
    p.add_argument('--env-workers', type=int, default=2)
    p.add_argument('--last', type=int, default=3, help='iterations averaged at the end')
    add_update_set_argument(p)
    args = p.parse_args()
    args.overrides = update_sets(p, args)
    results = {(task, algo, seed): summary(read(train_once(task, algo, seed, args)
                                                 / 'progress.csv'), args.last)
               for task in args.tasks for algo in args.algos for seed in args.seeds}
    after = 'after the 5th' if args.iterations > 5 else 'of the run (5 or fewer)'
    print(f'\ncost limit {COST_LIMIT:g}; ours: mean over seeds {args.seeds} of the last '
          f'{args.last} iterations; within = share of iterations {after} with cost <= 1.2 d')
    print(f'reference: {OMNISAFE_SOURCE}')
    for task in args.tasks:
        print(f'\n{task}')
        print(f"  {'algorithm':28s} {'steps':>10s} {'return':>16s} {'cost':>16s} {'within':>7s}")
        for algo in args.algos:
            runs = [results[task, algo, seed] for seed in args.seeds]
            mean = {k: np.mean([r[k] for r in runs]) for k in runs[0]}
            std = {k: np.std([r[k] for r in runs]) for k in runs[0]}
            print(f"  {'cpo_ros ' + algo:28s} {mean['steps']:10.0f} "
                  f"{mean['return']:8.2f} +- {std['return']:5.2f} "
                  f"{mean['cost']:8.2f} +- {std['cost']:5.2f} {mean['within']:7.0%}")
        for name in dict.fromkeys(OMNISAFE_NAME[a] for a in args.algos if a in OMNISAFE_NAME):
            reference = OMNISAFE.get(task, {}).get(name)
            if reference is not None:
                print(f"  {'OmniSafe ' + name + ' (ref.)':28s} {1e7:10.0f} {reference[0]:>16s} "
                      f'{reference[1]:>16s}')


if __name__ == '__main__':
    main()
