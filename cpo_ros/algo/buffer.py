"""Rollouts: collecting (T, N) arrays while stepping N envs, and GAE for reward and each cost.

A rollout is a dict of numpy arrays (it travels as .npz bytes between the ROS nodes):

    obs (T, N, D), u (T, N, A) raw policy samples, logp (T, N), reward (T, N), cost (T, N)
    with one constraint or (T, N, m) with m > 1 (episode_cost then (E, m)),
    terminated (T, N), truncated (T, N), final_obs (T, N, D) the last observation of an episode
    that ended at t (only rows where terminated | truncated matter), last_obs (N, D) the
    observation after the final step, episode_return / episode_cost / episode_length (E,) of the
    episodes that ended inside the rollout, policy_version () the policy that sampled it;
    episode_end (E, 2) the step and env where each of those episodes ended (to cut a rollout
    short, training/fleet.py).
"""

import numpy as np

from cpo_ros.validation import InvalidField

ROLLOUT_KEYS = ('obs', 'u', 'logp', 'reward', 'cost', 'terminated', 'truncated', 'final_obs',
                'last_obs', 'episode_return', 'episode_cost', 'episode_length', 'policy_version')
# dtype kinds of the keys that are not floats: bool flags, integer lengths and version.
_ROLLOUT_KINDS = {'terminated': 'b', 'truncated': 'b', 'episode_length': 'iu',
                  'policy_version': 'iu'}
_KIND_NAMES = {'f': 'a float type', 'b': 'bool', 'iu': 'an integer type'}


class RolloutCollector:
    """Accumulate N parallel env streams for T steps, tracking finished episodes' sums."""

    def __init__(self, num_envs: int, obs_dim: int, act_dim: int, steps: int,
                 num_costs: int = 1) -> None:
        self.num_envs, self.obs_dim, self.act_dim, self.steps = num_envs, obs_dim, act_dim, steps
        self.num_costs = num_costs
        n, t, m = num_envs, steps, num_costs
        self.obs = np.zeros((t, n, obs_dim), np.float32)
        self.u = np.zeros((t, n, act_dim), np.float32)
        self.logp = np.zeros((t, n), np.float32)
        self.reward = np.zeros((t, n), np.float32)
        self.cost = np.zeros((t, n, m), np.float32)
        self.terminated = np.zeros((t, n), bool)
        self.truncated = np.zeros((t, n), bool)
        self.final_obs = np.zeros((t, n, obs_dim), np.float32)
        self._ret = np.zeros(n)
        self._cst = np.zeros((n, m))
        self._len = np.zeros(n, np.int64)
        self.clear()

    def clear(self) -> None:
        """Start a new rollout; episodes in progress carry on."""
        self.t = 0
        self.episode_return: list[float] = []
        self.episode_cost: list[np.ndarray] = []
        self.episode_length: list[int] = []
        self.episode_end: list[tuple[int, int]] = []

    def reset_episodes(self) -> None:
        """Forget episodes in progress (the envs were reset)."""
        self._ret[:] = 0.0
        self._cst[:] = 0.0
        self._len[:] = 0

    @property
    def full(self) -> bool:
        """Return whether T steps have been added."""
        return self.t >= self.steps

    def add(self, obs: np.ndarray, u: np.ndarray, logp: np.ndarray, reward: np.ndarray,
            cost: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
            final_obs: np.ndarray) -> None:
        """Store one vector step; final_obs rows matter where an episode ended.

        cost is (N,) with one constraint, (N, m) with several.
        """
        t = self.t
        cost = np.asarray(cost, np.float32).reshape(self.num_envs, self.num_costs)
        if t >= self.steps:
            raise IndexError(f'rollout already holds {self.steps} steps')
        self.obs[t], self.u[t], self.logp[t] = obs, u, logp
        self.reward[t], self.cost[t] = reward, cost
        self.terminated[t], self.truncated[t] = terminated, truncated
        done = np.logical_or(terminated, truncated)
        if done.any():
            self.final_obs[t][done] = final_obs[done]
        self._ret += reward
        self._cst += cost
        self._len += 1
        for i in np.flatnonzero(done):
            self.episode_return.append(float(self._ret[i]))
            self.episode_cost.append(self._cst[i].copy())
            self.episode_length.append(int(self._len[i]))
            self.episode_end.append((t, int(i)))
        self._ret[done] = 0.0
        self._cst[done] = 0.0
        self._len[done] = 0
        self.t = t + 1

    def arrays(self, last_obs: np.ndarray, policy_version: int = 0) -> dict[str, np.ndarray]:
        """Return copies of the rollout data in a dict; the module docstring lists the keys."""
        t, m = self.t, self.num_costs
        episode_cost = np.asarray(self.episode_cost, np.float64).reshape(-1, m)
        return {
            'obs': self.obs[:t].copy(), 'u': self.u[:t].copy(), 'logp': self.logp[:t].copy(),
            'reward': self.reward[:t].copy(),
            'cost': self.cost[:t, :, 0].copy() if m == 1 else self.cost[:t].copy(),
            'terminated': self.terminated[:t].copy(), 'truncated': self.truncated[:t].copy(),
            'final_obs': self.final_obs[:t].copy(),
            'last_obs': np.asarray(last_obs, np.float32).copy(),
            'episode_return': np.asarray(self.episode_return, np.float64),
            'episode_cost': episode_cost[:, 0] if m == 1 else episode_cost,
            'episode_length': np.asarray(self.episode_length, np.int64),
            'episode_end': np.asarray(self.episode_end, np.int64).reshape(-1, 2),
            'policy_version': np.asarray(policy_version, np.int64),
        }


