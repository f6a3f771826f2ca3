"""Fleet learning through ROS: throughput with K worker processes against `cpo-ros train`.

Run: ROS_DOMAIN_ID=<free> .venv/bin/python bench/bench_fleet.py [--workers 1 2 4]
     [--num-envs 16] [--steps 50000] [--iterations 6] [--busy 0 1] [--model-only]

Prints, for each competing load (--busy N busy Python loops beside the run):
- training throughput (env steps per wall-clock second over whole iterations, the first two
  skipped: start-up and discovery) of `cpo-ros train` and of `cpo-ros bringup fleet_sim -p
  workers:=K` for each K, and each fleet's ratio to the direct trainer of the same run;
- the per-message costs measured here (a chunk's encode, decode and merge per sample, the
  policy message, the update) and from them a model of a fleet of H hosts x R robots: where it
  saturates (the learner's update, the learner's network link, or the hosts' sampling).
"""

import argparse
import csv
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

import numpy as np

BUSY_LOOP = 'while True:\n    pass\n'


def rates(progress: Path, skip: int = 2) -> tuple[float, float, float]:
    """Return (training env steps/s, mean update s, mean sample s) after `skip` iterations."""
    with open(progress) as f:
        rows = list(csv.DictReader(f))
    if len(rows) <= skip:
        raise RuntimeError(f'{progress}: only {len(rows)} iterations')
    first, last = rows[skip - 1], rows[-1]
    steps = float(last['env_steps']) - float(first['env_steps'])
    wall = float(last['wall_time_s']) - float(first['wall_time_s'])
    update = float(np.mean([float(r['update_time_s']) for r in rows[skip:]]))
    sample = float(np.mean([float(r['sample_time_s']) for r in rows[skip:]]))
    return steps / wall, update, sample


def direct(args, out: Path) -> tuple[float, float, float]:
    """Run `cpo-ros train` in a child process; return its rates."""
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'train', '--task', 'circle', '--iterations',
           str(args.iterations), '--steps-per-iteration', str(args.steps), '--num-envs',
           str(args.num_envs), '--seed', '0', '--out', str(out), '--quiet']
    subprocess.run(cmd, check=True, capture_output=True, timeout=1800)
    return rates(out / 'progress.csv')


def fleet_command(args, workers: int, out: Path, seed: int = 0) -> list[str]:
    """Return the `cpo-ros bringup fleet_sim -p workers:=K` command of a run into out."""
    return [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'fleet_sim', '--ros-args', '-p',
            f'workers:={workers}', '-p', f'num_envs:={args.num_envs}', '-p',
            f'steps_per_iteration:={args.steps}', '-p', f'seed:={seed}', '-p',
            f'learner:iterations:={args.iterations}', '-p', f'learner:out:={out}', '-p',
            'learner:resume:=false', '--log-level', 'warn']


def fleet(args, workers: int, out: Path) -> tuple[float, float, float]:
    """Run `cpo-ros bringup fleet_sim -p workers:=K`; return its rates."""
    subprocess.run(fleet_command(args, workers, out), check=True, capture_output=True,
                   timeout=1800)
    return rates(out / 'progress.csv')


def message_costs(args) -> dict[str, float]:
    """Measure the learner's per-sample and per-message costs on this machine [s, bytes]."""
    from cpo_ros.algo.networks import GaussianPolicy
    from cpo_ros.ros.conversions import arrays_to_msg, msg_to_arrays
    from cpo_ros.sim.make import vec_env
    from cpo_ros.training.fleet import merge_chunks
    from cpo_ros.training.worker import RolloutWorker

    env = vec_env('circle', args.num_envs, seed=0)
    steps = args.steps // args.num_envs // 4
    worker = RolloutWorker(args.num_envs, env.obs_dim, env.act_dim, steps, seed=0)
    policy = GaussianPolicy(env.obs_dim, env.act_dim)
    worker.use_policy(policy, 0)
    obs, chunk = env.reset(seed=0), None
    while chunk is None:
        obs, r, c, te, tr, info = env.step(worker.act(obs))
        worker.record(r, c, te, tr, info['final_obs'])
        chunk = worker.take_rollout(obs)
    chunk.update(executor_id=np.asarray('/worker_0/policy_executor'),
                 executor_session=np.asarray(1), chunk_seq=np.asarray(0),
                 samples=np.asarray(chunk['reward'].size))
    samples = chunk['reward'].size
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        msg = arrays_to_msg(chunk)
    t1 = time.perf_counter()
    for _ in range(reps):
        msg_to_arrays(msg)
    t2 = time.perf_counter()
    chunks = [dict(chunk, chunk_seq=np.asarray(i)) for i in range(4)]
    for _ in range(reps):
        merge_chunks(chunks)
    t3 = time.perf_counter()
    arrays = policy.to_arrays()
    arrays.update(version=np.asarray(1), session=np.asarray(1))
    policy_msg = arrays_to_msg(arrays)
    t4 = time.perf_counter()
    for _ in range(reps):
        msg_to_arrays(policy_msg)
    t5 = time.perf_counter()
    return {'bytes_per_sample': len(msg.data) / samples,
            'encode_s_per_sample': (t1 - t0) / reps / samples,
            'decode_s_per_sample': (t2 - t1) / reps / samples,
            'merge_s_per_sample': (t3 - t2) / reps / (4 * samples),
            'policy_bytes': float(len(policy_msg.data)),
            'policy_decode_s': (t5 - t4) / reps}


