"""Point-Goal and the long Point-Circle: scan, cost, goals and episodes on hand-placed states."""

import json
import math
import subprocess
import sys

import gymnasium as gym
from gymnasium.utils.env_checker import check_env
import numpy as np
import pytest

import cpo_ros.sim  # noqa: F401 - registers the ids
from cpo_ros.sim.make import default_cost_limits, make_vec_env
from cpo_ros.tasks.goal import GoalParams, ROBOT_LABELS

TASK = GoalParams()
SPEC = TASK.scan_spec
AHEAD = 8  # angle_min -pi, 16 rays: ray 8 points along the heading
FAR = [[40.0, 40.0]]  # an obstacle slot nobody meets (outside the walls)
R = TASK.obstacle_radius


def goal_env(num_envs: int = 1, seed: int = 0, **options):
    env = make_vec_env(task='goal', num_envs=num_envs, seed=seed, **options)
    env.reset(seed=seed)
    return env


def ray_at(angle: float) -> int:
    index = (angle - SPEC.angle_min) / SPEC.angle_increment
    assert index == pytest.approx(round(index))
    return int(round(index)) % SPEC.num_rays


def test_the_scan_comes_from_mujoco_and_sees_obstacles_and_walls():
    env = goal_env(2)
    layout = np.array(FAR * TASK.n_obstacles)
    layout[0] = [3.0, 0.0]
    env.place(0, (1.0, 0.0, 0.0), obstacle_centres=layout, goal=(-3.0, 3.0))
    # Robot 1 faces +y 2.5 m below the wall at y = wall_distance.
    env.place(1, (0.0, TASK.wall_distance - 2.5, math.pi / 2),
              obstacle_centres=np.array(FAR * TASK.n_obstacles), goal=(-3.0, 3.0))
    ranges = env.scan_ranges()
    assert ray_at(0.0) == AHEAD
    assert ranges[0, AHEAD] == pytest.approx(2.0 - R, abs=1e-6)
    assert np.isinf(np.delete(ranges[0], [AHEAD - 1, AHEAD, AHEAD + 1])).all()
    assert ranges[1, AHEAD] == pytest.approx(2.5, abs=1e-6)
    # Rays at +-45 degrees meet the same wall at 2.5 / cos 45; those at +-90 never do.
    assert ranges[1, ray_at(math.pi / 4)] == pytest.approx(2.5 * math.sqrt(2), abs=1e-6)
    assert ranges[1, ray_at(-math.pi / 4)] == pytest.approx(2.5 * math.sqrt(2), abs=1e-6)
    assert np.isinf(ranges[1, [ray_at(math.pi / 2), ray_at(-math.pi / 2)]]).all()
    obs = env.observation()
    assert obs[0, len(ROBOT_LABELS) + AHEAD] == pytest.approx(1 - (2.0 - R) / SPEC.range_max,
                                                              abs=1e-5)


def test_the_body_collides_and_each_step_in_contact_costs_one():
    env = goal_env(2)
    layout = np.array(FAR * TASK.n_obstacles)
    layout[0] = [1.0, 0.0]
    env.place(0, (0.0, 0.0, 0.0), obstacle_centres=layout, goal=(-3.0, 3.0))
    env.place(1, (0.0, 0.0, math.pi), obstacle_centres=layout, goal=(-3.0, 3.0))
    costs = []
    for _ in range(15):
        _, _, cost, terminated, *_ = env.step(np.array([[1.0, 0.0], [0.5, 0.0]]))
        costs.append(cost.tolist())
        assert not terminated.any()
    costs = np.array(costs)
    # Robot 0 drives into the obstacle and stays against it (the body stops there): it costs
    # every step from the first contact; robot 1 drives away from it, never touching.
    first = int(np.argmax(costs[:, 0]))
    assert 0 < first < 5 and (costs[first:, 0] == 1.0).all() and (costs[:, 1] == 0.0).all()
    assert env.poses()[0, 0] == pytest.approx(1.0 - R - 0.1, abs=0.03)
    # terminate_on_collision ends the episode at the contact instead.
    env = goal_env(1, terminate_on_collision=True)
    env.place(0, (0.0, 0.0, 0.0), obstacle_centres=layout, goal=(-3.0, 3.0))
    ends = [env.step(np.array([[1.0, 0.0]]))[3][0] for _ in range(5)]
    assert True in ends


