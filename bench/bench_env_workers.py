"""Env steps per second of an --env-id env with 1 (in-process) and N env worker processes.

Run: .venv/bin/python bench/bench_env_workers.py [--env-id ID] [--num-envs 4]
     [--steps-per-env 1000] [--workers 1 2] [--repeats 2]
Default id: SafetyPointGoal1-v0 where safety_gymnasium imports (its own Python 3.10
environment, docs/benchmarks.md), else cpo_ros_bench/SlowPointGoal-v0, registered here: the
project's Point-Goal with a fixed amount of CPU work added to each step and each reset
(--step-ms, --reset-ms of CPU time, calibrated with the process clock at start), standing in
for Safety-Gymnasium's few hundred steps/s per core. The envs are stepped with seeded uniform
random actions through make_vec_env, as the trainer steps them; start-up (spawning the
workers) is timed apart. CPU ms/step counts this process and the workers: equal CPU per step
with N workers means the work split without overhead, and the wall-clock speed-up then
depends on free cores. The machine's load average is printed with each figure.
"""

import argparse
import os
import time

import gymnasium as gym
import numpy as np

import cpo_ros.sim  # noqa: F401 - registers the project's ids
from cpo_ros.sim.make import make_vec_env

SLOW_ID = 'cpo_ros_bench/SlowPointGoal-v0'


def burn(iterations: int) -> int:
    """Spend CPU on pure-Python arithmetic (no threads, no sleeping)."""
    x = 0
    for i in range(iterations):
        x += i * i
    return x


def iterations_per_ms() -> float:
    """Return burn's iterations per millisecond of this process's CPU time."""
    start = time.process_time()
    burn(2_000_000)
    return 2_000_000 / max(1e-6, (time.process_time() - start) * 1000.0)


class SlowPointGoal(gym.Wrapper):
    """cpo_ros/PointGoal-v0 with fixed CPU work added to step and reset."""

    def __init__(self, step_work: int = 0, reset_work: int = 0):
        super().__init__(gym.make('cpo_ros/PointGoal-v0', disable_env_checker=True))
        self.step_work, self.reset_work = step_work, reset_work

    def reset(self, **kwargs):
        burn(self.reset_work)
        return self.env.reset(**kwargs)

    def step(self, action):
        burn(self.step_work)
        return self.env.step(action)


# At import, so that spawned env workers (which import this script) know the id too.
if SLOW_ID not in gym.registry:
    gym.register(SLOW_ID, entry_point=SlowPointGoal)


def cpu_seconds(pids: list[int]) -> float:
    """Return the CPU seconds of this process and of the given processes (Linux /proc)."""
    total = time.process_time()
    tick = os.sysconf('SC_CLK_TCK')
    for pid in pids:
        fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def measure(env_id: str, kwargs: dict, num_envs: int, workers: int, steps: int,
            seed: int) -> tuple[float, float, float]:
    """Return (start-up s, env steps/s, CPU ms per env step) of steps vector steps."""
    t0 = time.perf_counter()
    env = make_vec_env(env_id=env_id, num_envs=num_envs, seed=seed, env_workers=workers,
                       **kwargs)
    t1 = time.perf_counter()
    pids = getattr(env, 'pids', [])
    try:
        rng = np.random.default_rng(seed)
        low, high = env.single_action_space.low, env.single_action_space.high
        c2, t2 = cpu_seconds(pids), time.perf_counter()
        env.reset(seed=seed)
        for _ in range(steps):
            env.step(rng.uniform(low, high, (num_envs, env.act_dim)))
        c3, t3 = cpu_seconds(pids), time.perf_counter()
    finally:
        if hasattr(env, 'close'):
            env.close()
    return t1 - t0, num_envs * steps / (t3 - t2), (c3 - c2) * 1000 / (num_envs * steps)


def main() -> None:
    """Measure and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--env-id', default=None)
    p.add_argument('--num-envs', type=int, default=4)
    p.add_argument('--steps-per-env', type=int, default=1000,
                   help='vector steps per measurement (1000: one whole Safety-Gymnasium '
                   'episode per env, resets included)')
    p.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--step-ms', type=float, default=2.0,
                   help=f'{SLOW_ID}: CPU milliseconds added to each step')
    p.add_argument('--reset-ms', type=float, default=500.0,
                   help=f'{SLOW_ID}: CPU milliseconds added to each reset')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    env_id, kwargs = args.env_id, {}
    if env_id is None:
        try:
            import safety_gymnasium  # noqa: F401
            env_id = 'SafetyPointGoal1-v0'
        except (ImportError, ValueError):
            env_id = SLOW_ID
    if env_id == SLOW_ID:
        rate = iterations_per_ms()
        kwargs = {'step_work': int(args.step_ms * rate), 'reset_work': int(args.reset_ms * rate)}
        print(f'{SLOW_ID}: +{args.step_ms:g} CPU ms per step, +{args.reset_ms:g} CPU ms per '
              f'reset ({rate:.0f} burn iterations per ms)')
    print(f'{env_id}, {args.num_envs} envs, {args.steps_per_env} steps each from a seeded '
          f'reset, {os.cpu_count()} cores')
    print(' workers  repeat  start-up s  env steps/s  vs 1 worker  CPU ms/step  load average '
          '(1 min)')
    best: dict[int, float] = {}
    for repeat in range(args.repeats):
        for workers in args.workers:
            startup, rate, cpu = measure(env_id, kwargs, args.num_envs, workers,
                                         args.steps_per_env, args.seed)
            best[workers] = max(best.get(workers, 0.0), rate)
            base = best.get(1)
            ratio = f'{rate / base:10.2f}x' if base else ' ' * 11
            print(f'{workers:8d} {repeat + 1:7d} {startup:11.2f} {rate:12.0f} {ratio} '
                  f'{cpu:12.3f}  {os.getloadavg()[0]:.2f}', flush=True)
    if 1 in best:
        print('best of the repeats: ' + ', '.join(
            f'{w} worker(s) {r:.0f} steps/s ({r / best[1]:.2f}x)' for w, r in sorted(
                best.items())))


if __name__ == '__main__':
    main()
