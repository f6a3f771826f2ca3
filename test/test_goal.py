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
from cpo_ros.sim.make import default_cost_limits, make_vec_env, vec_env
from cpo_ros.tasks import scan
from cpo_ros.tasks.goal import GoalParams as GoalTask
from cpo_ros.tasks.goal import hazard_ranges, ROBOT_LABELS

TASK = GoalTask()
SPEC = TASK.scan_spec
AHEAD = 8  # angle_min -pi, 16 rays: ray 8 points along the heading
FAR = [[40.0, 40.0]]  # a hazard nobody sees


def ray_at(angle: float) -> int:
    index = (angle - SPEC.angle_min) / SPEC.angle_increment
    assert index == pytest.approx(round(index))
    return int(round(index)) % SPEC.num_rays


def test_scan_reads_a_hazard_at_known_distance_and_bearing():
    pose = np.array([[1.0, -2.0, 0.0]])
    ahead = hazard_ranges(pose, np.array([[[4.0, -2.0]]]), TASK)
    assert ray_at(0.0) == AHEAD
    assert ahead[0, AHEAD] == pytest.approx(3.0 - TASK.hazard_radius)
    assert np.isinf(np.delete(ahead[0], [AHEAD - 1, AHEAD, AHEAD + 1])).all()
    # 45 degrees to the left of a robot heading along +y: world bearing 135 degrees.
    d = 2.5
    pose = np.array([[0.0, 0.0, math.pi / 2]])
    hazard = np.array([[[d * math.cos(3 * math.pi / 4), d * math.sin(3 * math.pi / 4)]]])
    ranges = hazard_ranges(pose, hazard, TASK)
    assert ranges[0, ray_at(math.pi / 4)] == pytest.approx(d - TASK.hazard_radius)
    assert np.isinf(ranges[0, ray_at(-math.pi / 4)])  # the mirror image sees nothing
    # The nearer of two hazards on one ray wins; beyond range_max reads +inf (REP 117).
    two = hazard_ranges(np.zeros((1, 3)), np.array([[[3.0, 0.0], [1.5, 0.0]]]), TASK)
    assert two[0, AHEAD] == pytest.approx(1.5 - TASK.hazard_radius)
    far = hazard_ranges(np.zeros((1, 3)), np.array([[[SPEC.range_max + 1.0, 0.0]]]), TASK)
    assert np.isinf(far).all()
    assert scan.closeness(far, SPEC)[0].tolist() == [0.0] * SPEC.num_rays
    # A ray that passes beside a disc misses it; inside a disc every ray reads 0.
    beside = hazard_ranges(np.zeros((1, 3)), np.array([[[3.0, 1.2]]]), TASK)
    assert np.isinf(beside[0, AHEAD])
    inside = hazard_ranges(np.zeros((1, 3)), np.array([[[0.3, 0.0]]]), TASK)
    assert (inside == 0.0).all() and (scan.closeness(inside, SPEC) == 1.0).all()


def test_a_real_laser_scan_resamples_onto_the_same_rays():
    fine = scan.ScanSpec(num_rays=720, range_max=SPEC.range_max)
    pose = np.array([[0.5, 0.5, 0.3]])
    hazards = np.array([[[2.0, 1.0], [-1.0, 2.5], [0.0, -2.0]]])
    real = scan.disc_ranges(pose, hazards, TASK.hazard_radius, fine)[0]
    real[::7] = np.nan  # a real scanner drops readings
    coarse = scan.resample(real, fine.angle_min, fine.angle_increment, SPEC)
    sim = hazard_ranges(pose, hazards, TASK)[0]
    # The reading on the ray's own angle, or a neighbour's (0.5 degrees off) where it dropped.
    both = np.isfinite(sim) & np.isfinite(coarse)
    assert both.sum() >= 3 and np.allclose(coarse[both], sim[both], atol=0.1)
    assert (np.isfinite(sim) != np.isfinite(coarse)).sum() <= 1
    # A LaserScan with its own angle_min and fewer rays: one return at +90 degrees, 2 m.
    ranges = np.full(8, np.inf)
    ranges[4] = 2.0
    ranges[5] = 0.01  # below the scanner's range_min: invalid
    coarse = scan.resample(ranges, -math.pi / 2, math.pi / 4, SPEC, range_min=0.05)
    # Rays within one scan increment (45 degrees) of +90 read it; the others see nothing.
    near = [ray_at(math.pi / 2 + k * SPEC.angle_increment) for k in (-2, -1, 0, 1, 2)]
    assert coarse[near].tolist() == [2.0] * 5
    assert np.isinf(np.delete(coarse, near)).all()