def test_progress_is_rewarded_and_a_reached_goal_is_replaced():
    env = goal_env(1)
    env.place(0, (0.0, 0.0, 0.0), obstacle_centres=np.array(FAR * TASK.n_obstacles),
              goal=(3.0, 0.0))
    obs, reward, *_ = env.step(np.array([[1.0, 0.0]]))
    moved = env.poses()[0, 0]
    assert moved > 0.05 and reward[0] == pytest.approx(moved, rel=1e-5)
    # Goal straight ahead: bearing 0 (cos 1, sin 0), distance squashed by the extent.
    assert obs[0, 2:5] == pytest.approx([1.0, 0.0, math.tanh((3.0 - moved) / 5.0)], abs=1e-4)
    env.place(0, (0.0, 0.0, 0.0), goal=(0.2, 0.0))
    _, reward, _, _, _, info = env.step(np.zeros((1, 2)))
    assert info['goals'][0] == 1
    assert reward[0] == pytest.approx(TASK.goal_reward, abs=1e-3)
    goal = env.task.goal[0]
    assert np.hypot(*goal) >= 1.0 and np.abs(goal).max() <= TASK.placement_extent
    _, reward, _, _, _, info = env.step(np.zeros((1, 2)))
    assert info['goals'][0] == 0 and abs(reward[0]) < 1e-3


def test_a_robot_sets_goals_and_reads_arrival():
    env = goal_env(1)
    task = env.task
    task.set_goal(0, np.array([1.0, 2.0]))
    assert not task.at_goal(np.array([[0.0, 0.0, 0.0]]))[0]
    assert task.at_goal(np.array([[1.0, 2.0 - 0.9 * TASK.goal_radius, 1.0]]))[0]


def test_episodes_truncate_at_1000_steps_and_reset_with_final_obs():
    env = make_vec_env(task='goal', num_envs=3, seed=4)
    obs = env.reset()
    layout = env.task.obstacle_centres.copy()
    assert obs.shape == (3, 5 + 16) and env.max_episode_steps == 1000
    for step in range(1, 1001):
        obs, _, _, terminated, truncated, info = env.step(np.zeros((3, 2)))
        if step < 1000:
            assert not truncated.any()
    assert truncated.all() and not terminated.any()
    assert not np.allclose(env.task.obstacle_centres, layout)  # a fresh layout
    # ... and the MuJoCo geoms moved with it: the scan matches the new layout.
    assert not np.allclose(info['final_obs'], obs)
    assert (env.episode_step == 0).all()


def test_layouts_are_seeded_valid_and_built_in_mujoco():
    a, b = goal_env(4, seed=7), goal_env(4, seed=7)
    np.testing.assert_array_equal(a.observation(), b.observation())
    np.testing.assert_array_equal(a.task.obstacle_centres, b.task.obstacle_centres)
    for i in range(4):
        h = a.task.obstacle_centres[i]
        gaps = np.hypot(*(h[:, None] - h[None]).transpose(2, 0, 1))
        assert (gaps[~np.eye(len(h), dtype=bool)] > 2 * R + 0.2).all()
        assert (np.hypot(*(h - a.poses()[i, :2]).T) > R + 0.1).all()
        np.testing.assert_allclose(a.robots.arenas.obstacles[i], h)
    # No robot starts in contact.
    a.step(np.zeros((4, 2)))
    assert not a.task.contacts.any()
    with pytest.raises(ValueError, match='obstacle_radius'):
        make_vec_env(task='goal', obstacle_radius=0.0)
    with pytest.raises(ValueError, match='too little room'):
        make_vec_env(task='goal', n_obstacles=40)
    with pytest.raises(ValueError, match='wall_distance'):
        make_vec_env(task='goal', wall_distance=5.1)


