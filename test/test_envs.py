"""Point-Circle: task functions on hand-placed states, robot kinematics, env contracts."""

import gymnasium as gym
import numpy as np
import pytest

import cpo_ros.sim  # noqa: F401 - registers cpo_ros/PointCircle-v0
from cpo_ros.sim.make import make_vec_env, vec_env
from cpo_ros.sim.robot import PointRobots, RobotConfig
from cpo_ros.sim.vec_env import TaskEnv
from cpo_ros.tasks import circle
from cpo_ros.tasks.circle import CircleParams as CircleTask

TASK = CircleTask()


def test_reward_on_hand_placed_states():
    # At (2, 0) heading +y at 1 m/s: v . [-y, x] = 2, distance to the circle 13.
    r = circle.reward(np.array([2.0, 0.0, np.pi / 2]), np.array([1.0, 0.0]), TASK)
    assert r[0] == pytest.approx(2.0 / 14.0, rel=1e-6)
    # On the circle, moving counter-clockwise at 1 m/s: reward = radius.
    r = circle.reward(np.array([0.0, 15.0, np.pi]), np.array([1.0, 0.0]), TASK)
    assert r[0] == pytest.approx(15.0, rel=1e-6)
    # Clockwise is penalised; standing still earns nothing.
    assert circle.reward(np.array([0.0, 15.0, 0.0]), np.array([1.0, 0.0]), TASK)[0] < 0
    assert circle.reward(np.array([3.0, 1.0, 0.3]), np.array([0.0, 0.5]), TASK)[0] == 0.0


def test_cost_is_one_outside_the_strip():
    poses = np.array([[2.6, 0, 0], [-2.6, 5, 0], [2.4, -3, 1], [0, 0, 0], [2.5, 0, 0]])
    np.testing.assert_array_equal(circle.cost(poses, TASK), [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(circle.in_safe_area(poses, TASK), [0, 0, 1, 1, 1])
    assert circle.cost(poses, CircleTask(x_limit=3.0)).sum() == 0


def test_robot_drives_along_its_heading_and_turns():
    robots = PointRobots(2)
    robots.set_pose([0, 1], 0.0, 0.0, [0.0, np.pi / 2])
    for _ in range(10):  # 2 s at 1 m/s
        robots.step(np.array([[1.0, 0.0], [1.0, 0.0]]))
    pose = robots.pose()
    assert pose[0, 0] == pytest.approx(2.0, abs=0.1) and abs(pose[0, 1]) < 1e-6
    assert pose[1, 1] == pytest.approx(2.0, abs=0.1) and abs(pose[1, 0]) < 1e-6
    np.testing.assert_allclose(robots.twist()[:, 0], 1.0, atol=1e-3)
    robots.set_pose(0, 0.0, 0.0, 0.0)
    for _ in range(5):  # 1 s at 1 rad/s
        robots.step(np.array([[0.0, 1.0], [0.0, 0.0]]))
    assert robots.pose()[0, 2] == pytest.approx(1.0, abs=0.06)


def test_commands_are_clipped_and_checked():
    robots = PointRobots(1, RobotConfig(max_linear_velocity=0.5))
    for _ in range(10):
        robots.step(np.array([[10.0, 0.0]]))
    assert robots.twist()[0, 0] == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError, match=r'expected \(1, 2\)'):
        robots.step(np.zeros(2))
    with pytest.raises(ValueError, match='non-finite'):
        robots.step(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match='control_dt'):
        PointRobots(1, RobotConfig(control_dt=0.1, physics_dt=0.03))


def test_gym_env_truncates_and_reports_cost():
    env = gym.make('cpo_ros/PointCircle-v0', max_episode_steps=5)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6,)
    for t in range(5):
        obs, reward, terminated, truncated, info = env.step(np.array([1.5, 0.0], np.float32))
        assert 'cost' in info and not terminated
        assert truncated == (t == 4)
    with pytest.raises(ValueError, match='expected'):
        env.unwrapped.step(np.zeros(3))


def test_gym_env_passes_the_checker():
    from gymnasium.utils.env_checker import check_env
    check_env(TaskEnv('circle'), skip_render_check=True)


def test_vector_env_autoresets_with_final_obs():
    env = vec_env('circle', 3, max_episode_steps=4, seed=1)
    env.reset(seed=1)
    for _ in range(4):
        obs, reward, cost, terminated, truncated, info = env.step(np.tile([1.5, 0.0], (3, 1)))
    assert truncated.all() and not terminated.any()
    # The returned observation is of the new episode (near the origin, at rest) ...
    assert np.abs(obs[:, :2]).max() <= 0.1 + 1e-6 and np.abs(obs[:, 4]).max() < 1e-6
    # ... the final one is where the episode ended, about 4 * 0.2 * 1.5 m out.
    assert np.all(np.hypot(info['final_obs'][:, 0], info['final_obs'][:, 1]) > 0.9)
    np.testing.assert_allclose(info['final_obs'], circle.observation(info['final_pose'],
                                                                     info['final_twist']))
    assert (info['episode_step'] == 4).all()
    with pytest.raises(ValueError, match='expected'):
        env.step(np.zeros((2, 2)))


