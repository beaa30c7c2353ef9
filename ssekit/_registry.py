"""`StreamRegistry`: the open streams of one application, so a shutdown can end them cleanly.

Servers wait for open responses before they exit, and an event stream never finishes by itself:
without help a server hangs at shutdown, or kills streams without a word.  A registry knows its
application's open streams and ends each with an optional farewell event and a `retry:` hint, so
clients reconnect (to another instance) and the server exits promptly.  Each application has its
own registry, and signal handlers are chained only while it serves.  The process knows its live
registries only through weak references (`live_registries()`), so that a server hook (gunicorn's,
see `ssekit.gunicorn`) can end them all without keeping any application alive.

A registry can also cap its open streams (`max_streams`): a stream beyond the cap is not admitted
and the adapter answers 503 with a `Retry-After`, rather than letting it wait for a worker thread.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from ssekit._event import Event
from ssekit._producers import lingering_threads

if TYPE_CHECKING:
    from ssekit._stream import SSEStream

__all__ = ["StreamRegistry", "live_registries", "shutdown_all"]

#: Where `StreamRegistry.lifespan` puts the registry in an ASGI app's lifespan state.
STATE_KEY = "ssekit.registry"
#: The reconnection hint sent to clients of streams ended by a shutdown.
DEFAULT_SHUTDOWN_RETRY_MS = 1000

_SignalHandler = Any  # what signal.getsignal() returns: a callable, SIG_DFL, SIG_IGN or None

#: Every registry of the process, held weakly: a hook can end them all, and none is kept alive.
_LIVE: weakref.WeakSet[StreamRegistry] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def live_registries() -> list[StreamRegistry]:
    """The registries of this process still in use (in no particular order)."""
    with _LIVE_LOCK:
        return list(_LIVE)


def shutdown_all() -> int:
    """`shutdown()` every live registry of the process; return how many streams were ended."""
    return sum(registry.shutdown() for registry in live_registries())


def in_background(function: Callable[[], object], name: str = "ssekit-shutdown") -> None:
    """Run `function` soon, off the current frame (a signal handler's), without waiting for it.

    A thread of its own; under gevent's monkey-patching a greenlet spawned directly, since a
    patched `Thread.start()` waits for the thread to start, which a signal handler running in
    gevent's hub may not do.
    """
    monkey = sys.modules.get("gevent.monkey")
    is_patched = getattr(monkey, "is_module_patched", None)
    if is_patched is not None and is_patched("threading"):
        sys.modules["gevent"].spawn(function)
        return
    threading.Thread(target=function, name=name, daemon=True).start()


class StreamRegistry:
    """The open streams of one application; `close_all()` ends them with a farewell.

    Adapters admit each stream they serve and discard it when it ends.  Call `shutdown()` (or
    `close_all()`) at shutdown, or let the registry do it: `install_signal_handlers()` (or the
    ASGI `lifespan` context) chains SIGINT/SIGTERM handlers that end the streams first, then run
    the server's own handler, so the server's graceful shutdown finds no stream holding it up.
    Under gunicorn, `ssekit.gunicorn`'s hooks do the same for every registry of the worker.

    `max_streams` caps the open streams: `admit()` refuses one more, and the adapters answer it
    with 503 and a `Retry-After` header (see `retry_after`).  None: no cap of its own (under the
    gunicorn hooks, the worker's default then applies).
    """

    def __init__(
        self,
        *,
        farewell: str | Event | None = None,
        retry: int | None = None,
        max_streams: int | None = None,
    ) -> None:
        if farewell is not None and not isinstance(farewell, (str, Event)):
            raise TypeError(f"farewell must be a str, an Event or None, not {type(farewell)}.")
        if retry is not None:
            Event(retry=retry)  # the same rule as the field
        #: Sent to each stream when it is ended by `close_all()`.
        self.farewell = farewell
        #: The reconnection delay (ms) suggested to those clients.
        self.retry = DEFAULT_SHUTDOWN_RETRY_MS if retry is None else retry
        self._max_streams = _checked_max_streams(max_streams)
        # Held weakly: a stream whose response was dropped before the server closed it (an
        # exception between the view and the server) must not hold a slot for ever.
        self._streams: weakref.WeakSet[SSEStream] = weakref.WeakSet()
        self._lock = threading.RLock()  # re-entrant: a signal handler may interrupt a holder
        self._emptied = threading.Condition(self._lock)
        self._previous_handlers: dict[int, _SignalHandler] = {}
        #: True from `shutdown()` until serving starts again: a new stream ends at once.
        self._closing = False
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def max_streams(self) -> int | None:
        """The most streams open at once (None: no cap); beyond it `admit()` says no."""
        return self._max_streams

    @max_streams.setter
    def max_streams(self, value: int | None) -> None:
        self._max_streams = _checked_max_streams(value)

    @property
    def closing(self) -> bool:
        """True once `shutdown()` has run, until serving starts again."""
        return self._closing

    @property
    def retry_after(self) -> int:
        """Seconds for a refused client's `Retry-After`: the `retry` hint, rounded up."""
        return max(1, math.ceil(self.retry / 1000))

    def admit(self, stream: SSEStream) -> bool:
        """Track `stream` unless `max_streams` are open already; False means "answer 503".

        While the registry is closing, the stream is admitted and ended at once: it sends the
        farewell and the `retry:` hint, so its client reconnects to another worker.
        """
        with self._lock:
            if self._closing:
                self._streams.add(stream)
            elif self._max_streams is not None and len(self._streams) >= self._max_streams:
                return False
            else:
                self._streams.add(stream)
                return True
        stream.end_now(farewell=self.farewell, retry=self.retry)
        return True

    def add(self, stream: SSEStream) -> None:
        """Track an open stream (whatever the cap: `admit()` is the one that checks it)."""
        with self._lock:
            self._streams.add(stream)
            closing = self._closing
        if closing:
            stream.end_now(farewell=self.farewell, retry=self.retry)

    def discard(self, stream: SSEStream) -> None:
        """Forget a stream that has ended."""
        with self._lock:
            self._streams.discard(stream)
            if not self._streams:
                self._emptied.notify_all()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until every tracked stream has ended (at most `timeout` s); False on timeout.

        For WSGI servers whose request threads are daemons: after `close_all()`, give them the
        moment they need to write the farewell before the process exits.
        """
        with self._emptied:
            return self._emptied.wait_for(lambda: not self._streams, timeout)

    def __len__(self) -> int:
        return len(self._streams)

    @property
    def lingering_threads(self) -> int:
        """Sync sources still holding a thread after their stream closed (for health checks).

        Counted per process, not per registry (threads belong to the process): the same number
        as `ssekit.lingering_threads()`.
        """
        return lingering_threads()

    def close_all(self, *, farewell: str | Event | None = None, retry: int | None = None) -> int:
        """End every open stream with a farewell and a `retry:` hint; return how many.

        Safe from any thread.  It does not wait: each stream writes its farewell and closes its
        source on its own thread or loop, within moments.
        """
        farewell = self.farewell if farewell is None else farewell
        retry = self.retry if retry is None else retry
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.end_now(farewell=farewell, retry=retry)
        return len(streams)

    def shutdown(self) -> int:
        """`close_all()`, and end each stream admitted from now on at once; return how many.

        For a server that is stopping: a client that reconnects to this process in the meantime
        (on a kept-alive connection, say) gets the farewell again, not a stream that would hold
        the server up.  Serving again (`install_signal_handlers()`, `serving()`, `lifespan`)
        admits streams normally.
        """
        with self._lock:
            self._closing = True
        return self.close_all()

    # -- signals -------------------------------------------------------------------------------

    def install_signal_handlers(
        self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
    ) -> bool:
        """Chain handlers that `close_all()` before the current ones run; False off the main thread.

        Call it once the server has installed its own handlers (e.g. at lifespan startup), and
        `restore_signal_handlers()` when serving ends.
        """
        with self._lock:
            self._closing = False  # serving (again), whichever thread the server runs in
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in signals:
            if sig in self._previous_handlers:
                continue
            self._previous_handlers[sig] = signal.signal(sig, self._on_signal)
        return True

    def restore_signal_handlers(self) -> None:
        """Put back the handlers that `install_signal_handlers()` chained in front of."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous_handlers.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._previous_handlers.clear()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler runs between two bytecodes of the main thread, perhaps while it holds
        # a stream's lock: ending the streams happens on a short-lived thread instead.
        in_background(self.shutdown)
        previous = self._previous_handlers.get(sig)
        if callable(previous):
            previous(sig, frame)
        elif previous == signal.SIG_DFL:
            if sig == signal.SIGINT:
                signal.default_int_handler(sig, frame)
            else:
                signal.signal(sig, signal.SIG_DFL)
                signal.raise_signal(sig)

    @contextlib.contextmanager
    def serving(self, *, drain: float = 5.0) -> Iterator[StreamRegistry]:
        """While inside, signals end the streams first; on exit, end any still open.

        On exit it also waits up to `drain` seconds for the streams to write their farewell
        (WSGI servers' request threads are daemons that die with the process).
        """
        self.install_signal_handlers()
        try:
            yield self
        finally:
            self.shutdown()
            self.restore_signal_handlers()
            if drain:
                self.wait_closed(drain)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[dict[str, Any]]:
        """An ASGI lifespan (Starlette, FastAPI): `Starlette(lifespan=registry.lifespan)`.

        Its state makes the registry available to every `SSEResponse` of the app.  (ASGI
        servers finish open responses before the lifespan ends, so there is nothing to drain.)
        """
        with self.serving(drain=0):
            yield {STATE_KEY: self}


def _checked_max_streams(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_streams must be an int or None, not {type(value).__name__}.")
    if value < 1:
        raise ValueError(f"max_streams must be at least 1 (or None for no cap), not {value}.")
    return value
