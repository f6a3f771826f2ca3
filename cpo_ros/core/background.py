"""Run one call on a thread beside the caller's work; its result or exception when asked."""

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
