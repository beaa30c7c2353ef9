"""The mounting middlewares' shared half: the route table, and the endpoints mounted on it.

A stream endpoint answers one exact path; a broker endpoint answers every path under its prefix,
`/<prefix>/<topic>`, the rest of the path being the topic (slashes included).  Every other path
belongs to the wrapped app.  `MountingMiddleware` builds and mounts the endpoints for both the
WSGI and the ASGI `SSEMiddleware`, so both check their options and route alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ssekit._compress import CompressionPolicy
from ssekit._registry import StreamRegistry
from ssekit._stream import SSEStream
from ssekit.adapters._common import SSERequest
from ssekit.adapters._core import BrokerEndpoint, Refuse, StreamEndpoint
from ssekit.broker import Broker, SlowPolicy

if TYPE_CHECKING:  # names for the signatures only
    from ssekit.adapters._core import (
        Authorize,
        AuthorizeTopics,
        Compress,
        Factory,
        StreamOptionsDict,
        Unpack,
    )

__all__ = ["Match", "MountingMiddleware", "Mounts"]

App = TypeVar("App")  # the wrapped application's type (WSGI or ASGI)
Middleware = TypeVar("Middleware", bound="MountingMiddleware[Any]")

#: A broker's topics are read, never posted to.
_BROKER_METHODS = Refuse(405, "Method Not Allowed", (("Allow", "GET, HEAD"),))


@dataclass(frozen=True)
class Match:
    """A request for a mounted endpoint: a stream (`topic` None) or a broker's topic."""

    stream: StreamEndpoint[SSERequest] | None = None
    broker: BrokerEndpoint[SSERequest] | None = None
    topic: str = ""

    @property
    def compression(self) -> CompressionPolicy:
        """The matched endpoint's `compress=` policy."""
        endpoint = self.stream if self.stream is not None else self.broker
        assert endpoint is not None
        return endpoint.compression

    def open(self, request: SSERequest) -> SSEStream | Refuse:
        """From sync code: the stream for `request`, or why not."""
        if self.stream is not None:
            return self.stream.open(request, request.method)
        assert self.broker is not None
        if request.method not in ("GET", "HEAD"):
            return _BROKER_METHODS
        return self.broker.respond(self.broker.decide(request, self.topic, request.last_event_id))

    async def aopen(self, request: SSERequest) -> SSEStream | Refuse:
        """From async code: the stream for `request`, or why not."""
        if self.stream is not None:
            return await self.stream.aopen(request, request.method)
        assert self.broker is not None
        if request.method not in ("GET", "HEAD"):
            return _BROKER_METHODS
        decision = await self.broker.adecide(request, self.topic, request.last_event_id)
        return self.broker.respond(decision)


class Mounts:
    """Paths to stream endpoints and prefixes to broker endpoints, checked when added."""

    def __init__(self) -> None:
        self._streams: dict[str, StreamEndpoint[SSERequest]] = {}
        self._brokers: dict[str, BrokerEndpoint[SSERequest]] = {}

    def add_stream(self, path: str, endpoint: StreamEndpoint[SSERequest]) -> None:
        self._check(path, "path")
        self._streams[path] = endpoint

    def add_broker(self, prefix: str, endpoint: BrokerEndpoint[SSERequest]) -> None:
        self._check(prefix, "prefix")
        self._brokers[prefix] = endpoint

    def _check(self, path: str, what: str) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"The {what} must be a string that starts with '/', not {path!r}.")
        if path != "/" and path.endswith("/"):
            raise ValueError(f"The {what} {path!r} must not end with '/'.")
        if path in self._streams or path in self._brokers:
            raise ValueError(f"The {what} {path!r} is mounted already.")
        for prefix in self._brokers:
            if path.startswith(prefix.rstrip("/") + "/"):
                raise ValueError(f"The {what} {path!r} is inside the broker prefix {prefix!r}.")

    def match(self, path: str) -> Match | None:
        """The endpoint for `path` (a decoded request path), or None: the wrapped app's."""
        endpoint = self._streams.get(path)
        if endpoint is not None:
            return Match(stream=endpoint)
        for prefix, broker in self._brokers.items():
            start = prefix.rstrip("/") + "/"
            if path.startswith(start):
                return Match(broker=broker, topic=path[len(start) :])
        return None


class MountingMiddleware(Generic[App]):
    """Wraps `app` and serves ssekit streams under mounted paths; streams tracked in `registry`."""

    def __init__(self, app: App, *, registry: StreamRegistry | None = None) -> None:
        self.app = app
        self.registry = registry if registry is not None else StreamRegistry()
        self._mounts = Mounts()

    def _check_factory(self, factory: Factory[SSERequest]) -> None:
        """Refuse, when mounted, a factory this middleware cannot call (by default none)."""

    def add_stream(
        self: Middleware,
        path: str,
        factory: Factory[SSERequest],
        *,
        methods: Iterable[str] = (),
        authorize: Authorize[SSERequest] | None = None,
        compress: Compress = False,
        **options: Unpack[StreamOptionsDict],
    ) -> Middleware:
        """Serve `factory(request)` at exactly `path` (WSGI: a sync one); options checked here."""
        self._check_factory(factory)
        endpoint = StreamEndpoint(
            factory, methods=methods, authorize=authorize, compress=compress, options=options
        )
        self._mounts.add_stream(path, endpoint)
        return self

    def add_broker(
        self: Middleware,
        prefix: str,
        broker: Broker,
        *,
        authorize: AuthorizeTopics[SSERequest] | None = None,
        policy: SlowPolicy = "disconnect",
        compress: Compress = False,
        **options: Unpack[StreamOptionsDict],
    ) -> Middleware:
        """Serve `broker`'s topic `<topic>` at `<prefix>/<topic>`, resuming from `Last-Event-ID`.

        `authorize(request, [topic])` (sync or async) returning False, or raising, gives 403.
        """
        endpoint = BrokerEndpoint[SSERequest](
            broker, authorize=authorize, policy=policy, compress=compress, options=options
        )
        self._mounts.add_broker(prefix, endpoint)
        return self
