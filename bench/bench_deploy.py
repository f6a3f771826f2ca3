"""Deployment figures: inference time, shield reaction, executor death to stop, lab policy.

Run: ROS_DOMAIN_ID=<free> ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST .venv/bin/python
bench/bench_deploy.py [--lab-iterations 8] [--lab-seconds 60] [--kills 5]. Prints
- p50/p99 of one inference step of an exported TorchScript policy on the CPU;
- p50/p99 from a violating pose (robot heading out of the safe area) to the shield's
  replacement cmd_vel (TwistStamped), measured by a probe around a safe_area_monitor process;
- time from SIGKILL of the deployed executor process (the robot at 1.2 m/s) to the shield's
  first zero cmd_vel and to the stand-in robot at rest (below 0.02 m/s), over several kills;
- a policy for the TurtleBot3-Burger-class profile, trained briefly with its domain
  randomisation, exported and deployed on the randomised stand-in for a while with the shield
  on (gate) and off (pass): exits from the safe area, shield interventions (takeovers from the
  policy) and replaced commands per minute.
"""

import argparse
import csv
import math
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

LAB = 'turtlebot3_burger'


def run(cmd: list[str], **kwargs) -> None:
    """Run a cpo-ros command, quietly, failing loudly."""
    subprocess.run([sys.executable, '-m', 'cpo_ros.cli', *cmd], check=True,
                   stdout=subprocess.DEVNULL, **kwargs)


def inference_times(policy_dir: Path, samples: int = 5000) -> np.ndarray:
    """Return seconds per single-observation inference of an exported policy."""
    import torch

    from cpo_ros.deploy.export import load_exported
    module, _meta = load_exported(policy_dir)
    torch.set_num_threads(1)
    obs = torch.zeros(1, 6)
    times = []
    with torch.no_grad():
        for i in range(samples + 100):
            t0 = time.perf_counter()
            module(obs).numpy()
            if i >= 100:
                times.append(time.perf_counter() - t0)
    return np.asarray(times)


class Probe:
    """An rclpy node spun on a thread."""

    def __init__(self, name: str) -> None:
        import rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        from rclpy.executors import SingleThreadedExecutor
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        threading.Thread(target=self._spin, daemon=True).start()

    def _spin(self) -> None:
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001 - shut down under us
            pass

    def close(self) -> None:
        import rclpy
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def start(args: list[str]) -> subprocess.Popen:
    """Start a node or bring-up process, its output discarded."""
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    """Stop a process with Ctrl-C, killing it after 15 s."""
    import signal
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def shield_reaction(samples: int = 300) -> np.ndarray:
    """Return seconds from a violating pose to the shield's replacement command (TwistStamped)."""
    from geometry_msgs.msg import TwistStamped
    from nav_msgs.msg import Odometry

    from cpo_ros.ros import qos
    from cpo_ros.ros.conversions import pose_twist_to_odometry

    # The probe plays the executor: the gate takes policy/cmd_vel from command_source only.
    monitor = start(['-m', 'cpo_ros.nodes.safe_area_monitor', '--ros-args', '-p',
                     'shield_mode:=gate', '-p', 'cmd_timeout_s:=5.0', '-p',
                     'pose_timeout_s:=5.0', '-p', 'gate_rate_hz:=1.0', '-p',
                     'command_source:=shield_probe'])
    probe = Probe('shield_probe')
    node = probe.node
    odom_pub = node.create_publisher(Odometry, 'odom', qos.CLI_DEFAULT)
    cmd_pub = node.create_publisher(TwistStamped, 'policy/cmd_vel', qos.CLI_DEFAULT)
    replaced = threading.Event()

    def on_cmd(msg: TwistStamped) -> None:
        if msg.twist.linear.x == 0.0 and msg.twist.angular.z != 0.0:
            replaced.set()
    node.create_subscription(TwistStamped, 'cmd_vel', on_cmd, qos.CLI_DEFAULT)

    def odom(pose):
        return pose_twist_to_odometry(np.asarray(pose), np.zeros(2),
                                      node.get_clock().now().to_msg(), 'odom', 'base_link')
    forward = TwistStamped()
    forward.twist.linear.x = 1.5
    times = []
    try:
        end = time.monotonic() + 60
        while (odom_pub.get_subscription_count() == 0
               or cmd_pub.get_subscription_count() == 0) and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(1.0)
        cmd_pub.publish(forward)
        for _ in range(samples):
            odom_pub.publish(odom([0.0, 0.0, math.pi / 2]))
            time.sleep(0.01)
            replaced.clear()
            violating = odom([2.2, 0.0, 0.0])
            t0 = time.perf_counter()
            odom_pub.publish(violating)
            if replaced.wait(1.0):
                times.append(time.perf_counter() - t0)
            cmd_pub.publish(forward)
            time.sleep(0.01)
    finally:
        stop(monitor)
        probe.close()
    return np.asarray(times)


