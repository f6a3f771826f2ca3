"""The executor's side of on-policy training, free of ROS: act, record, cut rollouts.

Steps arrive as a stream (observation after the step, reward, cost, episode flags). The worker
answers each with an action from the newest policy and, every `steps` vector steps, hands out a
rollout. Then it stops acting until a policy newer than the one that sampled the rollout
arrives (CPO's guarantees hold for on-policy data only), or until `resume()` asks for another
chunk of the same version (a fleet whose learner still needs samples). A newer policy arriving
while a chunk is half sampled discards that part: a chunk holds one version only.
"""

import numpy as np

from cpo_ros.algo.buffer import RolloutCollector
from cpo_ros.algo.networks import GaussianPolicy, NumpyActor
from cpo_ros.validation import InvalidField


class RolloutWorker:
    """Sample actions with the latest policy version and collect rollouts of fixed length."""

    def __init__(self, num_envs: int, obs_dim: int, act_dim: int, steps: int, seed: int = 0,
                 deterministic: bool = False, num_costs: int = 1) -> None:
        self.num_envs, self.obs_dim, self.act_dim = num_envs, obs_dim, act_dim
        self.collector = RolloutCollector(num_envs, obs_dim, act_dim, steps, num_costs)
        self.rng = np.random.default_rng(seed)
        self.deterministic = deterministic
        self.policy: NumpyActor | None = None
        self.version = -1
        self.session = 0
        self._min_version = 0
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._restart_chunk = False
        self.discarded_samples = 0
        """Samples of half-sampled chunks dropped because a newer policy arrived."""

    def set_policy(self, arrays: dict[str, np.ndarray]) -> bool:
        """Swap in a policy from its arrays (with 'version'); return False for an older one.

        Within a session versions only grow; a new 'session' is taken at any version: a
        re-publication after a timeout, a rollback after an update that failed once its policy
        was out, a respawn that resumed from an older checkpoint. Which policies reach this at
        all is the executor's check: only those the learner announced
        (training/announcements.py), so no other publisher sets the version.

        The new policy is built completely before the reference is swapped, so an action is
        never computed from half-loaded weights. Raises InvalidField (a ValueError) naming the
        array that does not fit, before anything is built.
        """
        news = policy_news(arrays, self.version, self.session, self.policy is not None)
        if news is None:
            return False
        version, session, restarted = news
        policy = GaussianPolicy.from_arrays(arrays, self.obs_dim, self.act_dim)
        same_version = version == self.version
        self.policy, self.version, self.session = NumpyActor(policy), version, session
        # A chunk holds one version: a newer one cuts it. The same version re-published (a
        # learner that waited too long, or restarted from that version's checkpoint) does not.
        if same_version:
            pass
        elif self._pending is not None:
            self._restart_chunk = True  # the transition in flight completes, then the cut
        elif self.collector.t > 0:
            self._discard_partial()
        if restarted:
            # A restarted learner resumed from its checkpoint: sample for that version again
            # (a rollout it never used is lost with the old process).
            self._min_version = version
        return True

    def use_policy(self, policy: GaussianPolicy, version: int) -> None:
        """Act with a snapshot of an in-process policy (the direct trainer's path)."""
        self.policy, self.version = NumpyActor(policy), int(version)

    def reseed(self, seed: int) -> None:
        """Restart the action noise from seed and forget episodes in progress (envs were reset)."""
        self.rng = np.random.default_rng(seed)
        self.collector.reset_episodes()
        self._pending = None

    def _discard_partial(self) -> None:
        self.discarded_samples += self.collector.t * self.num_envs
        self.collector.clear()
        self._restart_chunk = False

    @property
    def paused(self) -> bool:
        """Return whether a chunk was handed out and no newer policy has arrived since."""
        return self.policy is not None and not self.can_act and self.collector.t == 0

    def resume(self) -> None:
        """Sample another chunk with the current policy version (the learner wants more)."""
        if self.paused and self.version >= self._min_version - 1:
            self._min_version = self.version

    @property
    def can_act(self) -> bool:
        """Return whether a policy recent enough for the next sample is loaded."""
        return self.policy is not None and self.version >= self._min_version

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Return actions (env units) for obs and remember the sample for record()."""
        if not self.can_act:
            raise RuntimeError('no policy recent enough to act')
        u, logp, action = self.policy.act(obs, self.deterministic, self.rng)
        self._pending = (np.asarray(obs, np.float32), u, logp)
        return action

    def record(self, reward: np.ndarray, cost: np.ndarray, terminated: np.ndarray,
               truncated: np.ndarray, final_obs: np.ndarray
               ) -> list[tuple[float, np.ndarray]]:
        """Complete the last action's transition; return (return, costs) of episodes that ended.

        cost is (N,) with one constraint, (N, m) with several; costs per episode are (m,).
        """
        if self._pending is None:
            return []
        obs, u, logp = self._pending
        self._pending = None
        before = len(self.collector.episode_return)
        self.collector.add(obs, u, logp, reward, cost, terminated, truncated, final_obs)
        ended = list(zip(self.collector.episode_return[before:],
                         self.collector.episode_cost[before:], strict=True))
        if self._restart_chunk:
            self._discard_partial()
        return ended

    def take_rollout(self, next_obs: np.ndarray) -> dict[str, np.ndarray] | None:
        """Return the finished rollout (and start the next one), or None when not full yet."""
        if not self.collector.full:
            return None
        rollout = self.collector.arrays(next_obs, self.version)
        self.collector.clear()
        self._min_version = self.version + 1
        return rollout


def policy_news(arrays: dict[str, np.ndarray], version_now: int, session_now: int,
                loaded: bool) -> tuple[int, int, bool] | None:
    """Return (version, session, restarted) of a policy worth loading, None for an older one.

    A newer version of the session loaded, or a new session at any version (see
    RolloutWorker.set_policy).
    """
    version = _scalar_int(arrays, 'version', -1)
    session = _scalar_int(arrays, 'session', 0)
    restarted = session != session_now and loaded
    if version <= version_now and not restarted:
        return None
    return version, session, restarted


def _scalar_int(arrays: dict[str, np.ndarray], key: str, default: int) -> int:
    """Return arrays[key] as int; InvalidField unless it is an integer scalar."""
    if key not in arrays:
        return default
    value = np.asarray(arrays[key])
    if value.shape != () or value.dtype.kind not in 'iu':
        raise InvalidField(key, f'need an integer scalar, got dtype {value.dtype} shape '
                           f'{value.shape}')
    return int(value)
