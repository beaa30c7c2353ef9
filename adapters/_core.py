"""The serving core: every decision an adapter makes, as values it only has to translate.

An endpoint answers a request with an `SSEStream` to serve or a `Refuse` (status, short reason,
headers) to send as plain text; a broker endpoint first decides `Stream`, `Refuse` or
`RetryLater`.  Nothing here imports a web framework.

Headers: every stream response starts from `SSE_HEADERS` (`stream_headers()` lets the app's own
win).  Compression: an endpoint's `compression` (from `compress=`) and `negotiate_encoding()`
give, per request, the `Encoding` whose headers go on the response and whose `body()`/`abody()`
wraps the stream's bytes; `merge_headers()` joins its `Vary` with the app's.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ssekit._compress import AsyncCompressedBody, CompressedBody, CompressionPolicy
from ssekit._options import StreamOptions
from ssekit._options import StreamOptionsDict as StreamOptionsDict
from ssekit._registry import StreamRegistry
from ssekit._stream import Source, SSEStream, to_sse
from ssekit.broker import (
    MAX_TOPIC_LENGTH,
    UNAVAILABLE_RETRY_MS,
    Broker,
    BrokerClosed,
    BrokerUnavailable,
    InvalidTopic,
    SlowPolicy,
    Subscription,
    TooManySubscribers,
)

if TYPE_CHECKING:  # for the adapters' `**options: Unpack[StreamOptionsDict]`
    if sys.version_info >= (3, 11):
        from typing import Unpack as Unpack
    else:
        from typing_extensions import Unpack as Unpack

__all__ = [
    "FORBIDDEN",
    "SSE_HEADERS",
    "AsyncBody",
    "Authorize",
    "AuthorizeTopics",
    "BrokerEndpoint",
    "Compress",
    "Decision",
    "Encoding",
    "Factory",
    "Refuse",
    "RetryLater",
    "Stream",
    "StreamEndpoint",
    "admit",
    "allowed",
    "checked_options",
    "compression_policy",
    "make_stream",
    "merge_headers",
    "negotiate_encoding",
    "refuse_async",
    "run_in_new_loop",
    "stream_headers",
    "track",
    "warn_once",
]

logger = logging.getLogger("ssekit")

R = TypeVar("R")  # the request type of the framework
#: Builds the source (or a ready `SSEStream`) for one request; may be a coroutine function.
Factory = Callable[[R], "Source | SSEStream | Awaitable[Source | SSEStream]"]
#: Says whether a request may have its stream (sync or async; raising means no).
Authorize = Callable[[R], "bool | Awaitable[bool]"]
#: Says whether a request may follow these topics (sync or async; raising means no).
AuthorizeTopics = Callable[[R, list[str]], "bool | Awaitable[bool]"]
#: Runs an awaitable to its result from sync code (an adapter's way of running async hooks).
RunAsync = Callable[[Awaitable[Any]], Any]


@dataclass(frozen=True)
class Refuse:
    """Answer with `status` and a short plain-text `reason`, never a stream."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Stream:
    """Serve this subscription."""

    subscription: Subscription


@dataclass(frozen=True)
class RetryLater:
    """The broker is unreachable: an empty stream that asks the client to come back in `ms`."""

    ms: int


#: What a broker endpoint decides for one request.
Decision = Stream | Refuse | RetryLater

FORBIDDEN = Refuse(403, "Forbidden")
SERVER_ERROR = Refuse(500, "Internal Server Error")

#: The response headers of every stream.  No Content-Length (the body is open-ended) and no
#: Connection header (HTTP/2 forbids it; servers manage keep-alive themselves).
SSE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
)


