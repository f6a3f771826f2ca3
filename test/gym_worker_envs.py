"""Small Gymnasium envs for test_gym_workers, in a module of their own.

Env workers are spawned processes that import the env's module: this one imports only
Gymnasium and NumPy, so they start in a fraction of the time a test module with torch takes.
"""

import os
import time

import gymnasium as gym
import numpy as np


class RandomSafetyEnv(gym.Env):
    """Safety-Gymnasium's 6-tuple step, with seeded noise and episodes of random length."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3, 2), np.float64)
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.seed_given = seed
        self.t = 0
        return self.np_random.normal(size=(3, 2)), {}

    def step(self, action):
        self.t += 1
        obs = self.np_random.normal(size=(3, 2)) + float(np.sum(action))
        cost = float(self.np_random.uniform() < 0.3)
        done = self.np_random.uniform() < 0.1
        return obs, float(action[0]) * self.t, cost, done, self.t >= 7, {}


class CostInInfoEnv(RandomSafetyEnv):
    """A Gymnasium 5-tuple step with info['cost']."""

    def step(self, action):
        obs, reward, cost, terminated, truncated, _ = super().step(action)
        return obs, reward, terminated, truncated, {'cost': cost}


class NoCostEnv(RandomSafetyEnv):
    def step(self, action):
        obs, reward, _, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, info


class DyingEnv(RandomSafetyEnv):
    """The env reset with seed 7 ends its process at its second step."""

    def step(self, action):
        if self.seed_given == 7 and self.t == 1:
            os._exit(3)
        return super().step(action)


class StuckEnv(RandomSafetyEnv):
    """The env reset with seed 7 never returns from its second step."""

    def step(self, action):
        if self.seed_given == 7 and self.t == 1:
            time.sleep(3600)
        return super().step(action)


class EnvFault(Exception):
    """An exception that pickles but does not unpickle (two arguments, one passed on)."""

    def __init__(self, code, detail):
        super().__init__(f'EnvFault {code}: {detail}')


class FaultEnv(RandomSafetyEnv):
    """The env reset with seed 7 raises EnvFault at its second step."""

    def step(self, action):
        if self.seed_given == 7 and self.t == 1:
            raise EnvFault(42, 'sensor cable unplugged')
        return super().step(action)


# Gymnasium's 'module:EnvId' form: importing this module registers the id (cpo-ros --env-id).
gym.register('cpo_ros_test/CostInInfo-v0', entry_point=CostInInfoEnv)


class StrictBoxEnv(gym.Env):
    """Refuses any action outside its Box, which is half-infinite in one dimension."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(np.array([-1.0, 0.0], np.float32),
                                  np.array([1.0, np.inf], np.float32))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.normal(size=2).astype(np.float32), {}

    def step(self, action):
        if not self.action_space.contains(np.asarray(action, np.float32)):
            raise ValueError(f'action {action} outside {self.action_space}')
        self.t += 1
        obs = self.np_random.normal(size=2).astype(np.float32)
        return obs, float(action[0]), False, self.t >= 5, {'cost': float(action[1] > 1.0)}


gym.register('cpo_ros_test/NoCost-v0', entry_point=NoCostEnv)
gym.register('cpo_ros_test/StrictBox-v0', entry_point=StrictBoxEnv, max_episode_steps=5)