def test_a_sensor_msgs_laser_scan_feeds_the_same_observation():
    from sensor_msgs.msg import LaserScan

    # A 360-ray scanner seeing a hazard 2 m straight ahead (its near edge at 1.3 m).
    fine = scan.ScanSpec(num_rays=360, range_max=10.0)
    ranges = scan.disc_ranges(np.zeros((1, 3)), np.array([[[2.0, 0.0]]]), TASK.hazard_radius,
                              fine)[0]
    msg = LaserScan(angle_min=fine.angle_min, angle_max=fine.angle_max,
                    angle_increment=fine.angle_increment, range_min=0.05, range_max=10.0,
                    ranges=np.where(np.isinf(ranges), np.inf, ranges).astype(np.float32).tolist())
    seen = scan.resample(msg.ranges, msg.angle_min, msg.angle_increment, SPEC, msg.range_min,
                         msg.range_max)
    sim = hazard_ranges(np.zeros((1, 3)), np.array([[[2.0, 0.0]]]), TASK)[0]
    np.testing.assert_allclose(scan.closeness(seen, SPEC), scan.closeness(sim, SPEC), atol=1e-6)


def test_cost_is_one_per_step_inside_a_hazard():
    env = vec_env('goal', 2, seed=0)
    env.reset(seed=0)
    hazards = np.array(FAR * TASK.n_hazards)
    inside, outside = hazards.copy(), hazards.copy()
    inside[0] = [0.5, 0.0]
    outside[0] = [TASK.hazard_radius + 0.5, 0.0]
    env.place(0, (0.0, 0.0, 0.0), hazards=inside, goal=(-3.0, 3.0))
    env.place(1, (0.0, 0.0, 0.0), hazards=outside, goal=(-3.0, 3.0))
    _, _, cost, *_ = env.step(np.zeros((2, 2)))
    assert cost.tolist() == [1.0, 0.0]
    obs, _, cost, *_ = env.step(np.zeros((2, 2)))
    assert cost.tolist() == [1.0, 0.0]  # every step inside costs again
    assert (obs[0, len(ROBOT_LABELS):] == 1.0).all()
    assert obs[1, len(ROBOT_LABELS) + AHEAD] == pytest.approx(1 - 0.5 / SPEC.range_max, 1e-5)


def test_progress_is_rewarded_and_a_reached_goal_is_replaced():
    env = vec_env('goal', 1, seed=0)
    env.reset(seed=0)
    env.place(0, (0.0, 0.0, 0.0), hazards=np.array(FAR * TASK.n_hazards), goal=(3.0, 0.0))
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
    assert (np.hypot(*(env.task.hazards[0] - goal).T) > TASK.hazard_radius).all()
    _, reward, _, _, _, info = env.step(np.zeros((1, 2)))
    assert info['goals'][0] == 0 and abs(reward[0]) < 1e-3


def test_episodes_truncate_at_1000_steps_and_reset_with_final_obs():
    env = vec_env('goal', 3, seed=4)
    obs = env.reset()
    layout = env.task.hazards.copy()
    assert obs.shape == (3, 5 + 16) and env.max_episode_steps == 1000
    for step in range(1, 1001):
        obs, _, _, terminated, truncated, info = env.step(np.zeros((3, 2)))
        if step < 1000:
            assert not truncated.any()
    assert truncated.all() and not terminated.any()
    assert not np.allclose(env.task.hazards, layout)  # a fresh layout
    assert not np.allclose(info['final_obs'], obs)
    assert (env.episode_step == 0).all()


def test_layouts_are_seeded_and_valid():
    a, b = vec_env('goal', 4, seed=0), vec_env('goal', 4, seed=0)
    np.testing.assert_array_equal(a.reset(seed=7), b.reset(seed=7))
    np.testing.assert_array_equal(a.task.hazards, b.task.hazards)
    for i in range(4):
        h = a.task.hazards[i]
        gaps = np.hypot(*(h[:, None] - h[None]).transpose(2, 0, 1))
        assert (gaps[~np.eye(len(h), dtype=bool)] > 2 * TASK.hazard_radius).all()
        assert (np.hypot(*(h - a.poses()[i, :2]).T) > 2 * TASK.hazard_radius).all()
    with pytest.raises(ValueError, match='hazard_radius'):
        vec_env('goal', 1, hazard_radius=0.0)
    with pytest.raises(ValueError, match='too little room'):
        vec_env('goal', 1, n_hazards=40)
    with pytest.raises(ValueError, match='unknown goal settings'):
        vec_env('goal', 1, hazard_radious=1.0)


def test_gymnasium_ids():
    env = gym.make('cpo_ros/PointGoal-v0', n_hazards=4)
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
