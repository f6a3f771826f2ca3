"""Deployment figures: exported-policy inference time, and the shield's reaction time.

Run: .venv/bin/python bench/bench_deploy.py (set ROS_DOMAIN_ID to a free domain). Prints
- p50/p99 of one inference step of an exported TorchScript policy on the CPU;
- p50/p99 from a violating odometry message (robot heading out of the safe area) to the
  shield's replacement cmd_vel, measured by a probe node around a safe_area_monitor process.
"""

import math
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def inference_times(samples: int = 5000) -> np.ndarray:
    """Return seconds per single-observation inference of an exported policy."""
    import torch

    from cpo_ros.core.export import load_exported
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'train', '--iterations', '1',
                        '--steps-per-iteration', '400', '--num-envs', '4', '--out', tmp,
                        '--quiet'], check=True)
        subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'export', '--checkpoint',
                        f'{tmp}/checkpoints/last.pt', '--out', f'{tmp}/policy'], check=True,
                       capture_output=True)
        module, _meta = load_exported(f'{tmp}/policy')
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


def shield_reaction(samples: int = 300) -> np.ndarray:
    """Return seconds from a violating odom message to the shield's replacement command."""
    from geometry_msgs.msg import TwistStamped
    from nav_msgs.msg import Odometry
    import rclpy

    from cpo_ros.ros import qos
    from cpo_ros.ros.conversions import pose_twist_to_odometry

    monitor = subprocess.Popen(
        [sys.executable, '-m', 'cpo_ros.nodes.safe_area_monitor', '--ros-args', '-p',
         'shield_mode:=gate', '-p', 'cmd_timeout_s:=5.0', '-p', 'odom_timeout_s:=5.0',
         '-p', 'gate_rate_hz:=1.0'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    node = rclpy.create_node('shield_probe')
    odom_pub = node.create_publisher(Odometry, 'odom', qos.SENSOR)
    cmd_pub = node.create_publisher(TwistStamped, 'policy/cmd_vel', qos.CLI_DEFAULT)
    replaced = threading.Event()

    def on_cmd(msg: TwistStamped) -> None:
        if msg.twist.linear.x == 0.0 and msg.twist.angular.z != 0.0:
            replaced.set()
    node.create_subscription(TwistStamped, 'cmd_vel', on_cmd, qos.CLI_DEFAULT)
    threading.Thread(target=rclpy.spin, args=(node,), daemon=True).start()
    stamp = node.get_clock().now().to_msg()
    safe = pose_twist_to_odometry(np.array([0.0, 0.0, math.pi / 2]), np.zeros(2), stamp,
                                  'odom', 'base_link')
    out = pose_twist_to_odometry(np.array([2.2, 0.0, 0.0]), np.zeros(2), stamp, 'odom',
                                 'base_link')
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
            odom_pub.publish(safe)
            time.sleep(0.01)
            replaced.clear()
            t0 = time.perf_counter()
            odom_pub.publish(out)
            if replaced.wait(1.0):
                times.append(time.perf_counter() - t0)
            cmd_pub.publish(forward)
            time.sleep(0.01)
    finally:
        monitor.terminate()
        monitor.wait()
        node.destroy_node()
        rclpy.shutdown()
    return np.asarray(times)


def main() -> None:
    """Measure and print."""
    inf = inference_times() * 1e3
    print(f'exported policy inference, 1 observation, CPU, 1 thread: p50 '
          f'{np.percentile(inf, 50):.3f} ms, p99 {np.percentile(inf, 99):.3f} ms')
    react = shield_reaction() * 1e3
    print(f'shield reaction, violating odom -> replacement cmd_vel ({react.size} samples): '
          f'p50 {np.percentile(react, 50):.3f} ms, p99 {np.percentile(react, 99):.3f} ms')


if __name__ == '__main__':
    main()
