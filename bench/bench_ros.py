"""Through-ROS training throughput against the direct trainer, and the executor's latency.

Run: .venv/bin/python bench/bench_ros.py [--num-envs 16] [--steps 50000] [--iterations 5]
(set ROS_DOMAIN_ID to a free domain). Prints
- the training throughput (env steps per wall-clock second of whole iterations: sampling and
  update) of `cpo-ros train` and of `cpo-ros bringup circle_sim` (lock-step, same settings,
  same seed) and their ratio, and the same for sampling alone;
- the policy executor's state -> command round trip through DDS (p50, p99): a probe publishes
  `batch/state` and times the `batch/cmd_vel` answer, so the figure includes two DDS hops.
"""

import argparse
import csv
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def curve(progress: Path) -> list[tuple[float, float]]:
    """Return (episode return, episode cost) per iteration."""
    with open(progress) as f:
        return [(float(r['episode_return']), float(r['episode_cost']))
                for r in csv.DictReader(f)]


def rates(progress: Path) -> tuple[float, float, float]:
    """Return (training env steps/s, sampling env steps/s, mean update seconds).

    The first iteration (imports, discovery, warm-up) is skipped.
    """
    with open(progress) as f:
        rows = list(csv.DictReader(f))[1:]
    per_iter = float(rows[0]['env_steps']) / float(rows[0]['iteration'])
    sample_s = np.mean([float(r['sample_time_s']) for r in rows])
    train_rate = float(np.mean([float(r['steps_per_s']) for r in rows]))
    return train_rate, per_iter / sample_s, float(np.mean([float(r['update_time_s'])
                                                          for r in rows]))


def direct(args, out: Path) -> tuple[float, float, float]:
    """Train without ROS; return its rates and update time."""
    from cpo_ros.training.config import TrainConfig
    from cpo_ros.training.trainer import train
    train(TrainConfig(task='circle', iterations=args.iterations,
                      steps_per_iteration=args.steps, num_envs=args.num_envs, seed=0,
                      out=str(out)), show_progress=False)
    return rates(out / 'progress.csv')


def through_ros(args, out: Path) -> tuple[float, float, float]:
    """Train with `cpo-ros bringup circle_sim`; return its rates and update time."""
    cmd = [sys.executable, '-m', 'cpo_ros.cli', 'bringup', 'circle_sim', '--ros-args',
           '-p', f'num_envs:={args.num_envs}', '-p', f'steps_per_iteration:={args.steps}',
           '-p', 'seed:=0', '-p', f'learner:iterations:={args.iterations}',
           '-p', f'learner:out:={out}']
    subprocess.run(cmd, check=True, capture_output=True, timeout=1200)
    return rates(out / 'progress.csv')


