"""Step Gymnasium envs in worker processes that share their arrays with the trainer.

Worker k holds a contiguous slice of the envs as a GymVecEnv of its own, so auto-reset, the
cost conventions (info['cost'] or Safety-Gymnasium's 6-tuple) and the seeds (env i reset with
seed + i) are the serial env's, and the results are identical to it. Actions, observations,
rewards, costs and flags travel through shared memory; the pipes carry only the command and
the answer. The trainer waits on every worker's pipe and process sentinel together: a worker
that dies wakes it at once with an EnvWorkerError naming the worker, one that stops answering
raises it after timeout_s.
"""

from collections.abc import Callable
import contextlib
import ctypes
import multiprocessing as mp
from multiprocessing import connection
import pickle
import signal
import threading
import time
import traceback
from typing import Any
import weakref

import gymnasium as gym
import numpy as np

DEFAULT_TIMEOUT_S = 300.0
"""How long a worker may take over one command before it counts as stuck [s]: far above a
Safety-Gymnasium reset (tens of ms), so only a hang reaches it; a death is noticed at once."""
STARTUP_TIMEOUT_S = 300.0
"""How long a worker may take to start [s]: a spawned process imports the main script, the
env's modules and builds its envs, seconds on a busy machine."""

# Workers are spawned, not forked: the trainer holds torch threads and a critic process, and a
# fork of a threaded process may inherit a held lock. The env factory must therefore pickle
# (make_vec_env's does), and ids registered by the main script are registered again because
# spawn imports that script in the worker.
_CONTEXT = mp.get_context('spawn')


class EnvWorkerError(RuntimeError):
    """An env worker died, did not answer in time, or its env raised."""


