"""CPU cost of the simulator's step per robot on each task: what sampling pays for the env.

Run: .venv/bin/python bench/bench_env_step.py [--tasks circle goal] [--num-envs 16]
     [--steps 2000] [--repeats 5]
Steps make_vec_env(task) with seeded uniform actions and prints, per task, the process CPU
time per robot-step (the best of the repeats: CPU time, not wall time, so that other load on
the machine moves it little). It uses only make_vec_env, so it measures any version of the
package on PYTHONPATH (e.g. before and after a change to the task interface).
"""

import argparse
import time

import numpy as np

from cpo_ros.sim.make import make_vec_env


def cpu_per_step(task: str, num_envs: int, steps: int) -> float:
    """Return CPU seconds per robot-step of `steps` steps of num_envs robots on task."""
    env = make_vec_env(task=task, num_envs=num_envs, seed=0)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    low, high = env.single_action_space.low, env.single_action_space.high
    actions = rng.uniform(low, high, size=(steps, num_envs, 2)).astype(np.float32)
    start = time.process_time()
    for a in actions:
        env.step(a)
    return (time.process_time() - start) / (steps * num_envs)


def main() -> None:
    """Print the CPU time per robot-step of each task."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tasks', nargs='+', default=['circle', 'goal'])
    parser.add_argument('--num-envs', type=int, default=16)
    parser.add_argument('--steps', type=int, default=2000)
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    import cpo_ros.sim.make as make
    print(f'package: {make.__file__}; {args.num_envs} robots, {args.steps} steps, best of '
          f'{args.repeats}')
    for task in args.tasks:
        best = min(cpu_per_step(task, args.num_envs, args.steps) for _ in range(args.repeats))
        print(f'{task:>12}: {best * 1e6:7.2f} us CPU per robot-step')


if __name__ == '__main__':
    main()
