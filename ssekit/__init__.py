"""ssekit: Server-Sent Events for Python, correct to the byte.

`to_sse()` turns any iterator or async iterator of chunks into `text/event-stream` bytes; the
adapters in `ssekit.adapters` serve them from WSGI, Flask, ASGI and Starlette apps.
"""

import os as _os

from ssekit._channel import Channel
from ssekit._errors import ChannelClosed, StreamError
from ssekit._event import Event
from ssekit._parse import EventParser, MessageEvent
from ssekit._registry import StreamRegistry
from ssekit._stream import SSEStream, StreamState, to_sse

__version__ = "0.1.0"

# Installed, the adapters live in ssekit/adapters.  In a source checkout they sit beside this
# package, in adapters/ (setup.cfg's package_dir maps them); when Python imports ssekit from the
# checkout itself (`python -m ...` run from its root puts it first on sys.path), look there too.
_here = _os.path.dirname(__file__)
if not _os.path.isdir(_os.path.join(_here, "adapters")):
    _checkout = _os.path.dirname(_here)
    if _os.path.isfile(_os.path.join(_checkout, "adapters", "__init__.py")) and _os.path.isfile(
        _os.path.join(_checkout, "setup.cfg")
    ):
        __path__.append(_checkout)

__all__ = [
    "Channel",
    "ChannelClosed",
    "Event",
    "EventParser",
    "MessageEvent",
    "SSEStream",
    "StreamError",
    "StreamRegistry",
    "StreamState",
    "__version__",
    "to_sse",
]