def test_vector_env_is_seeded():
    def run(seed):
        env = vec_env('circle', 2, seed=seed)
        out = [env.reset(seed=seed)]
        rng = np.random.default_rng(0)
        for _ in range(60):
            out.append(env.step(rng.uniform(-1, 1, (2, 2)))[0])
        return np.stack(out)
    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


class SixTupleEnv(gym.Env):
    """A Safety-Gymnasium-style env: step returns (obs, reward, cost, terminated, truncated)."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return (np.full(2, self.t / 10, np.float32), float(action[0]), 0.5, False, self.t >= 3,
                {})


class CostInInfoEnv(SixTupleEnv):
    def step(self, action):
        obs, reward, cost, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {'cost': cost}


class NoCostEnv(SixTupleEnv):
    def step(self, action):
        obs, reward, _cost, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {}


for _name, _cls in (('SixTuple', SixTupleEnv), ('CostInInfo', CostInInfoEnv),
                    ('NoCost', NoCostEnv)):
    if f'test/{_name}-v0' not in gym.registry:
        gym.register(f'test/{_name}-v0', entry_point=_cls)


@pytest.mark.parametrize('env_id', ['test/SixTuple-v0', 'test/CostInInfo-v0'])
def test_any_env_with_a_cost_is_accepted(env_id):
    env = make_vec_env(env_id=env_id, num_envs=2, seed=0)
    obs = env.reset(seed=0)
    assert obs.shape == (2, 2) and env.act_dim == 1
    for _ in range(3):
        obs, reward, cost, terminated, truncated, info = env.step(np.full((2, 1), 0.25))
    np.testing.assert_allclose(cost, 0.5)
    np.testing.assert_allclose(reward, 0.25)
    assert truncated.all()
    np.testing.assert_allclose(info['final_obs'], 0.3, rtol=1e-6)
    np.testing.assert_allclose(obs, 0.0)


def test_clear_errors():
    with pytest.raises(ValueError, match='unknown env id'):
        make_vec_env(env_id='NoSuchEnv-v9')
    with pytest.raises(ValueError, match='unknown task'):
        make_vec_env(task='square')
    env = make_vec_env(env_id='test/NoCost-v0')
    env.reset()
    with pytest.raises(ValueError, match='no "cost"'):
        env.step(np.zeros((1, 1)))
    with pytest.raises(ValueError, match='x_limit'):
        vec_env('circle', 1, x_limit=-1.0)
    with pytest.raises(ValueError, match='unknown circle settings'):
        vec_env('circle', 1, x_limt=1.0)


def test_domain_randomization_changes_dynamics_latency_and_odometry():
    from cpo_ros.sim.vec_env import DomainRandomization

    def distance(randomization, steps=10):
        env = vec_env('circle', 1, seed=0, init_position_noise=0.0, randomization=randomization)
        env.reset(seed=0)
        start = env.poses()[0, :2]
        for _ in range(steps):
            env.step(np.array([[1.0, 0.0]]))
        return float(np.linalg.norm(env.poses()[0, :2] - start))
    nominal = distance(DomainRandomization())
    assert distance(DomainRandomization(gain_scale=(0.5, 0.5))) == pytest.approx(
        nominal / 2, rel=0.05)
    assert distance(DomainRandomization(max_latency_steps=0), 2) > 0.2
    # With latency the first commands have not acted yet (drawn 0..3 per episode: seed 0 > 0).
    late = vec_env('circle', 4, seed=0, randomization=DomainRandomization(max_latency_steps=3))
    late.reset(seed=0)
    late.step(np.tile([1.0, 0.0], (4, 1)))
    delayed = late.latency > 0
    assert delayed.any() and np.all(np.abs(late.twists()[delayed, 0]) < 1e-9)
    noisy = vec_env('circle', 2, seed=0, randomization=DomainRandomization(position_noise=0.5))
    obs = noisy.reset(seed=0)
    assert np.abs(obs[:, :2] - noisy.poses()[:, :2]).max() > 0.05
    with pytest.raises(ValueError, match='mass_scale'):
        vec_env('circle', 1, randomization=DomainRandomization(mass_scale=(2.0, 1.0)))