@contextlib.contextmanager
def _sigint_ignored():
    """Ignore Ctrl-C while a worker starts: the ignore is inherited across the spawn's exec.

    A worker ignores SIGINT (the trainer stops it), but a spawned one sets that only after
    its bootstrap has imported the main module, seconds later: a Ctrl-C then printed a
    KeyboardInterrupt traceback from each. Only the main thread may set handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _signal_name(exitcode: int | None) -> str:
    if exitcode is None or exitcode >= 0:
        return f'exit code {exitcode}'
    try:
        return f'killed by {signal.Signals(-exitcode).name}'
    except ValueError:
        return f'killed by signal {-exitcode}'


class _Buffers:
    """The shared arrays of all envs; each worker reads and writes its own rows."""

    def __init__(self, num_envs: int, obs_dim: int, act_dim: int,
                 raw: dict[str, Any] | None = None) -> None:
        n = num_envs
        shapes = {'actions': ((n, act_dim), np.float32), 'obs': ((n, obs_dim), np.float32),
                  'final_obs': ((n, obs_dim), np.float32), 'reward': ((n,), np.float32),
                  'cost': ((n,), np.float32), 'terminated': ((n,), np.bool_),
                  'truncated': ((n,), np.bool_)}
        if raw is None:
            ctype = {np.float32: ctypes.c_float, np.bool_: ctypes.c_bool}
            raw = {name: _CONTEXT.RawArray(ctype[dtype], int(np.prod(shape)))
                   for name, (shape, dtype) in shapes.items()}
        self.raw = raw
        self.arrays = {name: np.frombuffer(raw[name], dtype=dtype).reshape(shape)
                       for name, (shape, dtype) in shapes.items()}


def _send_error(conn: connection.Connection, exc: BaseException) -> None:
    text = ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        # Some exceptions pickle but do not unpickle (an __init__ with more arguments than
        # it passes to Exception): tried here, so the trainer never fails to read the answer.
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - an exception that does not round-trip goes as text
        conn.send(('error', (None, text)))
    else:
        conn.send(('error', (exc, text)))


def _work(env_fn: Callable[[], gym.Env], start: int, count: int, env_id: str, seed: int,
          num_envs: int, obs_dim: int, act_dim: int, raw: dict[str, Any],
          conn: connection.Connection) -> None:
    """Serve commands for envs start..start+count-1 until 'close' or the trainer is gone."""
    # Ctrl-C reaches the whole process group; the trainer handles it and closes the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from cpo_ros.sim.make import GymVecEnv

    rows = slice(start, start + count)
    views = {name: array[rows] for name, array in _Buffers(num_envs, obs_dim, act_dim,
                                                            raw).arrays.items()}
    try:
        env = GymVecEnv([env_fn] * count, env_id, seed + start)
    except BaseException as exc:  # noqa: BLE001 - reported to the trainer
        _send_error(conn, exc)
        return
    conn.send(('ok', None))
    while True:
        try:
            command, arg = conn.recv()
        except (EOFError, OSError):
            break  # the trainer is gone
        if command == 'close':
            break
        try:
            if command == 'step':
                # A copy: an env may keep the action it was given, and the trainer overwrites
                # the shared rows with the next one.
                obs, reward, cost, terminated, truncated, info = env.step(
                    views['actions'].copy())
                views['obs'][:], views['final_obs'][:] = obs, info['final_obs']
                views['reward'][:], views['cost'][:] = reward, cost
                views['terminated'][:], views['truncated'][:] = terminated, truncated
            elif command == 'reset':
                views['obs'][:] = env.reset(seed=None if arg is None else arg + start)
            else:
                raise ValueError(f'unknown command {command!r}')
        except Exception as exc:  # noqa: BLE001 - reported to the trainer
            _send_error(conn, exc)
            continue
        conn.send(('ok', None))
    for one in env.envs:
        try:
            one.close()
        except Exception:  # noqa: BLE001, S110 - closing is best effort at shutdown
            pass


class _Worker:
    def __init__(self, index: int, start: int, count: int, process: Any,
                 conn: connection.Connection) -> None:
        self.index, self.start, self.count = index, start, count
        self.process, self.conn = process, conn


def _shutdown(workers: list[_Worker], grace_s: float = 5.0) -> None:
    """Ask every live worker to close, then end the ones that do not within grace_s."""
    for w in workers:
        try:
            w.conn.send(('close', None))
        except OSError:
            pass
    deadline = time.monotonic() + grace_s
    for w in workers:
        w.process.join(max(0.0, deadline - time.monotonic()))
        if w.process.is_alive():
            w.process.terminate()
            w.process.join(grace_s)
        if w.process.is_alive():
            w.process.kill()
            w.process.join()
        w.conn.close()


class GymWorkerVecEnv:
    """num_envs Gymnasium envs stepped by `workers` processes, with GymVecEnv's interface."""

    def __init__(self, env_fn: Callable[[], gym.Env], num_envs: int, env_id: str,
                 seed: int = 0, workers: int = 2, timeout_s: float = DEFAULT_TIMEOUT_S,
                 startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        from cpo_ros.sim.make import GymVecEnv

        if not 1 <= workers <= num_envs:
            raise ValueError(f'env_workers = {workers} is out of range: allowed 1 to num_envs '
                             f'= {num_envs} (each worker steps one env or more)')
        # One env in this process for the spaces (and GymVecEnv's checks of them), as
        # Gymnasium's AsyncVectorEnv does: the shared arrays are sized before the workers start.
        probe = GymVecEnv([env_fn], env_id, seed)
        for attr in ('single_observation_space', 'single_action_space', 'obs_dim', 'act_dim',
                     'cost_names', 'num_costs', 'max_episode_steps'):
            setattr(self, attr, getattr(probe, attr))
        probe.envs[0].close()
        self.env_id, self.num_envs, self.seed, self.timeout_s = env_id, num_envs, seed, timeout_s
        self._buffers = _Buffers(num_envs, self.obs_dim, self.act_dim)
        self._workers: list[_Worker] = []
        self._closed_reason: str | None = None
        # Slices as even as possible: the first num_envs % workers workers hold one env more.
        counts = [num_envs // workers + (k < num_envs % workers) for k in range(workers)]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)
        for k, (start, count) in enumerate(zip(starts, counts, strict=True)):
            parent, child = _CONTEXT.Pipe()
            process = _CONTEXT.Process(
                target=_work, name=f'cpo_ros env worker {k}', daemon=True,
                args=(env_fn, int(start), count, env_id, seed, num_envs, self.obs_dim,
                      self.act_dim, self._buffers.raw, child))
            with _sigint_ignored():
                process.start()
            child.close()  # only the worker holds its end: its death reads as end of file
            self._workers.append(_Worker(k, int(start), count, process, parent))
        self._wait('start-up', startup_timeout_s)

    def describe(self, w: _Worker) -> str:
        """Return how errors name a worker: index, pid and its envs."""
        last = w.start + w.count - 1
        envs = f'env {w.start}' if w.count == 1 else f'envs {w.start}-{last}'
        return (f'env worker {w.index} of {len(self._workers)} (pid {w.process.pid}, {envs} of '
                f'{self.env_id})')

    @property
    def pids(self) -> list[int]:
        """Return the process ids of the workers."""
        return [w.process.pid for w in self._workers]

    def _fail(self, message: str, cause: BaseException | None = None) -> None:
        self.close(reason=message)
        raise EnvWorkerError(message) from cause

    def _send(self, command: str, arg: Any = None) -> None:
        if self._closed_reason is not None:
            raise EnvWorkerError(f'the env workers of {self.env_id} are closed '
                                 f'({self._closed_reason})')
        for w in self._workers:
            try:
                w.conn.send((command, arg))
            except OSError:
                w.process.join(1.0)
                self._fail(f'{self.describe(w)} died before {command}: '
                           f'{_signal_name(w.process.exitcode)}')
        self._wait(command)

    def _wait(self, command: str, timeout_s: float | None = None) -> None:
        """Collect one answer from every worker; raise on a death, an error or the timeout."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        pending = {w.conn: w for w in self._workers}
        deadline = time.monotonic() + timeout_s
        errors: dict[int, tuple[_Worker, BaseException | None, str]] = {}
        while pending:
            sentinels = {w.process.sentinel: w for w in pending.values()}
            ready = connection.wait([*pending, *sentinels],
                                    timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                stuck = ', '.join(self.describe(w) for w in pending.values())
                self._fail(f'{stuck} did not answer {command} within {timeout_s:g} s '
                           f'(alive but stuck in the env, or too slow for the timeout)')
            for conn in [c for c in pending if c in ready or c.poll()]:
                w = pending.pop(conn)
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError):
                    w.process.join(1.0)
                    self._fail(f'{self.describe(w)} died during {command}: '
                               f'{_signal_name(w.process.exitcode)}')
                except Exception as exc:  # noqa: BLE001 - an answer that does not unpickle
                    self._fail(f'{self.describe(w)} sent an answer to {command} that cannot '
                               f'be read ({type(exc).__name__}: {exc})', exc)
                if status == 'error':
                    errors[w.index] = (w, *payload)
            for sentinel, w in sentinels.items():
                if sentinel in ready and w.conn in pending and not w.conn.poll():
                    w.process.join(1.0)
                    self._fail(f'{self.describe(w)} died during {command}: '
                               f'{_signal_name(w.process.exitcode)}')
        if errors:
            # Raised once every worker has answered, so the pipes stay in step (the first
            # worker's, as the serial env would); the env state after an exception is the
            # env's business, so the workers are closed.
            w, exc, text = errors[min(errors)]
            remote = EnvWorkerError(f'{self.describe(w)} raised during {command}:\n{text}')
            self.close(reason=f'{self.describe(w)} raised during {command}')
            if exc is None:
                raise remote
            raise exc from remote

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every env (env i seeded with seed + i); return observations (N, obs_dim)."""
        self._send('reset', self.seed if seed is None else seed)
        return self._buffers.arrays['obs'].copy()

    def step(self, actions: np.ndarray) -> tuple:
        """Step every env; see VecPointCircle.step for what returns."""
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num_envs, self.act_dim):
            raise ValueError(f'action has shape {actions.shape}, expected '
                             f'({self.num_envs}, {self.act_dim})')
        a = self._buffers.arrays
        a['actions'][:] = actions
        self._send('step')
        return (a['obs'].copy(), a['reward'].copy(), a['cost'].copy(), a['terminated'].copy(),
                a['truncated'].copy(), {'final_obs': a['final_obs'].copy()})

    def close(self, reason: str = 'closed') -> None:
        """End the workers (idempotent)."""
        if self._closed_reason is None:
            self._closed_reason = reason
            self._finalizer()
