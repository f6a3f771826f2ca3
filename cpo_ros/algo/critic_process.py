"""Fit the critics in a child process: the fit then shares no GIL with sampling or the policy step.

On a thread, the critics' fit (many small torch calls) and the sampler (Python and numpy) take
turns on the GIL: on 2 cores, sampling 50,000 steps took 0.56 s beside the fit on a thread
against 0.43 s alone or beside the same fit in another process. The child gets the critics'
and their optimiser's state, the torch random state and the fit's inputs, runs the same
`_fit_critics` on its own copy of the algorithm, and sends back the fitted state, the random
state after the fit and the losses. The parent loads them, so the result (random minibatch
order included) is the one the thread would have given.

The child also solves H x = v for the Fisher of a given policy (`submit_solve`), by the same CG
as the parent: the update's split-half noise diagnostic, whose answer is needed only when the
update ends, runs there after the fit instead of beside the next sampling. Requests are
answered in the order they were sent.

Should the child die (killed, out of memory), nothing is lost: a fit it did not answer is done
in the parent from the same inputs and random state (the same result, with a warning), a solve
raises FitProcessLost for its caller to do itself, and `alive` turns false so that the owner
starts a new child for the next update.
"""

from collections import deque
from dataclasses import asdict
import io
from multiprocessing.connection import Connection
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any
import warnings

import numpy as np
import torch


class FitProcessLost(RuntimeError):
    """The child process ended (or its pipe broke) before it answered."""


class CriticFitProcess:
    """A child process that fits an algorithm's critics on request (one request at a time).

    The child is `python -m cpo_ros.algo.critic_process` talking over two pipes: unlike
    multiprocessing's spawn, it never re-imports the caller's main script, and unlike fork it
    does not copy a process whose torch threads are running.
    """

    def __init__(self, torch_threads: int = 1) -> None:
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        self._process = subprocess.Popen(
            [sys.executable, '-m', 'cpo_ros.algo.critic_process', str(child_read),
             str(child_write), str(torch_threads)],
            pass_fds=(child_read, child_write), stdin=subprocess.DEVNULL,
            # Out of the terminal's process group: a Ctrl-C while it imports torch printed a
            # KeyboardInterrupt traceback from it; the parent ends it (and its pipe's end does).
            start_new_session=True)
        os.close(child_read)
        os.close(child_write)
        self._conn = _Duplex(Connection(parent_read, writable=False),
                             Connection(parent_write, readable=False))
        self._queue: deque[_Pending] = deque()  # requests sent and not yet answered, in order

    @property
    def alive(self) -> bool:
        """Return whether the child runs and its pipe is in step (else start a new one)."""
        return self._process.poll() is None and not self._conn.broken

    def submit(self, algorithm: Any, norm_obs: torch.Tensor, tgt_r: torch.Tensor,
               tgt_c: torch.Tensor, fitted: bool = True) -> 'PendingFit':
        """Send the fit of algorithm's critics to the child; the returned handle collects it.

        FitProcessLost when the child is gone; nothing was sent then.
        """
        for pending in list(self._queue):
            if isinstance(pending, PendingFit):
                pending.wait()  # one fit at a time: the critics' state goes with each request
        rng = torch.get_rng_state()
        return self._request(PendingFit(self, algorithm, (norm_obs, tgt_r, tgt_c, fitted), rng), {
            'build': _build(algorithm),
            'reward_critic': algorithm.reward_critic.state_dict(),
            'cost_critics': algorithm.cost_critics.state_dict(),
            'critic_optim': algorithm.critic_optim.state_dict(),
            'rng': rng,
            'inputs': (norm_obs, tgt_r, tgt_c, fitted)})

    def submit_solve(self, algorithm: Any, norm_obs: torch.Tensor,
                     vectors: list[np.ndarray]) -> 'PendingSolve':
        """Send H^-1 v for each vector to the child; H: the Fisher of algorithm's policy now.

        norm_obs: the observations as the policy normalises them now. The child solves with
        the policy's current weights and the algorithm's cg_iters and cg_damping, as
        `fisher_operator` in the parent would. FitProcessLost when the child is gone.
        """
        return self._request(PendingSolve(self), {
            'build': _build(algorithm), 'policy': algorithm.policy.state_dict(),
            'solve': (norm_obs, torch.as_tensor(np.stack([np.asarray(v, np.float64)
                                                          for v in vectors])))})

    def _request(self, pending: '_Pending', message: dict[str, Any]) -> Any:
        if not self.alive:  # ended, or its pipe out of step after an interruption
            raise FitProcessLost('the critic fit process has ended or was interrupted '
                                 'mid-message; start a new one')
        try:
            _send(self._conn, message)
        except OSError as exc:  # the child is gone: a part of the request may be in the pipe
            self._conn.broken = True
            raise FitProcessLost(f'the critic fit process has ended ({exc})') from exc
        except BaseException:
            self._conn.broken = True  # a part of the request may be in the pipe
            raise
        self._queue.append(pending)
        return pending

    def _answer(self, pending: '_Pending') -> None:
        """Read answers in order until pending has its own (or the pipe is unusable)."""
        while pending.reply is None:
            if self._conn.broken:
                pending.reply = {'error': 'the critic fit process was interrupted or ended',
                                 'lost': True}
                break
            try:
                reply = _receive(self._conn)
            except (EOFError, OSError):
                self._conn.broken = True
                reply = {'error': 'the critic fit process ended', 'lost': True}
                for waiting in self._queue:
                    waiting.reply = reply
                self._queue.clear()
                break
            except BaseException:
                self._conn.broken = True
                raise
            self._queue.popleft().reply = reply
        if pending in self._queue:
            self._queue.remove(pending)

    def close(self) -> None:
        """Stop the child (waiting for requests under way)."""
        for pending in list(self._queue):
            pending.wait()
        if self._process.poll() is None and self._conn.broken:
            self._process.kill()  # the pipe is out of step: no message can be trusted
            self._process.wait()
        if self._process.poll() is None:
            try:
                _send(self._conn, None)
            except OSError:
                pass
            try:
                self._process.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._conn.close()


