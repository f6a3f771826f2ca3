"""Shared fixtures: a private DDS domain per test, node processes, an in-process probe node."""

import csv
import itertools
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / 'config' / 'circle_sim.yaml'
_domains = itertools.count()


def pytest_configure(config):
    config.addinivalue_line('markers', 'linter: style and packaging checks')
    config.addinivalue_line('markers', 'ros: starts rclpy nodes or node processes')
    config.addinivalue_line('markers', 'learning: trains a policy')
    config.addinivalue_line('markers', 'slow: takes more than a few seconds (SLOW_FILES, '
                            'SLOW_TESTS)')


# Markers by file and test name, set here so that test files need no edits: `-m "not slow"`
# runs in about a minute (docs/testing.md). A test that takes one of the ROS fixtures is `ros`
# wherever it lives.
ROS_FILES = {'test_deploy_robot', 'test_deploy_safety', 'test_diagnostics_agree', 'test_faults',
             'test_fuzz', 'test_hil', 'test_perspective', 'test_reference', 'test_ros_fleet',
             'test_ros_graph', 'test_ros_nodes'}
ROS_FIXTURES = {'domain_id', 'ros_env', 'probe', 'start_node', 'stranger_node'}
LEARNING_FILES = {'test_long_horizon'}
LEARNING_NAME = re.compile(r'(^|_)(train|trains|trained|training|learns)(_|$)')
SLOW_FILES = {'test_algo_regression', 'test_deploy_robot', 'test_deploy_safety',
              'test_diagnostics_agree', 'test_export', 'test_fuzz', 'test_gym_workers', 'test_hil',
              'test_learn_on_robot', 'test_long_horizon', 'test_nav_deploy', 'test_nav_graph',
              'test_node_help', 'test_perspective', 'test_ros_fleet', 'test_ros_graph',
              'test_ros_nodes', 'test_scan_guard_node'}
SLOW_TESTS = {
    'test_bench_scripts::test_the_algorithm_bench_trains_with_a_set_and_refuses_a_run_'
    'trained_otherwise',
    'test_constraints::test_cpo_with_two_constraints_keeps_each_within_its_line_search_rule',
    'test_constraints::test_shaping_is_off_by_default_and_constrains_the_shaped_cost',
    'test_constraints::test_the_predictor_learns_where_violations_follow',
    'test_constraints::test_train_command_with_a_speed_constraint_and_shaping_writes_per_'
    'constraint_columns',
    'test_cost_estimate::test_critics_fit_long_horizon_values',
    'test_cost_estimate::test_split_half_noise_tells_signal_from_noise',
    'test_cost_estimate::test_under_predicted_rises_shrink_the_allowed_rise',
    'test_exit_codes::test_bringup_exits_2_on_a_deploy_that_cannot_start',
    'test_faults::test_bad_messages_are_refused_by_field_and_counted',
    'test_faults::test_ctrl_c_still_writes_the_plot_and_summary',
    'test_faults::test_failing_updates_resample_then_exit_and_a_respawn_resumes',
    'test_faults::test_run_directories_are_never_overwritten_silently',
    'test_gather::test_train_gather_uses_the_paper_limit',
    'test_goal::test_env_ids_outside_the_project_need_a_cost_limit',
    'test_goal::test_train_and_eval_goal_end_to_end',
    'test_hostile_input::test_a_policy_json_without_observation_is_refused_with_path_and_reason',
    'test_render::test_eval_renders_an_episode_from_above',
    'test_settings::test_config_file_and_set_end_to_end',
    'test_settings::test_help_lists_every_key_with_docstring_and_default',
    'test_settings::test_the_parser_leaves_mujoco_unloaded_until_help_asks',
    'test_task_plugins::test_goal_trains_through_the_circle_graph_with_its_own_settings',
    'test_task_plugins::test_the_corridor_trains_directly_by_name_and_by_dotted_path',
    'test_task_plugins::test_the_corridor_trains_on_a_fleet',
    'test_task_plugins::test_the_corridor_trains_through_the_graph',
    'test_task_plugins::test_the_deploy_drives_the_stand_in_and_refuses_a_policy_of_another_task',
    'test_task_regression::test_first_iteration_of_train_gives_its_pinned_figures',
    'test_tensorboard::test_a_resumed_run_drops_the_events_it_redoes',
    'test_tensorboard::test_tensorboard_off_writes_no_logs',
    'test_train::test_bad_input_is_a_clear_error',
    'test_train::test_corrupt_checkpoint_is_refused_with_path_and_reason',
    'test_train::test_eval_prints_means_and_plots',
    'test_train::test_resume_continues_at_the_next_iteration_exactly',
    'test_train::test_training_writes_its_files_and_learns',
    'test_update_speed::test_a_killed_fit_process_loses_nothing',
    'test_update_speed::test_critic_fit_process_reports_a_failure_and_carries_on',
    'test_update_speed::test_critics_fit_in_a_process_as_on_the_thread',
    'test_update_speed::test_ctrl_c_while_waiting_for_the_fit_process_never_hangs',
    'test_update_speed::test_fit_process_solves_as_the_parent_and_while_its_fit_answer_is_unread',
    'test_update_speed::test_policy_ready_sees_the_final_policy_and_changes_nothing',
    'test_update_speed::test_trainer_samples_ahead_as_a_plain_loop_would',
}
"""file::test (without parameters) of tests elsewhere that took 3 s or more (--durations=0 on
2 cores at a load average near 15), or that start node processes or train a policy."""


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.path.stem
        name = item.originalname or item.name
        if module in ROS_FILES or ROS_FIXTURES & set(getattr(item, 'fixturenames', ())):
            item.add_marker(pytest.mark.ros)
        if module in LEARNING_FILES or LEARNING_NAME.search(name):
            item.add_marker(pytest.mark.learning)
        if module in SLOW_FILES or f'{module}::{name}' in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def _domain_block() -> tuple[int, int]:
    """Return the (first, count) DDS domains this test run may use, all within 1..100.

    Domains above 101 can collide with ephemeral ports on Linux. CPO_ROS_TEST_DOMAINS=lo-hi
    gives runs side by side disjoint blocks; otherwise a block of 10 is picked from the
    run's ROS_DOMAIN_ID (or its pid). Under pytest-xdist each worker gets a disjoint slice.
    """
    spec = os.environ.get('CPO_ROS_TEST_DOMAINS')
    if spec:
        lo, hi = (int(v) for v in spec.split('-'))
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f'CPO_ROS_TEST_DOMAINS={spec!r}: need lo-hi within 1-100')
        first, count = lo, hi - lo + 1
    else:
        base = int(os.environ.get('ROS_DOMAIN_ID', os.getpid()))
        first, count = 1 + (base % 10) * 10, 10
    # pytest-xdist's workers (gw0, gw1, ...) share the run's block: each takes its own slice.
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    index = int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0')[2:])
    if workers > count:
        raise ValueError(f'{workers} test workers need at least {workers} DDS domains, '
                         f'the block has {count} (CPO_ROS_TEST_DOMAINS)')
    share = count // workers
    return first + index * share, share


