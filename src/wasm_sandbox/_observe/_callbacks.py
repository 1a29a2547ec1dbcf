"""What happens when a user callback raises, written once (trio's ``Instrument`` rule).

A callback that raises an ``Exception`` is

- **logged once**, with its traceback, on the ``wasm_sandbox.callbacks`` logger (ERROR);
- **dropped**: not called again for the rest of its scope;
- **recorded** where the scope has a report (``io_callback_errors``,
  ``network_callback_errors``, ``monitoring_callback_errors``);

and the guest never notices: its value, exit code and output are those it would have had.

Scopes. Per execution (a fresh ``SafeCallback`` for each): ``io_callback``,
``network_callback``, ``resource_callback`` and a ``ResourceMonitor``'s ``alert_callback``
— the next execution calls them again. Per build: ``progress``. Per owner, for the
process-wide ones: ``on_scale`` is dropped from its ``AutoScaler`` (``on_scale(fn)`` sets it
again), a metrics observer from the process (that ``PrometheusMetrics`` stops counting).

``KeyboardInterrupt`` and ``SystemExit`` are not a callback's errors but requests to stop:
they are not swallowed. On the caller's own thread they propagate; in a host call of the guest
(``io_callback``, ``network_callback``) the trampoline stops the guest, since nothing may
unwind into wasmtime, and the execution raises the same exception once the guest has ended.
Only on a thread of ours with nobody to hand them to (the monitoring thread, the
compile-progress thread: ``detached``) are they handled like any other error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, ParamSpec

__all__ = ["SafeCallback"]

P = ParamSpec("P")

log = logging.getLogger("wasm_sandbox.callbacks")
_DROPPING = threading.Lock()  # rare (a callback failed): one lock for every callback


class SafeCallback(Generic[P]):
    """One user callback within one scope: called until it raises, then logged once,
    dropped and its error recorded in ``errors``.

    ``name`` says which callback it is (``io_callback``); ``scope`` ends the log message's
    "not called again for ..." (``this execution``); ``tag`` prefixes the recorded error when
    several callbacks share one ``errors`` list.
    """

    __slots__ = ("callback", "errors", "name", "scope", "tag")

    def __init__(
        self,
        callback: Callable[P, object],
        name: str,
        scope: str,
        *,
        errors: list[str] | None = None,
        tag: str = "",
    ) -> None:
        self.callback: Callable[P, object] | None = callback
        self.name = name
        self.scope = scope
        self.errors: list[str] = [] if errors is None else errors
        self.tag = tag

    @property
    def dropped(self) -> bool:
        """True once the callback has raised."""
        return self.callback is None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Call the callback on the caller's thread; False when it raised or was dropped.
        ``KeyboardInterrupt``, ``SystemExit`` and other ``BaseException``\\s propagate."""
        callback = self.callback
        if callback is None:
            return False
        try:
            callback(*args, **kwargs)
        except Exception as exc:
            self._drop(callback, exc)
            return False
        return True

    def detached(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Call the callback on a thread of ours that has no caller to hand a
        ``KeyboardInterrupt`` or ``SystemExit`` to: every exception is an error."""
        callback = self.callback
        if callback is None:
            return False
        try:
            callback(*args, **kwargs)
        except BaseException as exc:  # nobody to give it to: the thread lives on
            self._drop(callback, exc)
            return False
        return True

    def _drop(self, callback: Callable[P, object], exc: BaseException) -> None:
        with _DROPPING:
            if self.callback is not callback:  # raised twice at once (two threads): once
                return
            self.callback = None
            self.errors.append(f"{self.tag}{type(exc).__name__}: {exc}")
        log.error(
            "%s %r raised %s; it is not called again for %s",
            self.name, callback, type(exc).__name__, self.scope, exc_info=exc,
        )  # fmt: skip
