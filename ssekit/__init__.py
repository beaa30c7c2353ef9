"""ssekit: Server-Sent Events for Python, correct to the byte.

`to_sse()` turns any iterator or async iterator of chunks into `text/event-stream` bytes; the
adapters in `ssekit.adapters` serve them from Flask, Starlette/FastAPI, Django and any WSGI or
ASGI app.
"""

from ssekit._channel import Channel
from ssekit._compress import CompressionPolicy
from ssekit._errors import ChannelClosed, ParseLimitExceeded, StreamError
from ssekit._event import Event
from ssekit._parse import EventParser, MessageEvent
from ssekit._producers import get_item, lingering_threads, sleep
from ssekit._registry import StreamRegistry
from ssekit._stream import SSEStream, StreamState, to_sse

__version__ = "0.1.0"

__all__ = [
    "Channel",
    "ChannelClosed",
    "CompressionPolicy",
    "Event",
    "EventParser",
    "MessageEvent",
    "ParseLimitExceeded",
    "SSEStream",
    "StreamError",
    "StreamRegistry",
    "StreamState",
    "__version__",
    "get_item",
    "lingering_threads",
    "sleep",
    "to_sse",
]