def executor_death_to_stop(policy_dir: Path, kills: int) -> tuple[np.ndarray, np.ndarray]:
    """Return seconds from SIGKILL of the executor to a zero cmd_vel, and to the robot at rest."""
    from geometry_msgs.msg import TwistStamped
    from nav_msgs.msg import Odometry

    from cpo_ros.paths import config_file
    from cpo_ros.ros import qos

    params = ['--ros-args', '--params-file', str(config_file('deploy'))]
    robot = start(['-m', 'cpo_ros.nodes.sim_bridge', *params])
    # shield_mode pass: the robot is at full speed when the executor dies (in gate mode it
    # would be turning at the strip's edge); the stop on a stale command is the same. Each
    # kill would latch the e-stop (latch_on_source_loss) once the dead executor leaves the
    # graph; the next executor is started without an operator's release.
    monitor = start(['-m', 'cpo_ros.nodes.safe_area_monitor', *params, '-p',
                     'safe_area_monitor:shield_mode:=pass', '-p',
                     'safe_area_monitor:latch_on_source_loss:=false'])
    probe = Probe('death_probe')
    cmds: list[tuple[float, float, float]] = []
    speeds: list[tuple[float, float]] = []
    probe.node.create_subscription(
        TwistStamped, 'cmd_vel',
        lambda m: cmds.append((time.monotonic(), m.twist.linear.x, m.twist.angular.z)),
        qos.CLI_DEFAULT)
    probe.node.create_subscription(
        Odometry, 'odom',
        lambda m: speeds.append((time.monotonic(), abs(m.twist.twist.linear.x))), qos.SENSOR)
    to_zero, to_rest = [], []
    try:
        for _ in range(kills):
            executor = start(['-m', 'cpo_ros.nodes.policy_executor', '--deploy', *params,
                              '-p', f'policy_executor:policy_dir:={policy_dir}'])
            end = time.monotonic() + 60
            while time.monotonic() < end and not (
                    speeds and speeds[-1][1] > 0.5 and cmds and cmds[-1][1] > 0.0):
                time.sleep(0.02)
            t_kill = time.monotonic()
            executor.kill()
            executor.wait()
            end = t_kill + 10
            zero = rest = None
            while time.monotonic() < end and (zero is None or rest is None):
                if zero is None:
                    zero = next((t for t, v, w in cmds if t > t_kill and v == 0.0 and w == 0.0),
                                None)
                if rest is None:
                    rest = next((t for t, v in speeds if t > t_kill and v < 0.02), None)
                time.sleep(0.02)
            if zero is not None and rest is not None:
                to_zero.append(zero - t_kill)
                to_rest.append(rest - t_kill)
            time.sleep(1.0)
    finally:
        for proc in (monitor, robot):
            stop(proc)
        probe.close()
    return np.asarray(to_zero), np.asarray(to_rest)


