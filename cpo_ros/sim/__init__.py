"""Gymnasium environments on MuJoCo and the task functions shared with the real-robot path."""

import gymnasium as gym

# Task options (geometry, episode length, robot constants) are keyword arguments of gym.make,
# e.g. gym.make('cpo_ros/PointCircleLong-v0', x_limit=3.0, target_radius=10.0).
_IDS = {
    'cpo_ros/PointCircle-v0': ('cpo_ros.sim.point_circle:PointCircleEnv', {}),
    'cpo_ros/PointCircleLong-v0': ('cpo_ros.sim.point_circle:PointCircleEnv',
                                   {'max_episode_steps': 500}),
    'cpo_ros/PointGather-v0': ('cpo_ros.tasks.gather:PointGatherEnv', {}),
    'cpo_ros/PointGoal-v0': ('cpo_ros.tasks.goal:PointGoalEnv', {}),
}

for _id, (_entry, _kwargs) in _IDS.items():
    if _id not in gym.registry:
        # The envs truncate at their own max_episode_steps (a task option), not Gymnasium's.
        gym.register(id=_id, entry_point=_entry, max_episode_steps=None, kwargs=_kwargs)
