"""Gymnasium environments on MuJoCo and the task functions shared with the real-robot path."""

import gymnasium as gym

if 'cpo_ros/PointCircle-v0' not in gym.registry:
    gym.register(id='cpo_ros/PointCircle-v0',
                 entry_point='cpo_ros.envs.point_circle:PointCircleEnv',
                 max_episode_steps=None)

if 'cpo_ros/PointGather-v0' not in gym.registry:
    gym.register(id='cpo_ros/PointGather-v0', entry_point='cpo_ros.envs.gather:PointGatherEnv',
                 max_episode_steps=None)