def cost_matrix(costs: np.ndarray, leading: int) -> np.ndarray:
    """Return costs with the constraint axis last: (..., m), m = 1 for a single constraint."""
    costs = np.asarray(costs)
    return costs[..., None] if costs.ndim == leading else costs


def validate_rollout(rollout: dict[str, np.ndarray], obs_dim: int, act_dim: int,
                     num_costs: int = 1) -> None:
    """Raise InvalidField unless rollout has every key with the right dtype, shape and values.

    Floats where the module docstring has floats (finite), bool flags, integer episode lengths
    (>= 1) and version: a rollout that passes cannot fail the update for its form.
    """
    missing = [k for k in ROLLOUT_KEYS if k not in rollout]
    if missing:
        raise InvalidField(missing[0], f'rollout lacks {missing}')
    for key in ROLLOUT_KEYS:
        kind = np.asarray(rollout[key]).dtype.kind
        want = _ROLLOUT_KINDS.get(key, 'f')
        if kind not in want:
            raise InvalidField(key, f'rollout {key} has dtype {rollout[key].dtype}, expected '
                               f'{_KIND_NAMES[want]}')
    obs = rollout['obs']
    if obs.ndim != 3 or obs.shape[2] != obs_dim or obs.shape[0] == 0 or obs.shape[1] == 0:
        raise InvalidField('obs', f'rollout obs has shape {obs.shape}, expected '
                           f'(T>0, N>0, {obs_dim})')
    t, n = obs.shape[:2]
    cost_shape = (t, n) if num_costs == 1 else (t, n, num_costs)
    expected = {'u': (t, n, act_dim), 'logp': (t, n), 'reward': (t, n), 'cost': cost_shape,
                'terminated': (t, n), 'truncated': (t, n), 'final_obs': (t, n, obs_dim),
                'last_obs': (n, obs_dim), 'policy_version': ()}
    for key, shape in expected.items():
        if tuple(rollout[key].shape) != shape:
            raise InvalidField(key, f'rollout {key} has shape {rollout[key].shape}, '
                               f'expected {shape}')
    episodes = len(rollout['episode_length']) if rollout['episode_length'].ndim == 1 else -1
    episode_shapes = {'episode_return': (episodes,), 'episode_length': (episodes,),
                      'episode_cost': (episodes, *cost_shape[2:])}
    for key, shape in episode_shapes.items():
        if episodes < 0 or tuple(rollout[key].shape) != shape:
            raise InvalidField(key, f'rollout {key} has shape {rollout[key].shape}, expected '
                               f'{shape} (one row per finished episode, one column per '
                               f'constraint when there are {num_costs} > 1)')
    if episodes > t * n:
        raise InvalidField('episode_length', f'{episodes} episodes in {t * n} samples')
    for key in ROLLOUT_KEYS:
        if _ROLLOUT_KINDS.get(key, 'f') == 'f' and not np.all(np.isfinite(rollout[key])):
            raise InvalidField(key, f'rollout {key} holds non-finite values')
    if np.any(rollout['episode_length'] < 1):
        raise InvalidField('episode_length', 'rollout episode_length holds values below 1')


