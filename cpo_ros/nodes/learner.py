"""Learner node: CPO updates from rollout chunks on `cpo/rollout`, policies on `cpo/policy`.

Any number of executors feed it (training/fleet.py): chunks of the current policy version are
merged until `steps_per_iteration` samples; stale, duplicate and malformed ones are dropped and
counted; after `iteration_timeout_s` an iteration proceeds on what arrived when that is at
least `min_fraction`, else it warns and waits on. `cpo/iteration` (latched) tells executors how
many more samples of this version are wanted; `diagnostics` and progress.csv carry each
executor's share.

The update runs on a worker thread, never in the subscription callback, so the executor that
serves this node keeps delivering other callbacks (odom, cmd_vel, clock) while it computes.
With `fit_while_sampling` the critics fit in a child process and the new policy is published as
soon as it is final, so the executors sample the next iteration while the fit finishes (as
`cpo-ros train` does): faster when the executors sample on other hosts or on cores of their
own, slower when the fit must take a core from lock-step sampling (a fleet of workers on 2
cores). Off, the update ends before the policy goes out.

Faults: a rollout is validated in the callback (size cap before inflating, then dtypes, shapes
and finite values) and dropped with a warning naming the field. An update that raises anything
is logged with its traceback, rolled back (core.run), counted on `diagnostics`, and the current
policy is re-published under a new session so that executors sample again; after
`max_failed_updates` failures in a row the node ends the process with exit code 1 (respawn or
the operator takes over). The worker thread never dies silently: whatever ends it ends the
process. Ctrl-C and SIGTERM write curves.png and the summary before the process ends.
"""

import math
import os
import threading
import time
import traceback

from diagnostic_msgs.msg import DiagnosticStatus
import numpy as np
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_msgs.msg import Float32, UInt8MultiArray
import torch

from cpo_ros.algo.buffer import rollout_size_cap
from cpo_ros.algo.networks import NumpyActor
from cpo_ros.ros import qos
from cpo_ros.ros.bringup import run_nodes
from cpo_ros.ros.conversions import arrays_to_msg, msg_to_arrays
from cpo_ros.ros.faults import FaultReport, WARN_PERIOD_S
from cpo_ros.ros.params import (
    declare_parameters,
    declare_task,
    refuse_unknown,
    task_identity,
    task_options_of,
)
from cpo_ros.ros.specs import node_parameters, ROBOT_PARAMS
from cpo_ros.training.announcements import policy_digest
from cpo_ros.training.config import TrainConfig
from cpo_ros.training.fleet import ChunkGatherer, ChunkQueue, FLEET_COLUMNS, IterationReport
from cpo_ros.training.run import TrainingRun
from cpo_ros.training.settings import algo_config_from, task_options
from cpo_ros.training.trainer import max_episode_steps, summary_line
from cpo_ros.wire import canonical_chunk, check_chunk, check_logp

# Per-iteration figures for rqt_plot, one std_msgs/Float32 topic each. With several
# constraints episode_cost, cost_limit and lagrange are the first's, and cpo/<name>_<i> follow
# for each constraint i.
CHECKED_OLD_VERSIONS = 3
"""Policies kept besides the current one, to check the chunks of older versions against."""
METRIC_TOPICS = ('episode_return', 'episode_cost', 'cost_limit', 'kl', 'steps_per_s',
                 'lagrange', 'policy_std')
PER_CONSTRAINT_TOPICS = ('episode_cost', 'cost_limit', 'lagrange')