def _build(algorithm: Any) -> tuple:
    """Return what the child needs to build its copy of the algorithm."""
    return (algorithm.obs_dim, algorithm.act_dim, asdict(algorithm.config),
            algorithm.num_costs)


class _Duplex:
    """One reading and one writing Connection used as one."""

    def __init__(self, reader: Connection, writer: Connection) -> None:
        self.reader, self.writer = reader, writer
        # Set when a send or receive was interrupted (Ctrl-C) part-way: the stream is then out
        # of step, and reading on would wait for ever.
        self.broken = False

    def send_bytes(self, data: bytes) -> None:
        self.writer.send_bytes(data)

    def recv_bytes(self) -> bytes:
        return self.reader.recv_bytes()

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


class _Pending:
    """One request sent to the child; wait() blocks until its answer is in."""

    def __init__(self, owner: CriticFitProcess) -> None:
        self._owner = owner
        self.reply: dict[str, Any] | None = None

    def wait(self) -> None:
        """Wait for the child's answer (without using it)."""
        try:
            self._owner._answer(self)
        except BaseException:
            self.reply = {'error': 'interrupted while waiting for the critic fit process'}
            raise

    def _checked_reply(self) -> dict[str, Any]:
        self.wait()
        if self.reply.get('lost'):
            raise FitProcessLost(self.reply['error'])
        if 'error' in self.reply:
            raise RuntimeError(f'critic fit failed in its process:\n{self.reply["error"]}')
        return self.reply


class PendingFit(_Pending):
    """One fit sent to the child: wait() for it, result() to load it into the algorithm."""

    def __init__(self, owner: CriticFitProcess, algorithm: Any, inputs: tuple,
                 rng: torch.Tensor) -> None:
        super().__init__(owner)
        self._algorithm, self._inputs, self._rng = algorithm, inputs, rng
        self._loaded = False

    def result(self) -> tuple[tuple[float, float], float]:
        """Load the fitted critics, optimiser and random state; return (losses, fit seconds).

        When the child died first, fit here from the same inputs and random state instead.
        """
        try:
            reply = self._checked_reply()
        except FitProcessLost:
            if not self._loaded:
                warnings.warn("the critics' fit process ended before it answered (killed?): "
                              'fitted in this process; a new one starts with the next update',
                              RuntimeWarning, stacklevel=2)
                torch.set_rng_state(self._rng)
                t0 = time.perf_counter()
                self._local = self._algorithm._fit_critics(*self._inputs)
                self._local_s = time.perf_counter() - t0
                self._loaded = True
            return self._local, self._local_s
        if not self._loaded:
            algo = self._algorithm
            algo.reward_critic.load_state_dict(reply['reward_critic'])
            algo.cost_critics.load_state_dict(reply['cost_critics'])
            algo.critic_optim.load_state_dict(reply['critic_optim'])
            torch.set_rng_state(reply['rng'])
            self._loaded = True
        return reply['losses'], reply['seconds']