def latency(args) -> np.ndarray:
    """Return state -> command round-trip times [s] of a policy_executor process."""
    import rclpy
    from std_msgs.msg import Float32MultiArray, UInt8MultiArray

    from cpo_ros.algo.networks import GaussianPolicy
    from cpo_ros.ros import qos
    from cpo_ros.ros.conversions import arrays_to_msg, decode_batch, encode_batch
    from cpo_ros.training.announcements import policy_digest
    from cpo_ros.training.fleet import ChunkGatherer
    from cpo_ros.wire import CMD_FIELDS, STATE_FIELDS

    executor = subprocess.Popen(
        [sys.executable, '-m', 'cpo_ros.nodes.policy_executor', '--ros-args', '-p',
         f'num_envs:={args.num_envs}', '-p', 'steps_per_iteration:=100000000'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    node = rclpy.create_node('latency_probe')
    answered = threading.Event()
    got: dict[str, int] = {}

    def on_cmd(msg):
        got['seq'] = decode_batch(msg, CMD_FIELDS)[1]
        answered.set()
    node.create_subscription(Float32MultiArray, 'batch/cmd_vel', on_cmd, qos.LOCKSTEP)
    state_pub = node.create_publisher(Float32MultiArray, 'batch/state', qos.LOCKSTEP)
    policy_pub = node.create_publisher(UInt8MultiArray, 'cpo/policy', qos.LATCHED)
    status_pub = node.create_publisher(UInt8MultiArray, 'cpo/iteration', qos.LATCHED)
    from cpo_ros.ros.params import task_identity
    from cpo_ros.tasks.registry import load_task_class

    arrays = GaussianPolicy(6, 2).to_arrays()
    circle = load_task_class('circle')  # the executor's task: circle with its defaults
    arrays.update(version=np.asarray(0), session=np.asarray(1),  # wire.POLICY_FIELDS
                  task=np.asarray(task_identity(circle(circle.Params(), 1))))
    policy_msg = arrays_to_msg(arrays)
    # As the learner does: the status announcing the policy (its digest), then the policy.
    status = ChunkGatherer(100_000_000, 6, 2).status()
    status.update(session=np.asarray(1),
                  policy_digest=np.frombuffer(policy_digest(policy_msg.data), np.uint8))
    status_pub.publish(arrays_to_msg(status))
    policy_pub.publish(policy_msg)
    spin = threading.Thread(target=rclpy.spin, args=(node,), daemon=True)
    spin.start()
    state = np.zeros((args.num_envs, len(STATE_FIELDS) - 1), np.float32)
    times = []
    try:
        end = time.monotonic() + 60
        while state_pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.1)
        for seq in range(args.latency_samples + 200):
            answered.clear()
            t0 = time.perf_counter()
            state_pub.publish(encode_batch(state, STATE_FIELDS, seq))
            if not answered.wait(2.0 if seq else 30.0) or got.get('seq') != seq:
                continue
            if seq >= 200:  # warm-up
                times.append(time.perf_counter() - t0)
    finally:
        executor.terminate()
        executor.wait()
        # The spinning thread ends with the context, before its node goes: a thread still
        # spinning at exit aborted the process ('terminate called without an active
        # exception').
        rclpy.shutdown()
        spin.join(timeout=10)
        node.destroy_node()
    return np.asarray(times)


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--num-envs', type=int, default=16)
    parser.add_argument('--steps', type=int, default=50_000)
    parser.add_argument('--iterations', type=int, default=5)
    parser.add_argument('--latency-samples', type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    with tempfile.TemporaryDirectory() as tmp:
        d_train, d_rate, d_update = direct(args, Path(tmp) / 'direct')
        r_train, r_rate, r_update = through_ros(args, Path(tmp) / 'ros')
        d_curve = curve(Path(tmp) / 'direct' / 'progress.csv')
        r_curve = curve(Path(tmp) / 'ros' / 'progress.csv')
    print('learning curves, same seed and budget (CPO): iteration, direct return/cost, '
          'through-ROS return/cost')
    for i, ((dr, dc), (rr, rc)) in enumerate(zip(d_curve, r_curve, strict=True), start=1):
        if i % max(1, len(d_curve) // 10) == 0 or i == len(d_curve):
            print(f'{i:4d}  {dr:8.2f} {dc:6.2f}   {rr:8.2f} {rc:6.2f}')
    print(f'{args.num_envs} envs, {args.steps} samples/iteration, {args.iterations} iterations '
          f'(first skipped)')
    print(f'direct  cpo-ros train:   training {d_train:8.0f} env steps/s (sampling '
          f'{d_rate:6.0f} env steps/s, update {d_update:.2f} s)')
    print(f'through ROS (bringup):   training {r_train:8.0f} env steps/s (sampling '
          f'{r_rate:6.0f} env steps/s, update {r_update:.2f} s)')
    print(f'ratio through-ROS / direct: training throughput {r_train / d_train:.2f} (target '
          f'>= 0.6), sampling alone {r_rate / d_rate:.2f}')
    rtt = latency(args) * 1e3
    if rtt.size:
        print(f'executor batch/state -> batch/cmd_vel round trip ({args.num_envs} robots, '
              f'{rtt.size} samples): p50 {np.percentile(rtt, 50):.3f} ms, '
              f'p99 {np.percentile(rtt, 99):.3f} ms')
    else:
        print('executor latency: no answers received')


if __name__ == '__main__':
    main()