class Learner(Node):
    """Run the constrained policy update on rollouts and publish each new policy version."""

    def __init__(self, **kwargs) -> None:
        super().__init__('learner', **kwargs)
        p = declare_parameters(self, node_parameters(type(self)))
        from cpo_ros.deploy.profile import env_overrides
        from cpo_ros.sim.make import make_vec_env

        task = declare_task(self, p['task'])
        self.task_identity = task_identity(task)
        # Before the run directory is written: a misspelt parameter leaves no run behind.
        refuse_unknown(self)
        task_kwargs = task_options_of(task)
        # The robot profile: its limits set the action range; the run and its exports record it.
        robot = {s.name: p[s.name] for s in ROBOT_PARAMS}
        task_kwargs.update(env_overrides(robot))
        probe = make_vec_env(task=p['task'], num_envs=1, seed=p['seed'], **task_kwargs)
        limits = p['cost_limit'] if isinstance(p['cost_limit'], list) else [p['cost_limit']]
        if limits == [-1.0]:
            limits = list(task.default_cost_limits)
        if len(limits) != probe.num_costs:
            raise ValueError(f'learner: parameter cost_limit = {p["cost_limit"]!r} gives '
                             f'{len(limits)} limit(s), the task has {probe.num_costs} '
                             f'constraint(s) {list(probe.cost_names)}: set one limit each')
        if min(limits) < 0.0:
            raise ValueError(f'learner: parameter cost_limit = {p["cost_limit"]!r}: limits '
                             f"are >= 0 (or -1 alone: the task's defaults)")
        # Every AlgoConfig field is a parameter of the same name (one source: core.settings).
        algo = algo_config_from({**p, 'cost_limit': limits[0] if len(limits) == 1
                                 else tuple(limits)})
        self.config = TrainConfig(
            task=p['task'], iterations=p['iterations'],
            steps_per_iteration=p['steps_per_iteration'], num_envs=p['num_envs'],
            seed=p['seed'], out=p['out'], checkpoint_every=p['checkpoint_every'],
            torch_threads=p['torch_threads'], tensorboard=p['tensorboard'], algo=algo,
            task_kwargs=task_kwargs, robot=robot)
        torch.set_num_threads(self.config.torch_threads)
        for idle in algo.idle_settings():
            self.get_logger().warn(f'parameter {idle}: no effect with algo {algo.algo}')
        space = probe.single_action_space
        self.run = TrainingRun(self.config, probe.obs_dim, probe.act_dim, space.low, space.high,
                               max_episode_steps(probe),
                               resume={'true': 'resume', 'false': 'fresh'}.get(p['resume'],
                                                                               p['resume']),
                               extra_config={'transport': 'ros2', 'node': self.get_name(),
                                             'cost_names': list(probe.cost_names),
                                             'task_options': task_options(self.config),
                                             'ros_parameters': p},
                               num_costs=probe.num_costs, extra_columns=FLEET_COLUMNS,
                               init_from=p['init_from'] or None)
        if self.run.initialised_from is not None:
            self.get_logger().info(f'fine-tuning: the policy and critics of '
                                   f'{self.run.initialised_from}')
        self.fit_while_sampling = p['fit_while_sampling']
        if self.fit_while_sampling:
            # The critics fit in a child process: the new policy goes out while they finish
            # (_policy_ready), without taking turns on the GIL with this node's callbacks.
            self.run.algorithm.fit_critics_in_process()
        self.obs_dim, self.act_dim = probe.obs_dim, probe.act_dim
        self.gatherer = ChunkGatherer(self.config.steps_per_iteration, probe.obs_dim,
                                      probe.act_dim, probe.num_costs, p['iteration_timeout_s'],
                                      p['min_fraction'])
        self.last_report: IterationReport | None = None
        self.num_costs = probe.num_costs
        self.max_rollout_bytes = rollout_size_cap(self.config.steps_per_iteration, self.obs_dim,
                                                  self.act_dim, self.num_costs)
        self.shutdown_when_done = p['shutdown_when_done']
        self.max_failed_updates = p['max_failed_updates']
        self.failed_in_a_row = 0
        self.done = threading.Event()
        self.exit_code = 0
        """Non-zero ends the process with this code (run_nodes): the learner gave up."""
        self._stop = threading.Event()
        self._finished = False
        self._finish_lock = threading.Lock()
        # Tells executors that a restarted learner re-publishes a version they already have.
        self.session = int.from_bytes(os.urandom(4), 'little') % (2 ** 31) + 1
        # The policies executors may be sampling, by version, as published: the update changes
        # the learner's own policy in place, so a chunk's log-probabilities are checked
        # against these snapshots (check_logp).
        self._actors: dict[int, NumpyActor] = {}
        self._max_published = -1
        self._stale_logged: dict[str, float] = {}  # executor -> steady time of its last line

        self.policy_pub = self.create_publisher(UInt8MultiArray, 'cpo/policy', qos.LATCHED)
        self.status_pub = self.create_publisher(UInt8MultiArray, 'cpo/iteration', qos.LATCHED)
        self._last_status: tuple | None = None
        self._status_msg: UInt8MultiArray | None = None
        self._policy_msg: UInt8MultiArray | None = None
        self._policy_digest = np.zeros(32, np.uint8)
        # The status and the policy it announces go out in this order, from the worker thread
        # and the heartbeat timer alike: a late joiner never holds a status without its policy.
        self._publish_lock = threading.RLock()
        names = list(METRIC_TOPICS)
        if probe.num_costs > 1:
            names += [f'{name}_{i}' for i in range(probe.num_costs)
                      for name in PER_CONSTRAINT_TOPICS]
        self.metric_pubs = {name: self.create_publisher(Float32, f'cpo/{name}', qos.METRICS)
                            for name in names}
        self.faults = FaultReport(self)
        self.create_subscription(UInt8MultiArray, 'cpo/rollout', self._on_rollout,
                                 qos.ROLLOUT)
        # Chunks wait here while an update runs: bounded in bytes, in total and per executor.
        self._queue = ChunkQueue(p['queue_bytes'] or 2 * self.max_rollout_bytes,
                                 p['executor_queue_bytes'] or self.max_rollout_bytes)
        self._worker = threading.Thread(target=self._work, name='cpo_update', daemon=True)
        self._t_wait = self._t_chunk = time.perf_counter()
        # Steady clock: a rollout lost in transit (an executor restarting, a learner that
        # respawned before discovery matched) must not stall training for ever.
        self.rollout_timeout_s = p['rollout_timeout_s']
        self._updating = False
        self.create_timer(1.0, self._check_stall, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.gatherer.start(self.run.algorithm.version)
        self._publish_policy()
        self._publish_diagnostics()
        start = (f'resumed {self.run.out} at iteration {self.run.iteration}' if self.run.resumed
                 else f'new run in {self.run.out}')
        if self.run.moved_aside is not None:
            start += f' (the previous run moved to {self.run.moved_aside})'
        self.get_logger().info(
            f'{self.config.algo.algo.upper()} learner: {start}; iteration {self.run.iteration}/'
            f'{self.config.iterations}, {self.config.steps_per_iteration} samples per iteration, '
            f'cost limit {self.config.algo.cost_limit}')
        if self.run.done:
            self._finish()
        else:
            self._worker.start()

    def _publish_policy(self, new_session: bool = False) -> None:
        """Publish the current policy; new_session makes executors sample this version again.

        The status announcing it (its digest) goes out first: executors load no policy the
        learner did not announce (training/announcements.py).
        """
        if new_session:
            self.session = self.session % (2 ** 31) + 1
        policy, version = self.run.algorithm.policy, self.run.algorithm.version
        arrays = policy.to_arrays()
        self._actors = {v: a for v, a in self._actors.items()
                        if v >= version - CHECKED_OLD_VERSIONS}
        self._actors[version] = NumpyActor(policy)
        self._max_published = max(self._max_published, version)
        arrays['version'] = np.asarray(version, np.int64)
        arrays['session'] = np.asarray(self.session, np.int64)
        arrays['task'] = np.asarray(self.task_identity)
        msg = arrays_to_msg(arrays)
        with self._publish_lock:
            self._policy_msg = msg
            self._policy_digest = np.frombuffer(policy_digest(msg.data), np.uint8)
            self._publish_status(force=True)
            self.policy_pub.publish(msg)

    def _publish_status(self, force: bool = False) -> None:
        """Publish `cpo/iteration` when it changed: how many more samples are wanted."""
        with self._publish_lock:
            g = self.gatherer
            more = g.more()
            key = (g.version, g.collected, more, self.session, self._policy_digest.tobytes())
            if key == self._last_status and not force:
                return
            self._last_status = key
            status = g.status()
            status['session'] = np.asarray(self.session, np.int64)
            status['policy_digest'] = self._policy_digest
            self._status_msg = arrays_to_msg(status)
            self.status_pub.publish(self._status_msg)

    def _publish_diagnostics(self) -> None:
        level = None
        message = ''
        if self.exit_code:
            level, message = DiagnosticStatus.ERROR, 'gave up after failed updates'
        elif self.failed_in_a_row:
            level, message = DiagnosticStatus.WARN, 'the last update failed'
        g = self.gatherer
        if level is None and g.timed_out and not g.ready():
            level = DiagnosticStatus.WARN
            message = (f'waiting: {g.collected} of {g.needed} samples after more than '
                       f'{g.timeout_s:.0f} s (iteration_timeout_s)')
        values = {'iteration': self.run.iteration, 'iterations': self.config.iterations,
                  'policy_version': self.run.algorithm.version,
                  'failed_in_a_row': self.failed_in_a_row, 'collected': g.collected}
        if self.last_report is not None:
            # The fleet's make-up of the last iteration: each executor's share.
            values.update({k: v for k, v in self.last_report.row().items()
                           if k != 'executor_shares'})
            values.update({f'share {k}': v for k, v in self.last_report.shares.items()})
        self.faults.publish(level, message, values)

    def _check_stall(self) -> None:
        """Re-publish the policy under a new session when no rollout came for too long.

        Harmless to an executor that is still sampling (it goes on with the same version);
        an executor waiting for a newer policy samples the current one again.

        Also re-sends the last `cpo/iteration` status and the policy it announces every
        second: the learner's heartbeat, by which a robot notices a learner that died
        (robot_executor, max_policy_age_s), and by which an executor whose reader lost the
        latched policy under a flood from another publisher has it again
        (training/announcements.py).
        """
        with self._publish_lock:
            if self._status_msg is not None and self._policy_msg is not None:
                self.status_pub.publish(self._status_msg)
                self.policy_pub.publish(self._policy_msg)
        if (self.rollout_timeout_s <= 0 or self._updating or not self._queue.empty()
                or self.run.done or self.exit_code):
            return
        waited = time.perf_counter() - max(self._t_wait, self._t_chunk)
        if waited < self.rollout_timeout_s:
            return
        self.faults.count('resampled_after_timeout')
        self.get_logger().warn(f'no rollout of policy version {self.run.algorithm.version} for '
                               f'{waited:.0f} s: re-published it so that executors sample again')
        self._t_wait = time.perf_counter()
        self._publish_policy(new_session=True)
        self._publish_diagnostics()

    def _on_rollout(self, msg: UInt8MultiArray) -> None:
        # Checks only, bounded by the size cap: the update runs on the worker thread. A chunk
        # is refused (counted by field) when malformed or sampled by another policy, dropped
        # as stale when of an older version, before it takes any room in the queue.
        try:
            chunk = msg_to_arrays(msg, self.max_rollout_bytes)
            executor, _session, _seq, samples, version = check_chunk(
                chunk, self.obs_dim, self.act_dim, self.num_costs)
            current = self.gatherer.version
            if version != current and version <= self._max_published:
                # A stale chunk tells the gatherer to expect its executor (a slow robot): only
                # one that the policy of its version sampled may, or a stranger's forged
                # names would make the fleet wait for executors that are not there.
                actor = self._actors.get(version)
                if actor is not None:
                    check_logp(chunk, actor, version)
                self.faults.count('stale_rollouts')
                self.gatherer.note_stale(samples, executor if actor is not None else None,
                                        version)
                self._log_stale(executor, version, current)
                return
            check_logp(chunk, self._actors.get(version), version)
            chunk = canonical_chunk(chunk)
        except ValueError as exc:
            self.faults.refuse('rollout', exc)
            return
        refused = self._queue.put(chunk, executor)
        if refused is not None:
            self.faults.count(f'surplus_rollouts.{refused}')
            self.get_logger().warn(
                f'dropped a rollout chunk of {executor!r}: {refused} ({self._queue.bytes} bytes '
                f'queued, at most {self._queue.max_bytes}; {self._queue.executor_bytes} per '
                f'executor)', throttle_duration_sec=5.0)

    def _log_stale(self, executor: str, version: int, current: int) -> None:
        """Log a dropped stale chunk, at most once per WARN_PERIOD_S for each executor."""
        now = time.monotonic()
        if now - self._stale_logged.get(executor, -math.inf) < WARN_PERIOD_S:
            return
        if len(self._stale_logged) >= 256:  # names come from the wire: bounded
            self._stale_logged.clear()
        self._stale_logged[executor] = now
        self.get_logger().info(
            f'dropped a chunk of policy version {version} from {executor}; the current '
            f'version is {current} (on-policy updates need fresh samples)')

    def _gather(self) -> None:
        """Offer waiting chunks to the gatherer until the iteration is ready (or a pause)."""
        g = self.gatherer
        chunk = self._queue.get(timeout=0.2)
        while chunk is not None:
            self._t_chunk = time.perf_counter()
            verdict = g.offer(chunk)
            if verdict == 'stale':
                self.faults.count('stale_rollouts')
                self._log_stale(str(chunk.get('executor_id', '?')),
                                int(chunk['policy_version']), g.version)
            elif verdict == 'duplicate':
                self.faults.count('duplicate_rollouts')
            elif verdict.startswith('malformed'):
                self.faults.refuse('rollout', ValueError(verdict[len('malformed: '):]))
            if g.ready() or self._stop.is_set():
                break
            chunk = self._queue.get()
        if g.should_warn():
            self.get_logger().warn(
                f'iteration {self.run.iteration + 1}: {g.collected} of {g.needed} samples after '
                f'{g.timeout_s:.0f} s from {sorted(g.shares) or "no executor"}; waiting for at '
                f'least {g.min_fraction:.0%} (min_fraction)')
            self._publish_diagnostics()
        self._publish_status()

    def _work(self) -> None:
        try:
            self._serve()
        except BaseException:  # noqa: BLE001 - no failure may leave a dead thread, live node
            self.get_logger().fatal(f'the update thread failed; the learner stops:\n'
                                    f'{traceback.format_exc()}')
            self._give_up()

    def _serve(self) -> None:
        while not self.run.done and not self._stop.is_set() and rclpy.ok(context=self.context):
            self._gather()
            if not self.gatherer.ready() or self._stop.is_set():
                continue  # a stop (Ctrl-C) starts no update: only one in progress finishes
            wait = time.perf_counter() - self._t_wait
            self._updating = True
            try:
                rollout, report = self.gatherer.take()
                if report.timed_out:
                    self.get_logger().warn(
                        f'iteration {self.run.iteration + 1} proceeds on {report.samples} of '
                        f'{self.gatherer.needed} samples after {report.wait_s:.1f} s '
                        f'(iteration_timeout_s)')
                row = self.run.record(rollout, {'sample_time_s': wait, **report.row()},
                                      policy_ready=(self._policy_ready
                                                    if self.fit_while_sampling else None))
            except Exception:  # noqa: BLE001 - any failure: drop the rollout, sample again
                self.gatherer.start(self.run.algorithm.version)
                self._update_failed(traceback.format_exc())
                if self.exit_code:
                    return
                continue
            finally:
                self._updating = False
            self.failed_in_a_row = 0
            self.last_report = report
            if not self.fit_while_sampling:
                self._policy_ready()
            for name, pub in self.metric_pubs.items():
                pub.publish(Float32(data=float(row[name])))
            self._publish_diagnostics()
            self.get_logger().info(f'{summary_line(row)} | {report.row()["executor_shares"]}')
        if self.run.done:
            self._finish()

    def _policy_ready(self) -> None:
        """Publish the new policy (with fit_while_sampling, while the critics finish fitting).

        Chunks of the new version wait in the queue until the update ends. Should the update
        still fail (the run is then put back), _update_failed publishes the old policy under a
        new session, and the new version's chunks are dropped as stale.
        """
        self._t_wait = time.perf_counter()
        self.gatherer.start(self.run.algorithm.version)
        self._publish_policy()

    def _update_failed(self, trace: str) -> None:
        """Count a failed update; sample again, or give up after too many in a row."""
        self.failed_in_a_row += 1
        self.faults.count('failed_updates')
        self.get_logger().error(
            f'update {self.run.iteration + 1} failed ({self.failed_in_a_row} in a row, at '
            f'most {self.max_failed_updates}); the rollout is dropped and the run is as '
            f'before:\n{trace}')
        if self.failed_in_a_row >= self.max_failed_updates:
            self.get_logger().fatal(f'{self.failed_in_a_row} updates failed in a row: the '
                                    f'learner stops with exit code 1 ({self.run.summary()})')
            self._give_up()
            return
        self._publish_diagnostics()
        self._t_wait = time.perf_counter()
        self._publish_policy(new_session=True)

    def _give_up(self) -> None:
        self.exit_code = 1
        self._publish_diagnostics()
        self.done.set()

    def _finish(self, interrupted: bool = False) -> None:
        """Write the plot and the summary once (at the end, or on Ctrl-C / SIGTERM)."""
        with self._finish_lock:
            if self._finished:
                return
            self._finished = True
            # Interrupted mid-update the run is as before it (core.run rolls back); saving
            # the checkpoint again is then safe.
            plot = self.run.finish(save=not self._worker.is_alive())
        what = 'training stopped' if interrupted else 'training done'
        self.get_logger().info(f'{what}: {self.run.summary()}; plot {plot}')
        if self.shutdown_when_done:
            self.done.set()

    def destroy_node(self) -> None:
        """Stop the update thread, write the plot and the summary, then destroy the node."""
        self._stop.set()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            # An update in progress finishes and is saved (a few seconds at most).
            self._worker.join(timeout=60.0)
        try:
            self._finish(interrupted=not self.run.done)
        except Exception:  # noqa: BLE001 - shutting down: report, do not mask the exit code
            self.get_logger().error(f'could not write the plot and summary:\n'
                                    f'{traceback.format_exc()}')
        if not self._worker.is_alive():
            self.run.algorithm.close()  # the critics' fit process
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the learner alone (`ros2 run cpo_ros learner`); it ends after its iterations."""
    return run_nodes('learner', [Learner], [True], args)


if __name__ == '__main__':
    raise SystemExit(main())