class PendingSolve(_Pending):
    """One set of Fisher solves sent to the child: result() returns H^-1 v per vector.

    After result(), `started` is when the child began (time.time()) and `seconds` how long
    the solves took.
    """

    def result(self) -> list[np.ndarray]:
        """Return the solutions, in the order of the vectors sent."""
        reply = self._checked_reply()
        self.started, self.seconds = reply['started'], reply['seconds']
        return list(reply['solutions'].numpy())


def _serve(conn: _Duplex, torch_threads: int) -> None:
    """Answer requests in order until told to stop (None) or the parent goes away."""
    from cpo_ros.algo.algorithm import ConstrainedTrustRegion
    from cpo_ros.training.config import AlgoConfig

    # Ctrl-C reaches the whole process group: the parent handles it and closes this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(torch_threads)
    algorithms: dict[str, ConstrainedTrustRegion] = {}
    # Threads move messages on and off the pipes while a request is worked on: a parent
    # sending the next request (a solve during a fit) must not wait until this one is done,
    # and an answer bigger than the pipe's buffer (the fitted critics) must not hold up the
    # next request until the parent reads it.
    requests: queue.Queue[Any] = queue.Queue()
    replies: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        while True:
            try:
                message = _receive(conn)
            except (EOFError, OSError):
                message = None
            requests.put(message)
            if message is None:
                return

    def write() -> None:
        while True:
            try:
                _send(conn, replies.get())
            except OSError:
                return

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=write, daemon=True).start()
    while True:
        request = requests.get()
        if request is None:
            return
        try:
            obs_dim, act_dim, config, num_costs = request['build']
            key = repr(request['build'])
            if key not in algorithms:
                algorithms.clear()
                algo_config = AlgoConfig(**{k: tuple(v) if isinstance(v, list) else v
                                            for k, v in config.items()})
                algorithms[key] = ConstrainedTrustRegion(obs_dim, act_dim, algo_config,
                                                         num_costs=num_costs)
            algo = algorithms[key]
            reply = _solve(algo, request) if 'solve' in request else _fit(algo, request)
        except Exception:  # noqa: BLE001 - reported to the parent, which raises it
            reply = {'error': traceback.format_exc()}
        replies.put(reply)


def _fit(algo: Any, request: dict[str, Any]) -> dict[str, Any]:
    algo.reward_critic.load_state_dict(request['reward_critic'])
    algo.cost_critics.load_state_dict(request['cost_critics'])
    algo.critic_optim.load_state_dict(request['critic_optim'])
    torch.set_rng_state(request['rng'])
    t0 = time.perf_counter()
    losses = algo._fit_critics(*request['inputs'])
    return {'losses': losses, 'seconds': time.perf_counter() - t0,
            'reward_critic': algo.reward_critic.state_dict(),
            'cost_critics': algo.cost_critics.state_dict(),
            'critic_optim': algo.critic_optim.state_dict(),
            'rng': torch.get_rng_state()}


def _solve(algo: Any, request: dict[str, Any]) -> dict[str, Any]:
    from cpo_ros.algo.trust_region import fisher_operator

    started, t0 = time.time(), time.perf_counter()
    algo.policy.load_state_dict(request['policy'])
    norm_obs, vectors = request['solve']
    operator = fisher_operator(algo.policy, norm_obs, algo.config.cg_damping,
                               algo.config.cg_iters, normalised=True)
    solutions = np.stack([operator.solve(v) for v in vectors.numpy()])
    return {'solutions': torch.as_tensor(solutions), 'started': started,
            'seconds': time.perf_counter() - t0}


def _send(conn: Any, message: Any) -> None:
    # torch.save bytes rather than pickled tensors: no shared-memory segments per message.
    buffer = io.BytesIO()
    torch.save(message, buffer)
    conn.send_bytes(buffer.getvalue())


def _receive(conn: Any) -> Any:
    return torch.load(io.BytesIO(conn.recv_bytes()), weights_only=True)


if __name__ == '__main__':
    _serve(_Duplex(Connection(int(sys.argv[1]), writable=False),
                   Connection(int(sys.argv[2]), readable=False)), int(sys.argv[3]))