def lab_deployment(policy_dir: Path, shield_mode: str, seconds: float) -> dict:
    """Deploy on the randomised stand-in; return exits, interventions and the minutes run."""
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from std_msgs.msg import Bool, Float32

    from cpo_ros.ros import qos
    stack = start(['-m', 'cpo_ros.cli', 'bringup', 'deploy', '--robot', LAB, '--stand-in',
                   '--ros-args', '-p', f'policy_executor:policy_dir:={policy_dir}', '-p',
                   f'safe_area_monitor:shield_mode:={shield_mode}'])
    probe = Probe('lab_probe')
    inside: list[bool] = []
    interventions = [0.0]
    speeds: list[float] = []
    takeovers = [0]

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if 'takeovers' in values:
                takeovers.append(int(values['takeovers']))
    probe.node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics,
                                   qos.CLI_DEFAULT)
    probe.node.create_subscription(Odometry, 'odom',
                                   lambda m: speeds.append(abs(m.twist.twist.linear.x)),
                                   qos.SENSOR)
    probe.node.create_subscription(Bool, 'safety/in_safe_area',
                                   lambda m: inside.append(m.data), qos.CLI_DEFAULT)
    probe.node.create_subscription(Float32, 'shield/interventions',
                                   lambda m: interventions.append(m.data), qos.CLI_DEFAULT)
    try:
        end = time.monotonic() + 60
        while not inside and time.monotonic() < end:
            time.sleep(0.1)
        inside.clear()
        speeds.clear()
        first, first_takeovers = interventions[-1], takeovers[-1]
        time.sleep(seconds)
        samples = list(inside)
        exits = sum(1 for a, b in zip(samples, samples[1:], strict=False) if a and not b)
        outside = sum(1 for s in samples if not s) / max(1, len(samples))
        return {'exits': exits, 'outside_fraction': outside,
                'interventions_per_min': (interventions[-1] - first) / (seconds / 60.0),
                'takeovers_per_min': (takeovers[-1] - first_takeovers) / (seconds / 60.0),
                'samples': len(samples), 'mean_speed': float(np.mean(speeds or [0.0]))}
    finally:
        stop(stack)
        probe.close()


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--lab-iterations', type=int, default=30)
    parser.add_argument('--lab-steps', type=int, default=12000)
    parser.add_argument('--lab-seconds', type=float, default=120.0)
    parser.add_argument('--kills', type=int, default=5)
    parser.add_argument('--only-lab', action='store_true', help='skip the first three figures')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # A point-robot policy made to drive straight at 1.2 m/s: it always needs the shield.
        if not args.only_lab:
            run(['train', '--iterations', '1', '--steps-per-iteration', '400', '--num-envs', '4',
                 '--out', str(tmp / 'point'), '--quiet'])
            run(['export', '--checkpoint', str(tmp / 'point' / 'checkpoints' / 'last.pt'),
                 '--out', str(tmp / 'point_policy')])
            inf = inference_times(tmp / 'point_policy') * 1e3
            print(f'exported policy inference, 1 observation, CPU, 1 thread: p50 '
                  f'{np.percentile(inf, 50):.3f} ms, p99 {np.percentile(inf, 99):.3f} ms',
                  flush=True)
            react = shield_reaction() * 1e3
            if not react.size:
                raise SystemExit('shield reaction: no replacement command came (does the gate '
                                 "take the probe's commands? see command_source)")
            print(f'shield reaction, violating pose -> replacement cmd_vel (TwistStamped, '
                  f'{react.size} samples): p50 {np.percentile(react, 50):.3f} ms, p99 '
                  f'{np.percentile(react, 99):.3f} ms', flush=True)
            fast = _straight_policy(tmp)
            zero, rest = executor_death_to_stop(fast, args.kills)
            if zero.size:
                print(f'executor killed (SIGKILL, {zero.size} kills) -> shield zero cmd_vel: '
                      f'median {np.median(zero):.2f} s, max {zero.max():.2f} s; -> stand-in at '
                      f'rest (< 0.02 m/s): median {np.median(rest):.2f} s, max {rest.max():.2f} s '
                      f'(cmd_timeout_s 0.5, then braking from 1.2 m/s)', flush=True)
            else:
                print('executor death to stop: no kill measured', flush=True)
        run(['train', '--robot', LAB, '--iterations', str(args.lab_iterations),
             '--steps-per-iteration', str(args.lab_steps), '--num-envs', '8', '--out',
             str(tmp / 'lab'), '--quiet'])
        run(['export', '--checkpoint', str(tmp / 'lab' / 'checkpoints' / 'last.pt'), '--out',
             str(tmp / 'lab_policy')])
        with open(tmp / 'lab' / 'progress.csv') as f:
            last = list(csv.DictReader(f))[-1]
        print(f'lab policy ({LAB}, {args.lab_iterations} x {args.lab_steps} samples, domain '
              f"randomisation on): last iteration return {float(last['episode_return']):.2f}, "
              f"cost {float(last['episode_cost']):.2f} per 150-step episode (limit "
              f"{float(last['cost_limit']):g})", flush=True)
        for mode in ('gate', 'pass'):
            r = lab_deployment(tmp / 'lab_policy', mode, args.lab_seconds)
            print(f'lab deployment on the randomised stand-in, shield {mode:4s} '
                  f'({args.lab_seconds:.0f} s, {r["samples"]} poses): exits {r["exits"]}, '
                  f'time outside {100 * r["outside_fraction"]:.1f}%, interventions (takeovers '
                  f'from the policy) {r["takeovers_per_min"]:.1f}/min, replaced commands '
                  f'{r["interventions_per_min"]:.0f}/min, mean speed {r["mean_speed"]:.3f} m/s',
                  flush=True)


def _straight_policy(tmp: Path) -> Path:
    """Export a point-robot policy whose mean action is 1.2 m/s straight on (for the kills)."""
    import torch

    from cpo_ros.training.checkpoint import load_checkpoint, save_checkpoint
    ckpt = tmp / 'point' / 'checkpoints' / 'last.pt'
    payload = load_checkpoint(ckpt)
    policy = payload['algorithm']['policy']
    policy['mean_net.4.weight'] = torch.zeros_like(policy['mean_net.4.weight'])
    policy['mean_net.4.bias'] = torch.tensor([0.8, 0.0])
    payload.pop('format')
    save_checkpoint(ckpt, payload)
    run(['export', '--checkpoint', str(ckpt), '--out', str(tmp / 'straight')])
    return tmp / 'straight'


if __name__ == '__main__':
    main()