def test_gymnasium_ids():
    env = gym.make('cpo_ros/PointGoal-v0', n_obstacles=4)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(2, np.float32))
    assert obs.shape == (21,) and info['cost'] in (0.0, 1.0) and 'goals' in info
    long = gym.make('cpo_ros/PointCircleLong-v0', x_limit=3.0, target_radius=10.0)
    task = long.unwrapped.task.params
    assert (task.max_episode_steps, task.x_limit, task.target_radius) == (500, 3.0, 10.0)
    long.reset(seed=0)
    ends = [long.step(np.zeros(2, np.float32))[3] for _ in range(500)]
    assert ends == [False] * 499 + [True]


def test_circle_long_is_a_project_task_with_options():
    env = make_vec_env(task='circle_long', num_envs=2, seed=0, x_limit=2.0)
    assert env.task.max_episode_steps == 500 and env.task.params.x_limit == 2.0
    assert env.task.params.target_radius == 15.0
    assert default_cost_limits('circle_long') == (25.0,)
    assert default_cost_limits('goal') == (50.0,)
    assert default_cost_limits(env_id='cpo_ros/PointGoal-v0') == (50.0,)
    assert default_cost_limits(env_id='MountainCarContinuous-v0') is None


def cli(*args):
    return subprocess.run([sys.executable, '-m', 'cpo_ros.cli', *args], capture_output=True,
                          text=True, timeout=600)


def test_train_and_eval_goal_end_to_end(tmp_path):
    out = tmp_path / 'goal'
    result = cli('train', '--task', 'goal', '--iterations', '2', '--steps-per-iteration', '4000',
                 '--num-envs', '4', '--out', str(out), '--quiet')
    assert result.returncode == 0, result.stderr
    assert 'cost limit in use: 50 per episode (default of goal)' in result.stdout
    assert 'cost_limit: 50.0' in (out / 'config.yaml').read_text()
    result = cli('eval', '--checkpoint', str(out / 'checkpoints/last.pt'), '--episodes', '2',
                 '--plot', str(tmp_path / 'goal.png'))
    assert result.returncode == 0, result.stderr
    assert 'limit 50.000' in result.stdout and (tmp_path / 'goal.png').stat().st_size > 1000
    result = cli('export', '--checkpoint', str(out / 'checkpoints/last.pt'), '--out',
                 str(tmp_path / 'policy'))
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / 'policy' / 'policy.json').read_text())
    assert meta['observation']['labels'][:5] == list(ROBOT_LABELS)
    assert meta['observation']['labels'][5:] == [f'scan_{i}' for i in range(16)]
    assert meta['task']['name'] == 'goal' and meta['task']['scan_range_max'] == 4.0


def test_env_ids_outside_the_project_need_a_cost_limit(tmp_path):
    result = cli('train', '--env-id', 'MountainCarContinuous-v0', '--iterations', '1',
                 '--out', str(tmp_path), '--quiet')
    assert result.returncode == 2
    assert '--cost-limit is required for MountainCarContinuous-v0' in result.stderr
    result = cli('train', '--env-id', 'cpo_ros/PointCircleLong-v0', '--iterations', '1',
                 '--steps-per-iteration', '1000', '--num-envs', '2', '--out', str(tmp_path),
                 '--quiet')
    assert result.returncode == 0, result.stderr
    assert 'cost limit in use: 25 per episode' in result.stdout


def test_a_safety_gymnasium_id_points_to_its_own_environment():
    # safety-gymnasium 1.0.0 cannot live in this environment (docs/training.md: Safety-Gymnasium).
    with pytest.raises(ValueError, match='own Python 3.10 environment'):
        make_vec_env(env_id='SafetyPointCircle1-v0', num_envs=1)
