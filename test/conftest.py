"""Shared fixtures: a private DDS domain per test, node processes, an in-process probe node."""

import itertools
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / 'config' / 'circle_sim.yaml'
_domains = itertools.count()


def pytest_configure(config):
    config.addinivalue_line('markers', 'linter: style and packaging checks')


def _domain_block() -> tuple[int, int]:
    """Return the (first, count) DDS domains this test run may use, all within 1..100.

    Domains above 101 can collide with ephemeral ports on Linux. CPO_ROS_TEST_DOMAINS=lo-hi
    gives runs side by side disjoint blocks; otherwise a block of 10 is picked from the
    run's ROS_DOMAIN_ID (or its pid).
    """
    spec = os.environ.get('CPO_ROS_TEST_DOMAINS')
    if spec:
        lo, hi = (int(v) for v in spec.split('-'))
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f'CPO_ROS_TEST_DOMAINS={spec!r}: need lo-hi within 1-100')
        return lo, hi - lo + 1
    base = int(os.environ.get('ROS_DOMAIN_ID', os.getpid()))
    return 1 + (base % 10) * 10, 10


@pytest.fixture
def domain_id():
    """Return a DDS domain no other test (or test run) on this machine uses at the same time."""
    first, count = _domain_block()
    return first + next(_domains) % count


@pytest.fixture
def ros_env(domain_id):
    """Return the environment for node processes: own domain, discovery on this machine."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', PYTHONUNBUFFERED='1')
    return env


class NodeProcess:
    """A node (or bring-up) in its own process, its output collected on a thread."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=REPO)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return ''.join(self.lines)

    def wait_for_output(self, text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.output:
                return True
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                return text in self.output
            time.sleep(0.05)
        return False

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode


@pytest.fixture
def start_node(ros_env):
    """Start nodes as `python -m cpo_ros.nodes.<name> --ros-args --params-file ...`."""
    started: list[NodeProcess] = []

    def start(name: str, *params: str, config: Path = CONFIG) -> NodeProcess:
        cmd = [sys.executable, '-m', f'cpo_ros.nodes.{name}', '--ros-args', '--params-file',
               str(config)]
        for p in params:
            # Node-qualified: the file's "/**/<node>" keys outrank a bare -p.
            cmd += ['-p', f'{name}:{p}']
        proc = NodeProcess(cmd, ros_env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def probe(domain_id):
    """Return an rclpy node in the test's domain, spun on a background thread."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node('test_probe', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=_spin, args=(executor, context), daemon=True)
    thread.start()
    yield node
    executor.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    thread.join(timeout=5)


def _spin(executor, context):
    try:
        while context.ok():
            executor.spin_once(timeout_sec=0.05)
    except Exception:  # noqa: BLE001 - the context shut down under us at teardown
        pass


def wait_until(predicate, timeout: float, period: float = 0.05) -> bool:
    """Poll predicate until it is true or timeout seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(period)
    return predicate()


@pytest.fixture(scope='session')
def unsafe_policy(tmp_path_factory):
    """Export a policy that drives fast on a wide arc: it leaves the strip within seconds."""
    import torch

    from cpo_ros.training.checkpoint import load_checkpoint, save_checkpoint
    run = tmp_path_factory.mktemp('unsafe')
    subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'train', '--iterations', '1',
                    '--steps-per-iteration', '400', '--num-envs', '4', '--out', str(run),
                    '--quiet'], check=True, timeout=300)
    ckpt = run / 'checkpoints' / 'last.pt'
    payload = load_checkpoint(ckpt)
    policy = payload['algorithm']['policy']
    policy['mean_net.4.weight'] = torch.zeros_like(policy['mean_net.4.weight'])
    policy['mean_net.4.bias'] = torch.tensor([0.8, 0.1])  # 1.2 m/s, 0.2 rad/s
    payload.pop('format')
    save_checkpoint(ckpt, payload)
    subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'export', '--checkpoint', str(ckpt),
                    '--out', str(run / 'policy')], check=True, timeout=300)
    return run / 'policy'


def circle_rollout(algo, steps: int = 200, num_envs: int = 8, episode: int = 20, seed: int = 0):
    """Return one rollout of algo's policy on Point-Circle (steps per env, episodes of episode)."""
    from cpo_ros.sim.make import vec_env
    from cpo_ros.training.worker import RolloutWorker
    env = vec_env('circle', num_envs, seed=seed, max_episode_steps=episode)
    worker = RolloutWorker(num_envs, env.obs_dim, env.act_dim, steps, seed=seed)
    worker.use_policy(algo.policy, algo.version)
    obs, rollout = env.reset(seed=seed), None
    while rollout is None:
        obs, r, c, te, tr, info = env.step(worker.act(obs))
        worker.record(r, c, te, tr, info['final_obs'])
        rollout = worker.take_rollout(obs)
    return rollout