def model(costs: dict[str, float], update_s: float, host_rate: float, args,
          source: str = 'measured') -> None:
    """Print the throughput model of H hosts x R robots and where it saturates."""
    s = args.steps
    link = args.link_gbit * 1e9 / 8  # bytes/s into the learner
    print(f'\nmodel: {s} samples/iteration, update {update_s:.2f} s ({source}), one host of '
          f'{args.num_envs} robots samples {host_rate:.0f} env steps/s through ROS ({source}'
          f'{" with K = 1" if source == "measured" else ""}), learner link {args.link_gbit:g} '
          f'Gbit/s')
    print(f"{'hosts':>5} {'robots':>6} {'sample s':>9} {'network s':>10} {'decode+merge s':>15} "
          f"{'update s':>9} {'steps/s':>8}  bound")
    for hosts in (1, 2, 4, 8, 16):
        robots = hosts * args.robots_per_host
        sample = s / (host_rate * hosts * args.robots_per_host / args.num_envs)
        network = (costs['bytes_per_sample'] * s + costs['policy_bytes'] * hosts) / link
        learner = (costs['decode_s_per_sample'] + costs['merge_s_per_sample']) * s
        # Chunks arrive while others are still sampling, but the update waits for the last.
        total = sample + network + learner + update_s
        parts = {"hosts' sampling": sample, 'network': network, 'learner decode/merge': learner,
                 'learner update': update_s}
        bound = max(parts, key=parts.get)
        print(f'{hosts:>5} {robots:>6} {sample:9.3f} {network:10.3f} {learner:15.3f} '
              f'{update_s:9.2f} {s / total:8.0f}  {bound}')
    ceiling = s / (update_s + learner + costs['bytes_per_sample'] * s / link)
    print(f'ceiling with unlimited hosts: {ceiling:.0f} env steps/s (the update and the learner '
          f'alone). DDS discovery: 16 hosts x 3 processes + the learner = 49 participants '
          f'exchange endpoint data once at start-up (not per iteration); far beyond that a '
          f'discovery server or ROS_STATIC_PEERS keeps it bounded.')


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--num-envs', type=int, default=16)
    parser.add_argument('--steps', type=int, default=50_000)
    parser.add_argument('--iterations', type=int, default=6)
    parser.add_argument('--busy', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--robots-per-host', type=int, default=16)
    parser.add_argument('--link-gbit', type=float, default=1.0)
    parser.add_argument('--model-only', action='store_true',
                        help='measure the message costs and print the model (update time and '
                        'host rate from --update-s and --host-rate)')
    parser.add_argument('--update-s', type=float, default=1.0)
    parser.add_argument('--host-rate', type=float, default=30_000.0)
    args = parser.parse_args()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    costs = message_costs(args)
    print(f"chunk {costs['bytes_per_sample']:.1f} bytes/sample; encode "
          f"{costs['encode_s_per_sample'] * 1e9:.0f} ns, decode "
          f"{costs['decode_s_per_sample'] * 1e9:.0f} ns, merge "
          f"{costs['merge_s_per_sample'] * 1e9:.0f} ns per sample; policy "
          f"{costs['policy_bytes'] / 1e3:.1f} kB, decoded in "
          f"{costs['policy_decode_s'] * 1e3:.2f} ms")
    if args.model_only:
        model(costs, args.update_s, args.host_rate, args, source='given')
        return
    update_s, host_rate, source = args.update_s, args.host_rate, 'given'
    for busy_count in args.busy:
        busy = [subprocess.Popen([sys.executable, '-c', BUSY_LOOP]) for _ in range(busy_count)]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                d_rate, d_update, d_sample = direct(args, Path(tmp) / 'direct')
                results = {}
                for k in args.workers:
                    results[k] = fleet(args, k, Path(tmp) / f'fleet{k}')
            load = os.getloadavg()[0]
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
        print(f'\n{busy_count} busy process(es), load average {load:.2f}, {args.steps} samples '
              f'per iteration, {args.num_envs} robots per worker, {args.iterations} iterations '
              f'(first 2 skipped)')
        print(f'direct cpo-ros train:   {d_rate:8.0f} env steps/s (update {d_update:.2f} s, '
              f'sampling {d_sample:.2f} s per iteration)')
        for k, (rate, update, sample) in results.items():
            print(f'fleet_sim workers:={k}:  {rate:8.0f} env steps/s (update {update:.2f} s, '
                  f'waiting for samples {sample:.2f} s) = {rate / d_rate:.2f} x direct')
        if busy_count == 0:
            update_s = results[min(results)][1]
            one = results[min(results)]
            host_rate = args.steps / one[2]
            source = 'measured'
    model(costs, update_s, host_rate, args, source)


if __name__ == '__main__':
    main()
