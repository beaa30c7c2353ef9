"""The route table of the mounting middlewares: which ssekit endpoint, if any, serves a path.

A stream endpoint answers one exact path; a broker endpoint answers every path under its prefix,
`/<prefix>/<topic>`, the rest of the path being the topic (slashes included).  Every other path
belongs to the wrapped app.  Shared by the WSGI and the ASGI middleware, so both route alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from ssekit.adapters._common import SSERequest
from ssekit.adapters._core import BrokerEndpoint, StreamEndpoint

__all__ = ["Match", "Mounts"]


@dataclass(frozen=True)
class Match:
    """A request for a mounted endpoint: a stream (`topic` None) or a broker's topic."""

    stream: StreamEndpoint[SSERequest] | None = None
    broker: BrokerEndpoint[SSERequest] | None = None
    topic: str = ""


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
