"""CPU per env step of the lock-step loop's two nodes, their callbacks called directly.

Run: .venv/bin/python bench/bench_lockstep_cpu.py [--steps 20000] [--repeats 5]
     [--num-envs 16] [--profile FILE] [--checkout DIR]

The sim bridge and the policy executor of `cpo-ros bringup circle_sim` (the real node classes,
built with config/circle_sim.yaml in one rclpy context) answer each other's messages without
DDS in between: the executor's `batch/state` callback gets the bridge's last state message,
the bridge's `batch/cmd_vel` callback the executor's last command, and a new policy version
goes to the executor after each rollout chunk, as the learner would send it. The publishers
still publish (rcl serialises; no subscriber reads). So the figures are the Python and rcl
work each node does per step (decoding and checking the message, MuJoCo and the task, the
policy, encoding, telemetry, the chunk's .npz), free of DDS delivery and of scheduling: a
machine shared with other work changes them far less than a wall-clock rate.

Prints the CPU milliseconds (time.thread_time) per 1,000 env steps of each node's lock-step
callback, minimum and median over the repeats. --profile FILE writes a cProfile of one more
repeat, timed by thread CPU time. --checkout DIR measures another checkout of the project with
this interpreter (PYTHONPATH=DIR), e.g. a `git worktree add /tmp/old <commit>`.
"""

import argparse
import os
from pathlib import Path
import subprocess
import sys
import time

HERE = Path(__file__).resolve()


def run(args: argparse.Namespace) -> list[tuple[float, float]]:
    """Return (bridge, executor) CPU seconds per env step of each repeat (and profile one)."""
    import numpy as np
    import rclpy

    from cpo_ros.nodes.policy_executor import PolicyExecutor
    from cpo_ros.nodes.sim_bridge import SimBridge
    from cpo_ros.ros.bringup import ros_arguments
    try:
        from cpo_ros.algo.networks import GaussianPolicy
    except ImportError:  # checkouts before the algo/ package
        from cpo_ros.core.networks import GaussianPolicy

    ros = ros_arguments('circle_sim', ['--ros-args', '-p', f'num_envs:={args.num_envs}', '-p',
                                       f'steps_per_iteration:={args.chunk}'], True)
    context = rclpy.Context()
    rclpy.init(args=ros, context=context)
    bridge = SimBridge(context=context)
    executor = PolicyExecutor(context=context)
    box: dict[str, object] = {}
    bridge.state_pub.publish = lambda msg: box.__setitem__('state', msg)
    executor.cmd_pub.publish = lambda msg: box.__setitem__('cmd', msg)
    rollout_pub = executor.chunks._pub  # the executor's cpo/rollout publisher
    real_rollout_publish = rollout_pub.publish

    def rollout_publish(msg):
        box['rollout'] = msg
        real_rollout_publish(msg)
    rollout_pub.publish = rollout_publish
    obs_dim = executor.worker.obs_dim
    policy = GaussianPolicy(obs_dim, 2)
    state = {'version': 0}

    def publish_policy() -> None:
        arrays = policy.to_arrays()
        arrays.update(version=np.asarray(state['version'], np.int64),
                      session=np.asarray(1, np.int64))
        # As LearnerInput hands on an announced, checked policy.
        executor._policy_loaded(executor.worker.set_policy(arrays))
        state['version'] += 1
    publish_policy()
    bridge._publish_state()
    clock = time.thread_time

    def loop(steps: int) -> tuple[float, float]:
        t_bridge = t_exec = 0.0
        n = 0
        while n < steps:
            t0 = clock()
            executor._on_state(box.pop('state'))
            t1 = clock()
            t_exec += t1 - t0
            if 'rollout' in box:  # the learner's answer: a new version
                box.pop('rollout')
                publish_policy()
            if 'cmd' not in box:
                raise RuntimeError('the executor did not answer')
            t0 = clock()
            bridge._on_batch_cmd(box.pop('cmd'))
            t_bridge += clock() - t0
            n += args.num_envs
        return t_bridge / n, t_exec / n

    loop(args.chunk)  # warm-up: one chunk
    results = [loop(args.steps) for _ in range(args.repeats)]
    if args.profile:
        import cProfile
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        loop(args.steps)
        profiler.disable()
        profiler.dump_stats(args.profile)
    bridge.destroy_node()
    executor.destroy_node()
    rclpy.try_shutdown(context=context)
    return results