def _become_subreaper() -> None:
    """Adopt the orphans of this test process (prctl PR_SET_CHILD_SUBREAPER, Linux)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_become_subreaper()


def _children() -> dict[int, str]:
    """Return {pid: command line} of the live (not zombie) children of this process."""
    found = {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
            fields = stat[stat.rindex(')') + 2:].split()
            if int(fields[1]) != os.getpid():
                continue
            if fields[0] == 'Z':
                continue  # ended; its owner (a Popen, multiprocessing) reaps it
            found[int(entry.name)] = (entry / 'cmdline').read_text().replace('\0', ' ')
        except (OSError, ValueError, ChildProcessError):
            continue
    return found


def _left(before: set[int]) -> dict[int, str]:
    """Return the children started since `before`, but multiprocessing's own helpers.

    Its resource tracker and forkserver serve this process until it ends.
    """
    return {pid: cmd for pid, cmd in _children().items() if pid not in before
            and 'multiprocessing.resource_tracker' not in cmd
            and 'multiprocessing.forkserver' not in cmd}


@pytest.fixture(autouse=True)
def no_process_left_behind():
    """Fail a test that leaves a process running: it would load the machine for the rest.

    Its orphans (a node whose bring-up died, a critic fit process) come to this process, the
    subreaper; after the test's own teardown they have 20 s to end, then they are killed.
    """
    before = set(_children())
    yield
    if not wait_until(lambda: not _left(before), 20.0, period=0.2):
        left: dict[int, str] = {}

        def kill_all() -> bool:
            # A killed bring-up's node processes come to this process afterwards: kill them too.
            now = _left(before)
            left.update(now)
            for pid in now:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return not now
        wait_until(kill_all, 10.0, period=0.2)
        if left:
            pytest.fail(f'processes left running after the test: {left}', pytrace=False)


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


@pytest.fixture
def stranger_node(domain_id):
    """Return a factory of nodes, each a DDS participant of its own in the test's domain.

    Every one is destroyed at teardown, pass or fail: a node a failed test left alive (its
    frames hold it) would go on publishing into a later test given the same domain (a second
    publisher on policy/cmd_vel: the gate refuses every command there and the robot stands).
    """
    import rclpy

    made = []

    def make(name: str):
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain_id)
        node = rclpy.create_node(name, context=context)
        made.append((node, context))
        return node

    yield make
    for node, context in made:
        node.destroy_node()  # a second destroy (the test's own) does nothing
        rclpy.try_shutdown(context=context)


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


def set_costs(rollout: dict[str, np.ndarray], cost: np.ndarray) -> None:
    """Replace the per-step costs and recompute each finished episode's sum."""
    rollout['cost'] = cost.astype(np.float32)
    done = rollout['terminated'] | rollout['truncated']
    sums, running = [], np.zeros(cost.shape[1])
    for t in range(cost.shape[0]):
        running += cost[t]
        for i in np.flatnonzero(done[t]):
            sums.append(running[i])
            running[i] = 0.0
    rollout['episode_cost'] = np.asarray(sums, np.float64)


def set_random_costs(rollout: dict[str, np.ndarray], share: float, seed: int) -> None:
    """Give each step a cost of 1 with probability share (seeded), and the episode sums."""
    set_costs(rollout, (np.random.default_rng(seed).random(rollout['reward'].shape)
                        < share).astype(float))


def rows(out: Path) -> list[dict[str, str]]:
    """Return a run's progress.csv rows so far ([] before the first iteration)."""
    path = out / 'progress.csv'
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def shares(row: dict[str, str]) -> dict[str, int]:
    """Return a progress row's samples per executor (its executor_shares column)."""
    return {k: int(v) for k, v in (s.split('=') for s in row['executor_shares'].split())}
