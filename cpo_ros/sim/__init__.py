"""MuJoCo robots, the vectorised env that runs any task on them, and Gymnasium ids.

Task options (geometry, episode length, robot constants) are keyword arguments of gym.make,
e.g. gym.make('cpo_ros/PointCircleLong-v0', x_limit=3.0, target_radius=10.0); any task runs
as gym.make('cpo_ros/Task-v0', task='my_pkg.tasks:Corridor').
"""

import gymnasium as gym

from cpo_ros.sim.make import TASK_IDS

for _task, _id in {**TASK_IDS, 'task': 'cpo_ros/Task-v0'}.items():
    if _id not in gym.registry:
        # The envs truncate at the task's own max_episode_steps (a task option), not Gymnasium's.
        gym.register(id=_id, entry_point='cpo_ros.sim.vec_env:TaskEnv', max_episode_steps=None,
                     kwargs={} if _task == 'task' else {'task': _task})
