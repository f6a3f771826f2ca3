"""Point-Gather: sensors, collection, reward and cost on hand-placed states; training runs."""

import math
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import cpo_ros.sim  # noqa: F401 - registers the ids
from cpo_ros.sim.make import vec_env
from cpo_ros.tasks.gather import caught, sensor_readings
from cpo_ros.tasks.gather import GatherParams as GatherTask

TASK = GatherTask()


def test_sensors_see_the_closest_object_per_bin_in_front_only():
    pose = np.array([[0.0, 0.0, 0.0]])
    objects = np.array([[[3.0, 0.0], [1.5, 0.0], [-3.0, 0.0], [0.0, 7.0]]])
    readings = sensor_readings(pose, objects, np.ones((1, 4), bool), TASK)
    # Straight ahead is the middle of the span: bin 5 of 10; the closer object wins.
    assert readings[0, 5] == pytest.approx(1 - 1.5 / 6.0)
    assert np.count_nonzero(readings) == 1  # behind and out of range are not seen
    dead = sensor_readings(pose, objects, np.array([[True, False, True, True]]), TASK)
    assert dead[0, 5] == pytest.approx(0.5)
    left = sensor_readings(np.array([[0.0, 0.0, -math.pi / 2]]), objects[:, :1],
                           np.ones((1, 1), bool), TASK)
    assert left[0, -1] > 0  # 90 degrees to the left: the last bin


def test_collecting_apples_and_bombs():
    env = vec_env('gather', 1, seed=0)
    env.reset(seed=0)
    env.robots.set_pose(0, 0.0, 0.0, 0.0)
    env.task.apples[0] = [[0.5, 0.0], [5.0, 5.0]]
    env.task.bombs[0, :] = [[-5.0, -5.0]] * TASK.n_bombs
    env.task.bombs[0, 0] = [0.0, 0.8]
    obs, reward, cost, terminated, truncated, info = env.step(np.zeros((1, 2)))
    assert reward[0] == 10.0 and cost[0] == 1.0
    assert env.task.apples_alive[0].tolist() == [False, True] and not env.task.bombs_alive[0, 0]
    obs, reward, cost, *_ = env.step(np.zeros((1, 2)))
    assert reward[0] == 0.0 and cost[0] == 0.0  # collected once only
    assert obs.shape == (1, 26)
    assert not caught(np.array([[0.0, 0.0, 0.0]]), np.array([[[2.0, 0.0]]]),
                      np.ones((1, 1), bool), TASK).any()


def test_episodes_of_fifteen_steps_with_fresh_objects():
    env = vec_env('gather', 2, seed=1)
    env.reset(seed=1)
    first = env.task.apples.copy()
    for _ in range(15):
        *_, truncated, info = env.step(np.zeros((2, 2)))
    assert truncated.all() and not np.array_equal(first, env.task.apples)
    assert (np.hypot(env.task.apples[..., 0], env.task.apples[..., 1]) >= 2.0).all()
    gym_env = gym.make('cpo_ros/PointGather-v0')
    obs, _ = gym_env.reset(seed=0)
    assert obs.shape == (26,)
    assert 'cost' in gym_env.step(np.zeros(2, np.float32))[4]


def test_train_gather_uses_the_paper_limit(tmp_path):
    subprocess.run([sys.executable, '-m', 'cpo_ros.cli', 'train', '--task', 'gather',
                    '--iterations', '2', '--steps-per-iteration', '1500', '--num-envs', '4',
                    '--out', str(tmp_path), '--quiet'], check=True, timeout=300)
    text = (tmp_path / 'config.yaml').read_text()
    assert 'cost_limit: 0.1' in text and 'task: gather' in text
    assert (tmp_path / 'curves.png').is_file()