def rollout_size_cap(samples: int, obs_dim: int, act_dim: int, num_costs: int = 1) -> int:
    """Return a generous bound on the bytes of a rollout of this many samples (twice float64).

    Per sample: obs and final_obs, u, logp, reward, the costs, two flags, and at most one
    finished episode (return, costs, length); 1 MiB covers last_obs and the archive's overhead.
    """
    per_sample = 8 * (2 * obs_dim + act_dim + 3 + 2 * num_costs + 2) + 2
    return 2 * per_sample * int(samples) + 2 ** 20


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, dones: np.ndarray,
        gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Return (advantages, value targets) over (T, N) arrays.

    next_values[t] is the value of the state after step t: 0 where the episode terminated, the
    value of the final observation where it was truncated, V(obs[t + 1]) otherwise. dones[t]
    (terminated or truncated) stops the recursion from reaching into the next episode.
    """
    t_len = rewards.shape[0]
    adv = np.zeros_like(rewards, dtype=np.float64)
    last = np.zeros(rewards.shape[1:], dtype=np.float64)
    deltas = rewards + gamma * next_values - values
    keep = 1.0 - dones.astype(np.float64)
    for t in reversed(range(t_len)):
        last = deltas[t] + gamma * lam * keep[t] * last
        adv[t] = last
    return adv, adv + values


def next_values(values: np.ndarray, last_value: np.ndarray, final_values: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
    """Return the bootstrap value after each step: SB3's rule for truncated vs terminated."""
    nxt = np.concatenate([values[1:], last_value[None]], axis=0)
    nxt = np.where(truncated, final_values, nxt)
    return np.where(terminated, 0.0, nxt)


def episode_summary(rollout: dict[str, np.ndarray], max_episode_steps: int | None
                    ) -> dict[str, float]:
    """Return mean episode return, cost and length of the episodes that ended in the rollout.

    'episode_costs' holds the mean cost of each constraint, 'episode_cost' the first's.

    With no finished episode (a rollout shorter than an episode) the per-step means are scaled
    to an episode of max_episode_steps (or of the rollout's length), so J_C is still measured on
    the newest batch.
    """
    if len(rollout['episode_cost']) > 0:
        per_episode = cost_matrix(rollout['episode_cost'], 1)
        costs = per_episode.mean(axis=0)
        count = per_episode.shape[0]
        se = (per_episode.std(axis=0, ddof=1) / np.sqrt(count) if count > 1
              else np.zeros_like(costs))
        return {'episode_return': float(np.mean(rollout['episode_return'])),
                'episode_cost': float(costs[0]), 'episode_costs': costs,
                'episode_cost_se': se,
                'episode_length': float(np.mean(rollout['episode_length'])),
                'episodes': float(len(rollout['episode_cost']))}
    length = float(max_episode_steps or rollout['reward'].shape[0])
    costs = cost_matrix(rollout['cost'], 2).mean(axis=(0, 1)) * length
    return {'episode_return': float(rollout['reward'].mean() * length),
            'episode_cost': float(costs[0]), 'episode_costs': costs,
            'episode_cost_se': np.zeros_like(costs),
            'episode_length': length, 'episodes': 0.0}
