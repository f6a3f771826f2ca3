"""Fit the critics in a child process: the fit then shares no GIL with sampling or the policy step.

On a thread, the critics' fit (many small torch calls) and the sampler (Python and numpy) take
turns on the GIL: on 2 cores, sampling 50,000 steps took 0.56 s beside the fit on a thread
against 0.43 s alone or beside the same fit in another process. The child gets the critics'
and their optimiser's state, the torch random state and the fit's inputs, runs the same
`_fit_critics` on its own copy of the algorithm, and sends back the fitted state, the random
state after the fit and the losses. The parent loads them, so the result (random minibatch
order included) is the one the thread would have given.
"""

from dataclasses import asdict
import io
from multiprocessing.connection import Connection
import os
import signal
import subprocess
import sys
import time
import traceback
from typing import Any

import torch


class CriticFitProcess:
    """A child process that fits an algorithm's critics on request (one request at a time).

    The child is `python -m cpo_ros.core.critic_process` talking over two pipes: unlike
    multiprocessing's spawn, it never re-imports the caller's main script, and unlike fork it
    does not copy a process whose torch threads are running.
    """

    def __init__(self, torch_threads: int = 1) -> None:
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        self._process = subprocess.Popen(
            [sys.executable, '-m', 'cpo_ros.core.critic_process', str(child_read),
             str(child_write), str(torch_threads)],
            pass_fds=(child_read, child_write), stdin=subprocess.DEVNULL)
        os.close(child_read)
        os.close(child_write)
        self._conn = _Duplex(Connection(parent_read, writable=False),
                             Connection(parent_write, readable=False))
        self._pending: PendingFit | None = None

    def submit(self, algorithm: Any, norm_obs: torch.Tensor, tgt_r: torch.Tensor,
               tgt_c: torch.Tensor, fitted: bool = True) -> 'PendingFit':
        """Send the fit of algorithm's critics to the child; the returned handle collects it."""
        if self._pending is not None:
            self._pending.wait()
        if self._conn.broken:
            raise RuntimeError('the critic fit process was interrupted mid-message; start a '
                               'new one')
        try:
            _send(self._conn, {
                'build': (algorithm.obs_dim, algorithm.act_dim, asdict(algorithm.config),
                          algorithm.num_costs),
                'reward_critic': algorithm.reward_critic.state_dict(),
                'cost_critics': algorithm.cost_critics.state_dict(),
                'critic_optim': algorithm.critic_optim.state_dict(),
                'rng': torch.get_rng_state(),
                'inputs': (norm_obs, tgt_r, tgt_c, fitted)})
        except BaseException:
            self._conn.broken = True  # a part of the request may be in the pipe
            raise
        self._pending = PendingFit(self._conn, algorithm)
        return self._pending

    def close(self) -> None:
        """Stop the child (waiting for a fit under way)."""
        if self._pending is not None:
            self._pending.wait()
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


class PendingFit:
    """One fit sent to the child: wait() for it, result() to load it into the algorithm."""

    def __init__(self, conn: Any, algorithm: Any) -> None:
        self._conn, self._algorithm = conn, algorithm
        self._reply: dict[str, Any] | None = None
        self._loaded = False

    def wait(self) -> None:
        """Wait for the child's answer (without loading it)."""
        if self._reply is None and self._conn.broken:
            self._reply = {'error': 'the critic fit process was interrupted'}
        if self._reply is None:
            try:
                self._reply = _receive(self._conn)
            except (EOFError, OSError):
                self._reply = {'error': 'the critic fit process ended'}
            except BaseException:
                self._conn.broken = True
                self._reply = {'error': 'interrupted while waiting for the critic fit'}
                raise

    def result(self) -> tuple[tuple[float, float], float]:
        """Load the fitted critics, optimiser and random state; return (losses, fit seconds)."""
        self.wait()
        reply = self._reply
        if 'error' in reply:
            raise RuntimeError(f'critic fit failed in its process:\n{reply["error"]}')
        if not self._loaded:
            algo = self._algorithm
            algo.reward_critic.load_state_dict(reply['reward_critic'])
            algo.cost_critics.load_state_dict(reply['cost_critics'])
            algo.critic_optim.load_state_dict(reply['critic_optim'])
            torch.set_rng_state(reply['rng'])
            self._loaded = True
        return reply['losses'], reply['seconds']


def _serve(conn: _Duplex, torch_threads: int) -> None:
    """Answer fit requests until told to stop (None) or the parent goes away."""
    from cpo_ros.core.algorithm import ConstrainedTrustRegion
    from cpo_ros.core.config import AlgoConfig

    # Ctrl-C reaches the whole process group: the parent handles it and closes this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(torch_threads)
    algorithms: dict[str, ConstrainedTrustRegion] = {}
    while True:
        try:
            request = _receive(conn)
        except (EOFError, OSError):
            return
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
            algo.reward_critic.load_state_dict(request['reward_critic'])
            algo.cost_critics.load_state_dict(request['cost_critics'])
            algo.critic_optim.load_state_dict(request['critic_optim'])
            torch.set_rng_state(request['rng'])
            t0 = time.perf_counter()
            losses = algo._fit_critics(*request['inputs'])
            reply = {'losses': losses, 'seconds': time.perf_counter() - t0,
                     'reward_critic': algo.reward_critic.state_dict(),
                     'cost_critics': algo.cost_critics.state_dict(),
                     'critic_optim': algo.critic_optim.state_dict(),
                     'rng': torch.get_rng_state()}
        except Exception:  # noqa: BLE001 - reported to the parent, which raises it
            reply = {'error': traceback.format_exc()}
        _send(conn, reply)


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