def run_dds(args: argparse.Namespace) -> list[tuple[float, float, float]]:
    """Return (env steps per wall second, main-thread CPU s per step, process CPU s per step).

    The bring-up's sim bridge, safe-area monitor and policy executor spin in one
    EventsExecutor as `cpo-ros bringup circle_sim` spins them, their messages through DDS; a
    stand-in learner node answers each rollout chunk with a new policy version at once.
    """
    import numpy as np
    import rclpy
    from rclpy.experimental import EventsExecutor
    from rclpy.task import Future
    from std_msgs.msg import UInt8MultiArray

    from cpo_ros.nodes.policy_executor import PolicyExecutor
    from cpo_ros.nodes.safe_area_monitor import SafeAreaMonitor
    from cpo_ros.nodes.sim_bridge import SimBridge
    from cpo_ros.ros import qos
    from cpo_ros.ros.bringup import ros_arguments
    from cpo_ros.ros.conversions import arrays_to_msg
    try:
        from cpo_ros.algo.networks import GaussianPolicy
    except ImportError:  # checkouts before the algo/ package
        from cpo_ros.core.networks import GaussianPolicy

    ros = ros_arguments('circle_sim', ['--ros-args', '-p', f'num_envs:={args.num_envs}', '-p',
                                       f'steps_per_iteration:={args.chunk}'], True)
    context = rclpy.Context()
    rclpy.init(args=ros, context=context)
    nodes = [SimBridge(context=context), SafeAreaMonitor(context=context),
             PolicyExecutor(context=context)]
    bridge, executor = nodes[0], nodes[2]
    learner = rclpy.create_node('learner_stand_in', context=context)
    policy_pub = learner.create_publisher(UInt8MultiArray, 'cpo/policy', qos.LATCHED)
    status_pub = learner.create_publisher(UInt8MultiArray, 'cpo/iteration', qos.LATCHED)
    from cpo_ros.training.announcements import policy_digest
    from cpo_ros.training.fleet import ChunkGatherer
    obs_dim = executor.worker.obs_dim
    policy = GaussianPolicy(obs_dim, 2)
    version = [0]

    def publish_policy(_msg=None) -> None:
        arrays = policy.to_arrays()
        arrays.update(version=np.asarray(version[0], np.int64), session=np.asarray(1, np.int64))
        task = getattr(getattr(executor, 'learner', None), 'task', None)
        if task is not None:  # the executor's own task identity (wire.POLICY_FIELDS)
            arrays['task'] = np.asarray(task)
        msg = arrays_to_msg(arrays)
        # As the learner does: the status announcing the policy (its digest), then the policy.
        status = ChunkGatherer(args.chunk * args.num_envs, obs_dim, 2).status()
        status.update(version=np.asarray(version[0]), session=np.asarray(1),
                      policy_digest=np.frombuffer(policy_digest(msg.data), np.uint8))
        status_pub.publish(arrays_to_msg(status))
        policy_pub.publish(msg)
        version[0] += 1
    learner.create_subscription(UInt8MultiArray, 'cpo/rollout', publish_policy, qos.ROLLOUT)
    spinner = EventsExecutor(context=context)
    for node in (*nodes, learner):
        spinner.add_node(node)
    publish_policy()

    def steps() -> int:
        return bridge.seq * args.num_envs  # one bridge step per answered state

    goal: dict[str, object] = {}
    publish_state = bridge._publish_state

    def publish_state_and_check() -> None:
        publish_state()
        if steps() >= goal['target']:
            goal['done'].set_result(True)
    bridge._publish_state = publish_state_and_check  # its callback calls it after each step

    def spin_until(target: int) -> None:
        # As run_nodes spins: in the C++ event loop (the EventsExecutor returns from
        # spin_until_future_complete once the future is done, not at its timeout while busy).
        goal.update(target=target, done=Future())
        while steps() < target:
            spinner.spin_until_future_complete(goal['done'], timeout_sec=1.0)
    spin_until(args.chunk)  # warm-up: discovery and one chunk
    results = []
    for _ in range(args.repeats):
        start, wall, cpu, proc = steps(), time.perf_counter(), time.thread_time(), \
            time.process_time()
        spin_until(start + args.steps)
        n = steps() - start
        results.append((n / (time.perf_counter() - wall), (time.thread_time() - cpu) / n,
                        (time.process_time() - proc) / n))
    spinner.shutdown()
    for node in (*nodes, learner):
        node.destroy_node()
    rclpy.try_shutdown(context=context)
    return results


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--steps', type=int, default=20_000, help='env steps per repeat')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--num-envs', type=int, default=16)
    parser.add_argument('--chunk', type=int, default=5_000,
                        help='samples per rollout chunk (steps_per_iteration)')
    parser.add_argument('--dds', action='store_true',
                        help='spin the nodes with their messages through DDS (wall rate too)')
    parser.add_argument('--profile', default='')
    parser.add_argument('--checkout', default='')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.checkout and not args.child:
        env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
            p for p in (str(Path(args.checkout).resolve()), os.environ.get('PYTHONPATH')) if p)}
        argv = [a for a in sys.argv[1:]]
        if args.profile:
            argv[argv.index(args.profile)] = str(Path(args.profile).resolve())
        raise SystemExit(subprocess.run([sys.executable, str(HERE), '--child', *argv],
                                        env=env, cwd=args.checkout).returncode)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    load = os.getloadavg()[0]
    if args.dds:
        report_dds(args, run_dds(args), load)
        return
    results = run(args)
    import cpo_ros
    print(f'lock-step loop without DDS: {args.num_envs} robots, {args.steps} env steps per '
          f'repeat, {args.repeats} repeats, rollout chunks of {args.chunk} samples; code '
          f'{Path(cpo_ros.__file__).parent.parent}; load average {load:.2f} -> '
          f'{os.getloadavg()[0]:.2f}')
    print('CPU ms per 1,000 env steps      min   median   (each repeat)')
    for i, name in enumerate(('sim_bridge batch/cmd_vel', 'policy_executor batch/state')):
        values = sorted(r[i] * 1e6 for r in results)
        print(f'  {name:28s} {values[0]:6.2f}  {values[len(values) // 2]:6.2f}   '
              f'({", ".join(f"{r[i] * 1e6:.2f}" for r in results)})')
    total = sorted(sum(r) * 1e6 for r in results)
    print(f'  {"both":28s} {total[0]:6.2f}  {total[len(total) // 2]:6.2f}')


def report_dds(args: argparse.Namespace, results: list[tuple[float, float, float]],
               load: float) -> None:
    """Print the through-DDS figures."""
    import cpo_ros
    print(f'lock-step loop through DDS (sim_bridge, safe_area_monitor, policy_executor in one '
          f'EventsExecutor): {args.num_envs} robots, {args.steps} env steps per repeat, '
          f'{args.repeats} repeats, chunks of {args.chunk}; code '
          f'{Path(cpo_ros.__file__).parent.parent}; load average {load:.2f} -> '
          f'{os.getloadavg()[0]:.2f}')
    for i, (label, scale, unit) in enumerate((('env steps/s', 1.0, '.0f'),
                                              ('main-thread CPU ms per 1,000 steps', 1e6, '.2f'),
                                              ('process CPU ms per 1,000 steps', 1e6, '.2f'))):
        values = sorted(r[i] * scale for r in results)
        best = values[-1] if i == 0 else values[0]
        print(f'  {label:36s} best {format(best, unit)}  median '
              f'{format(values[len(values) // 2], unit)}  '
              f'({", ".join(format(r[i] * scale, unit) for r in results)})')


if __name__ == '__main__':
    main()
