"""`StreamRegistry`: the open streams of one application, so a shutdown can end them cleanly.

Servers wait for open responses before they exit, and an event stream never finishes by itself:
without help a server hangs at shutdown, or kills streams without a word.  A registry knows its
application's open streams and ends each with an optional farewell event and a `retry:` hint, so
clients reconnect (to another instance) and the server exits promptly.  There is no global state:
each application has its own registry, and signal handlers are chained only while it serves.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from ssekit._event import Event
from ssekit._producers import lingering_threads

if TYPE_CHECKING:
    from ssekit._stream import SSEStream

__all__ = ["StreamRegistry"]

#: Where `StreamRegistry.lifespan` puts the registry in an ASGI app's lifespan state.
STATE_KEY = "ssekit.registry"
#: The reconnection hint sent to clients of streams ended by a shutdown.
DEFAULT_SHUTDOWN_RETRY_MS = 1000

_SignalHandler = Any  # what signal.getsignal() returns: a callable, SIG_DFL, SIG_IGN or None


class StreamRegistry:
    """The open streams of one application; `close_all()` ends them with a farewell.

    Adapters add each stream they serve and discard it when it ends.  Call `close_all()` at
    shutdown, or let the registry do it: `install_signal_handlers()` (or the ASGI `lifespan`
    context) chains SIGINT/SIGTERM handlers that end the streams first, then run the server's
    own handler, so the server's graceful shutdown finds no stream holding it up.
    """

    def __init__(self, *, farewell: str | Event | None = None, retry: int | None = None) -> None:
        if farewell is not None and not isinstance(farewell, (str, Event)):
            raise TypeError(f"farewell must be a str, an Event or None, not {type(farewell)}.")
        if retry is not None:
            Event(retry=retry)  # the same rule as the field
        #: Sent to each stream when it is ended by `close_all()`.
        self.farewell = farewell
        #: The reconnection delay (ms) suggested to those clients.
        self.retry = DEFAULT_SHUTDOWN_RETRY_MS if retry is None else retry
        self._streams: set[SSEStream] = set()
        self._lock = threading.RLock()  # re-entrant: a signal handler may interrupt a holder
        self._emptied = threading.Condition(self._lock)
        self._previous_handlers: dict[int, _SignalHandler] = {}

    def add(self, stream: SSEStream) -> None:
        """Track an open stream."""
        with self._lock:
            self._streams.add(stream)

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

    # -- signals -------------------------------------------------------------------------------

    def install_signal_handlers(
        self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
    ) -> bool:
        """Chain handlers that `close_all()` before the current ones run; False off the main thread.

        Call it once the server has installed its own handlers (e.g. at lifespan startup), and
        `restore_signal_handlers()` when serving ends.
        """
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
        threading.Thread(target=self.close_all, name="ssekit-shutdown", daemon=True).start()
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
            self.close_all()
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
