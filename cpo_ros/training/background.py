"""Run one call on a thread beside the caller's work, or later; its result when asked."""

from collections.abc import Callable
import threading
from typing import Any


class BackgroundCall:
    """Start fn(*args) on a thread now; result() waits for it and returns or re-raises.

    torch releases the GIL inside its kernels, so two independent pieces of an update (the
    critics' fit and the policy step) overlap on two cores.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True,
                                        name=getattr(fn, '__name__', 'background'))
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller in result()
            self._error = exc

    def wait(self) -> None:
        """Wait for the call to end, whatever its outcome."""
        self._thread.join()

    def result(self) -> Any:
        """Wait for the call; return its value or raise its exception."""
        self.wait()
        if self._error is not None:
            raise self._error
        return self._value


class Deferred:
    """Call fn() once, when result() is first asked for (BackgroundCall's interface, no thread).

    For work done elsewhere (another process) whose answer is only collected at the end.
    """

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._done = False
        self._value: Any = None

    def wait(self) -> None:
        """Nothing runs until result(): nothing to wait for."""

    def result(self) -> Any:
        """Return fn()'s value (calling it the first time)."""
        if not self._done:
            self._value = self._fn()
            self._done = True
        return self._value
