"""Policy executor node: act on the robots' state with the newest policy, collect rollouts.

Training transport (lock-step, any number of simulated robots): `batch/state` in, one
`batch/cmd_vel` out per state sequence number; every `chunk_steps` steps (all robots: by default
`steps_per_iteration` samples) a rollout chunk goes to the learner on `cpo/rollout`, tagged with
the policy version, `executor_id` and its sample count, and sampling pauses until a newer policy
arrives on `cpo/policy` -- or until the learner's `cpo/iteration` status says it still wants
more samples of this version than the other executors are bringing (a fleet, training/fleet.py).
Only the policy the learner announced on `cpo/iteration` is loaded (training/announcements.py).
Episode returns and costs are published live on `episode/return` and
`episode/cost` as each episode ends (with several constraints `episode/cost` is the first's and
`episode/cost_<i>` each one's).
"""

import math

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Float32, Float32MultiArray

from cpo_ros.ros import qos
from cpo_ros.ros.bringup import node_help, run_nodes, wants_help
from cpo_ros.ros.conversions import BatchCodec
from cpo_ros.ros.faults import FaultReport
from cpo_ros.ros.learner_input import LearnerInput
from cpo_ros.ros.params import declare_parameters, declare_task, task_identity
from cpo_ros.ros.rollout_sender import ChunkSender
from cpo_ros.ros.specs import node_parameters
from cpo_ros.training.worker import RolloutWorker
from cpo_ros.wire import CMD_FIELDS, StateLayout


class PolicyExecutor(Node):
    """Turn robot state into velocity commands with the latest policy; feed the learner."""

    def __init__(self, **kwargs) -> None:
        super().__init__('policy_executor', **kwargs)
        p = declare_parameters(self, node_parameters(type(self)))
        self.num_envs = p['num_envs']
        # The task rebuilds each observation from the state, exactly as the simulator does.
        self.task = declare_task(self, p['task'], self.num_envs)
        layout = StateLayout.of(self.task)
        self.fields, c = layout.fields, layout.columns
        # The lock-step messages' layouts, worked out once (two messages a step).
        self._state_codec = BatchCodec(self.fields, self.num_envs)
        self._cmd_codec = BatchCodec(CMD_FIELDS)
        self._pose, self._twist, self._sensors = c['pose'], c['twist'], c['sensors']
        self._final_pose, self._final_twist = c['final_pose'], c['final_twist']
        self._final_sensors = c['final_sensors']
        self._col = {f: c[f].start for f in ('reward', 'terminated', 'truncated')}
        self._costs = c['cost']
        obs_dim = self.task.obs_dim
        steps = p['chunk_steps'] or max(1, math.ceil(
            p['chunk_fraction'] * p['steps_per_iteration'] / self.num_envs))
        self.executor_id = p['executor_id'] or self.get_fully_qualified_name()
        self._policies = 0
        num_costs = len(layout.cost_fields)
        self.worker = RolloutWorker(self.num_envs, obs_dim, 2, steps,
                                    seed=p['seed'] + p['seed_offset'],
                                    deterministic=p['deterministic'], num_costs=num_costs)
        self._last_seq: int | None = None
        self._last_cmd: Float32MultiArray | None = None
        self._waiting: tuple[int, np.ndarray] | None = None
        self.cmd_pub = self.create_publisher(Float32MultiArray, 'batch/cmd_vel', qos.LOCKSTEP)
        self.return_pub = self.create_publisher(Float32, 'episode/return', qos.METRICS)
        self.cost_pubs = [self.create_publisher(Float32, 'episode/cost', qos.METRICS)]
        if num_costs > 1:
            self.cost_pubs += [self.create_publisher(Float32, f'episode/cost_{i}', qos.METRICS)
                               for i in range(num_costs)]
        self.faults = FaultReport(self)
        self.chunks = ChunkSender(self, self.faults, self.executor_id)
        self.create_subscription(Float32MultiArray, 'batch/state', self._on_state, qos.LOCKSTEP)
        self.learner = LearnerInput(self, self.faults, self.worker.set_policy,
                                    self._policy_loaded, lambda _status: self._maybe_resume(),
                                    task_identity(self.task))
        self.get_logger().info(f'executor {self.executor_id}: {self.num_envs} robot(s), rollout '
                               f'chunks of {steps} steps ({steps * self.num_envs} samples)')

    def _policy_loaded(self, swapped: bool) -> None:
        if swapped:
            log = self.get_logger().debug if self._policies else self.get_logger().info
            log(f'policy version {self.worker.version} loaded')
            self._policies += 1
            self.chunks.policy_loaded(self.worker.version, self.worker.session)
            self._maybe_resume()

    def _maybe_resume(self) -> None:
        """Sample on: with a newer policy, or when the learner wants more of this version."""
        worker = self.worker
        # The newest status of the learner session whose policy is loaded: statuses of other
        # sessions (another publisher's) cannot hold sampling up.
        status = self.learner.status(worker.session)
        if worker.paused and self.chunks.wants_more(status, worker.version):
            worker.resume()
        if self._waiting is not None and worker.can_act:
            seq, obs = self._waiting
            self._waiting = None
            self._act(seq, obs)

    def _on_state(self, msg: Float32MultiArray) -> None:
        try:
            # Layout, finite values, one seq, one row a robot, flags 0 or 1 (wire.py).
            state, seq = self._state_codec.decode(msg)
        except ValueError as exc:
            self.faults.refuse('batch/state', exc)
            return
        if seq == self._last_seq and self._last_cmd is not None:
            # The bridge re-sent the state we answered: our answer was lost (a flooded
            # reader drops it), so send it again, or lock-step would wait for ever.
            self.cmd_pub.publish(self._last_cmd)
            return
        if self._waiting is not None and self._waiting[0] == seq:
            return  # a re-sent state we already hold
        obs = self.task.observation(state[:, self._pose], state[:, self._twist],
                                    state[:, self._sensors])
        if self._last_seq is not None:
            c = self._col
            terminated, truncated = state[:, c['terminated']] > 0.5, state[:, c['truncated']] > 0.5
            # final_obs is read only where an episode ended: observe those rows alone.
            final_obs = obs
            ended_rows = np.flatnonzero(terminated | truncated)
            if ended_rows.size:
                rows = state[ended_rows]
                final_obs = obs.copy()
                final_obs[ended_rows] = self.task.observation(
                    rows[:, self._final_pose], rows[:, self._final_twist],
                    rows[:, self._final_sensors])
            ended = self.worker.record(state[:, c['reward']], state[:, self._costs], terminated,
                                       truncated, final_obs)
            for ret, costs in ended:
                self.return_pub.publish(Float32(data=ret))
                self.cost_pubs[0].publish(Float32(data=float(costs[0])))
                for pub, cost in zip(self.cost_pubs[1:], costs, strict=False):
                    pub.publish(Float32(data=float(cost)))
            rollout = self.worker.take_rollout(obs)
            if rollout is not None:
                self.chunks.send(rollout)
        if self.worker.can_act:
            self._act(seq, obs)
        else:
            self._waiting = (seq, obs)

    def _act(self, seq: int, obs: np.ndarray) -> None:
        action = self.worker.act(obs)
        self._last_cmd = self._cmd_codec.encode(action, seq)
        self.cmd_pub.publish(self._last_cmd)
        self._last_seq = seq