def stream_headers(given: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """A stream response's headers: `SSE_HEADERS` the app did not set itself, then the app's."""
    app = dict(given or {})
    names = {name.lower() for name in app}
    return [h for h in SSE_HEADERS if h[0].lower() not in names] + list(app.items())


#: The `compress=` option: False (the default), True (every coding installed), a tuple of
#: codings in the app's order of preference, or a ready `CompressionPolicy` (e.g. with levels).
Compress = bool | Iterable[str] | CompressionPolicy


def compression_policy(compress: Compress) -> CompressionPolicy:
    """The validated policy for a `compress=` option (a policy is taken as it is)."""
    if compress is False:
        return _NO_COMPRESSION  # the usual case: one policy for every stream
    return compress if isinstance(compress, CompressionPolicy) else CompressionPolicy(compress)


_NO_COMPRESSION = CompressionPolicy(False)


class AsyncBody(Protocol):
    """What an ASGI adapter writes out: an `SSEStream`, or a compressed body around one."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Encoding:
    """The content coding chosen for one response, and the headers that say so.

    `headers` go on the response whether or not a body follows (a HEAD response gets the same
    ones); `body()` / `abody()` wrap the stream's bytes once, or return them as they are when
    the response is sent uncompressed.
    """

    policy: CompressionPolicy
    #: "gzip", "br", "zstd", or None for uncompressed.
    coding: str | None
    #: `Content-Encoding` (when compressed) and `Vary: Accept-Encoding` (when compression is on).
    headers: tuple[tuple[str, str], ...]

    def body(self, chunks: Iterable[bytes]) -> Iterable[bytes]:
        """A WSGI body: each write batch compressed and flushed; `close()` closes `chunks`."""
        if self.coding is None:
            return chunks
        return CompressedBody(chunks, self.policy.compressor(self.coding))

    def abody(self, chunks: AsyncBody) -> AsyncBody:
        """An ASGI body: the same, for `async for`; `aclose()` closes `chunks`."""
        if self.coding is None:
            return chunks
        return AsyncCompressedBody(chunks, self.policy.compressor(self.coding))


def negotiate_encoding(
    policy: CompressionPolicy,
    accept_encoding: str | None,
    headers: Iterable[tuple[str, str]] = (),
) -> Encoding:
    """The coding for a request's `Accept-Encoding` under `policy`.

    A response whose `headers` (set by the app) already name a `Content-Encoding` is left as it
    is: its body is the app's business.
    """
    if any(name.lower() == "content-encoding" for name, _ in headers):
        return Encoding(policy, None, ())
    coding = policy.choose(accept_encoding)
    return Encoding(policy, coding, policy.headers(coding))


def merge_headers(
    headers: Iterable[tuple[str, str]], added: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """`headers` plus `added`; a `Vary` in both becomes one, its field names each listed once.

    RFC 9110 §12.5.5: `Vary` is a list, so the app's `Vary: Cookie` and compression's
    `Vary: Accept-Encoding` make `Vary: Cookie, Accept-Encoding` (and `*` stays `*`).
    """
    merged = list(headers)
    for name, value in added:
        if name.lower() != "vary":
            merged.append((name, value))
            continue
        at = next((i for i, (n, _) in enumerate(merged) if n.lower() == "vary"), None)
        if at is None:
            merged.append((name, value))
            continue
        present = [v.strip() for v in merged[at][1].split(",") if v.strip()]
        known = {v.lower() for v in present}
        if "*" not in known:
            present += [v.strip() for v in value.split(",") if v.strip().lower() not in known]
        merged[at] = (merged[at][0], ", ".join(present))
    return merged


def checked_options(options: StreamOptionsDict) -> StreamOptionsDict:
    """Refuse an unknown or invalid option when the endpoint is built, not on every request."""
    StreamOptions(**options)
    return options


def make_stream(source: Source | SSEStream, options: StreamOptionsDict) -> SSEStream:
    """Wrap a source in a stream with `options`, or take a ready stream as it is."""
    if isinstance(source, SSEStream):
        if options:
            raise TypeError(
                "Stream options were given both to the adapter and to to_sse(); give them once."
            )
        return source
    return to_sse(source, **options)


def refuse_async(factory: Callable[..., Any], adapter: str) -> None:
    """Refuse an `async def` factory where only a sync one can run (a TypeError, when built)."""
    call = getattr(factory, "__call__", None)  # noqa: B004 (an instance's `async def __call__`)
    if inspect.iscoroutinefunction(factory) or inspect.iscoroutinefunction(call):
        raise TypeError(
            f"{adapter} needs a sync factory: make it a plain function (it may return an async "
            "generator), or serve with SSEApp (ASGI)."
        )


def allowed_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """GET and HEAD are always allowed; `methods` may add others (e.g. POST)."""
    return tuple(sorted({"GET", "HEAD"} | {method.upper() for method in methods}))


def track(registry: StreamRegistry | None, stream: SSEStream) -> Callable[[], None]:
    """Add `stream` to `registry` (if any); return what forgets it once it has ended."""
    if registry is None:
        return lambda: None
    registry.add(stream)
    return lambda: registry.discard(stream)


def admit(registry: StreamRegistry | None, stream: SSEStream) -> Refuse | None:
    """Track `stream` in `registry`, or a 503 with `Retry-After` when it is at `max_streams`.

    Refused, the caller closes the stream (its source never starts) and sends the refusal.
    `track()` of an admitted stream afterwards is harmless.
    """
    if registry is None or registry.admit(stream):
        return None
    retry_after = (("Retry-After", str(registry.retry_after)),)
    return Refuse(503, "Too many open streams; try again later.", retry_after)


def warn_once(flag: threading.Event, message: str, *, stacklevel: int = 3) -> None:
    """Log `message` and raise it as a `RuntimeWarning`, the first time `flag` is seen unset."""
    if flag.is_set():
        return
    flag.set()
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)


def run_in_new_loop(awaitable: Awaitable[Any]) -> Any:
    """Run an async hook from sync code on a loop of its own, in this thread's context.

    Under gevent every "thread" is a greenlet of one OS thread, where another greenlet's loop
    counts as running: the hook's loop then runs in a real thread of gevent's pool.
    """

    async def result() -> Any:
        return await awaitable

    coroutine = result()
    try:
        gevent = sys.modules.get("gevent")
        if gevent is not None and _loop_running():
            context = contextvars.copy_context()  # e.g. Flask's request, for the hook
            return gevent.get_hub().threadpool.apply(context.run, (asyncio.run, coroutine))
        return asyncio.run(coroutine)
    finally:  # no-ops once they have run; otherwise no "never awaited" warnings
        coroutine.close()
        getattr(awaitable, "close", lambda: None)()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def allowed(
    hook: Callable[..., Any] | None, args: tuple[Any, ...], run: RunAsync = run_in_new_loop
) -> bool:
    """Ask a sync or async hook from sync code; a hook that raises denies (and is logged)."""
    if hook is None:
        return True
    try:
        answer = hook(*args)
        return bool(run(answer) if inspect.isawaitable(answer) else answer)
    except Exception:
        logger.exception("ssekit: the authorize hook raised; access denied")
        return False


async def aallowed(hook: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
    """Ask a sync or async hook from async code; a hook that raises denies (and is logged)."""
    if hook is None:
        return True
    try:
        answer = hook(*args)
        return bool(await answer if inspect.isawaitable(answer) else answer)
    except Exception:
        logger.exception("ssekit: the authorize hook raised; access denied")
        return False


class StreamEndpoint(Generic[R]):
    """`factory(request)` served as a stream, behind the method policy and `authorize`."""

    def __init__(
        self,
        factory: Factory[R],
        *,
        methods: Iterable[str] = (),
        authorize: Authorize[R] | None = None,
        compress: Compress = False,
        options: StreamOptionsDict,
    ) -> None:
        self.factory = factory
        self.methods = allowed_methods(methods)
        self.authorize = authorize
        #: The `compress=` option, validated; `negotiate_encoding()` applies it per request.
        self.compression = compression_policy(compress)
        self.options = checked_options(options)

    def refuse_method(self, method: str) -> Refuse | None:
        """A 405 naming the allowed methods, or None when `method` is one of them."""
        if method.upper() in self.methods:
            return None
        return Refuse(405, "Method Not Allowed", (("Allow", ", ".join(self.methods)),))

    def open(self, request: R, method: str, run: RunAsync = run_in_new_loop) -> SSEStream | Refuse:
        """From sync code: the stream for `request`, or why not (async factories are refused)."""
        refused = self.refuse_method(method)
        if refused is not None:
            return refused
        if not allowed(self.authorize, (request,), run):
            return FORBIDDEN
        try:
            source = self.factory(request)
            if inspect.isawaitable(source):
                getattr(source, "close", lambda: None)()  # not awaited: say so once, not warn
                raise TypeError("The factory returned an awaitable; a WSGI app needs a source.")
            return make_stream(source, self.options)
        except Exception:
            logger.exception("ssekit: the stream's source could not be created")
            return SERVER_ERROR

    async def aopen(self, request: R, method: str) -> SSEStream | Refuse:
        """From async code: the stream for `request` (sync or async factory), or why not."""
        refused = self.refuse_method(method)
        if refused is not None:
            return refused
        if not await aallowed(self.authorize, (request,)):
            return FORBIDDEN
        try:
            source = self.factory(request)
            if inspect.isawaitable(source):
                source = await source
            return make_stream(source, self.options)
        except Exception:
            logger.exception("ssekit: the stream's source could not be created")
            return SERVER_ERROR


def refuse_topic(topic: str) -> Refuse | None:
    """A 400 for a topic no broker takes (empty or too long), before anyone is asked."""
    if not topic:
        return Refuse(400, "The topic is empty.")
    if len(topic) > MAX_TOPIC_LENGTH:
        return Refuse(400, f"The topic is longer than {MAX_TOPIC_LENGTH} characters.")
    return None


class BrokerEndpoint(Generic[R]):
    """A topic's events from `broker`, resuming from a `Last-Event-ID`, behind `authorize`."""

    def __init__(
        self,
        broker: Broker,
        *,
        authorize: AuthorizeTopics[R] | None = None,
        policy: SlowPolicy = "disconnect",
        compress: Compress = False,
        options: StreamOptionsDict,
    ) -> None:
        self.broker = broker
        self.authorize = authorize
        self.policy = policy
        #: The `compress=` option, validated; `negotiate_encoding()` applies it per request.
        self.compression = compression_policy(compress)
        #: Checked now, and shared by every stream of this endpoint (they are never changed).
        self.stream_options = StreamOptions(**options)

    def subscribe(self, topic: str, last_event_id: str | None) -> Decision:
        """Subscribe (the client is authorized); a client error never becomes a 500."""
        try:
            return Stream(self.broker.subscribe(topic, last_event_id, policy=self.policy))
        except InvalidTopic as exc:
            return Refuse(400, str(exc))
        except TooManySubscribers as exc:
            return Refuse(503, str(exc), (("Retry-After", "5"),))
        except (BrokerUnavailable, BrokerClosed):  # come back soon, to this process or another
            return RetryLater(UNAVAILABLE_RETRY_MS)
        except ValueError:
            if last_event_id is None:
                raise
            logger.exception("ssekit: the broker could not use a Last-Event-ID")
            return Refuse(400, "The Last-Event-ID cannot be used.")

    def decide(
        self, request: R, topic: str, last_event_id: str | None, run: RunAsync = run_in_new_loop
    ) -> Decision:
        """From sync code: stream, refuse or retry later."""
        refused = refuse_topic(topic)
        if refused is not None:
            return refused
        if not allowed(self.authorize, (request, [topic]), run):
            return FORBIDDEN
        return self.subscribe(topic, last_event_id)

    async def adecide(self, request: R, topic: str, last_event_id: str | None) -> Decision:
        """From async code; a Redis broker reads the replay over the network, so in a thread."""
        refused = refuse_topic(topic)
        if refused is not None:
            return refused
        if not await aallowed(self.authorize, (request, [topic])):
            return FORBIDDEN
        return await asyncio.to_thread(self.subscribe, topic, last_event_id)

    def stream(self, decision: Stream | RetryLater) -> SSEStream:
        """The stream to serve for a decision that is not a refusal."""
        if isinstance(decision, RetryLater):
            return to_sse([], retry=decision.ms, heartbeat=None)  # come back soon
        return SSEStream(decision.subscription, self.stream_options)

    def respond(self, decision: Decision) -> SSEStream | Refuse:
        """The stream to serve, or the refusal to send."""
        return decision if isinstance(decision, Refuse) else self.stream(decision)
