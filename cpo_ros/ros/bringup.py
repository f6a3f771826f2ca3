"""`cpo-ros bringup <name>`: the nodes of launch/<name>.launch.py in one process.

Manual composition (ros2/examples rclpy/executors composed.py): every node class is built in
this process with the same config/<name>.yaml the launch file passes, and one executor spins
them. Nodes never spin themselves. A node with a `done` event (the learner) ends the bring-up
when it sets it.
"""

import signal
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from cpo_ros.core.checkpoint import CheckpointError
from cpo_ros.paths import config_file
from cpo_ros.ros.graph import graph


def ros_arguments(name: str, argv: list[str], use_sim_time: bool) -> list[str]:
    """Return rclpy arguments: the bring-up's parameter file, then the user's ROS arguments."""
    params = config_file(name)
    if not params.is_file():
        raise ValueError(f'bring-up {name!r} has no parameter file {params}')
    user = list(argv)
    if user and user[0] == '--':
        user = user[1:]
    if user and user[0] != '--ros-args':
        user = ['--ros-args', *user]
    # The launch files' use_sim_time default; the user's -p use_sim_time:=... comes later.
    sim_time = 'true' if use_sim_time else 'false'
    return ['cpo-ros', '--ros-args', '--params-file', str(params), '-p',
            f'use_sim_time:={sim_time}', *user]


def bringup(name: str, argv: list[str]) -> int:
    """Start the nodes of bring-up `name`; return the process exit code."""
    spec = graph(name)
    entries = spec.nodes
    args = ros_arguments(name, argv, spec.use_sim_time)
    context = rclpy.Context()
    rclpy.init(args=args, context=context)
    nodes = []
    # Single-threaded: the cheapest dispatch for the lock-step loop; the learner's update runs
    # on its own worker thread, so no callback waits for it.
    executor = SingleThreadedExecutor(context=context)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for entry in entries:
            node = entry.load()(context=context)
            nodes.append(node)
            executor.add_node(node)
        done_events = [node.done for node, entry in zip(nodes, entries, strict=True)
                       if entry.ends_bringup]
        while context.ok() and not stop.is_set() and not any(e.is_set() for e in done_events):
            executor.spin_once(timeout_sec=0.1)
        return 0
    except (ValueError, CheckpointError) as exc:
        # A bad parameter (named, with its allowed range) or an unusable checkpoint.
        print(f'cpo-ros bringup {name}: error: {exc}', flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        executor.shutdown(timeout_sec=1.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