def main(args: list[str] | None = None) -> int:
    """Run the executor alone: `ros2 run cpo_ros policy_executor [--deploy | --robot]`.

    --deploy runs the lifecycle node of deployment (an exported policy on a robot's odom);
    --robot learns on the robot in real time (nodes/robot_executor.py).
    """
    import sys
    argv = list(sys.argv if args is None else args)
    ros_start = argv.index('--ros-args') if '--ros-args' in argv else len(argv)
    deploy = '--deploy' in argv[:ros_start]
    robot = '--robot' in argv[:ros_start]
    argv = [a for i, a in enumerate(argv)
            if not (i < ros_start and a in ('--deploy', '--robot'))]
    if wants_help(argv):  # every mode and its parameters, with or without a mode flag
        from cpo_ros.nodes.deployed_executor import DeployedPolicyExecutor
        from cpo_ros.nodes.robot_executor import RobotExecutor
        print(node_help('policy_executor', [PolicyExecutor, DeployedPolicyExecutor,
                                            RobotExecutor],
                        modes=('training (default)', '--deploy (an exported policy on a robot)',
                               '--robot (learning on the robot in real time)')),
              flush=True)
        return 0
    if robot:
        from cpo_ros.nodes.robot_executor import RobotExecutor
        return run_nodes('policy_executor', [RobotExecutor], [False], argv)
    if deploy:
        from cpo_ros.nodes.deployed_executor import DeployedPolicyExecutor
        return run_nodes('policy_executor', [DeployedPolicyExecutor], [False], argv)
    return run_nodes('policy_executor', [PolicyExecutor], [False], argv)


if __name__ == '__main__':
    raise SystemExit(main())
