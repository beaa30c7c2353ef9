"""The options of one stream, declared once: a `TypedDict` for callers, a class that validates.

`to_sse()` and every adapter take `**options: Unpack[StreamOptionsDict]`, so mypy flags a
misspelt option in the caller's code, and `StreamOptions` refuses it at run time with a
`TypeError` naming it: when the app, view or response is built, not on every request.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from ssekit._event import Event
from ssekit._frame import make_framer
from ssekit._serialize import Serializer

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = ["ErrorHook", "FlushPolicy", "StreamOptions", "StreamOptionsDict"]

#: How writes are batched: one per event, whatever is ready, or a latency budget in seconds.
FlushPolicy = Literal["each", "auto"] | float
#: Called with the source's exception; returns the client's message, an `Event`, or None (default).
ErrorHook = Callable[[BaseException], "str | Event | None"]


class StreamOptionsDict(TypedDict, total=False):
    """The keyword options of `to_sse()`, which the adapters pass through."""

    heartbeat: float | None
    flush: FlushPolicy
    retry: int | None
    padding: int
    end: str | Event | None
    serializer: Serializer | None
    on_error: ErrorHook | None
    max_duration: float | None


#: The option names, in the order `to_sse()` documents them.
OPTION_NAMES: tuple[str, ...] = tuple(StreamOptionsDict.__annotations__)


class StreamOptions:
    """The validated options of one stream; build it with `StreamOptions(**options)`."""

    __slots__ = (*OPTION_NAMES, "frame")

    heartbeat: float | None
    flush: FlushPolicy
    retry: int | None
    padding: int
    end: str | Event | None
    serializer: Serializer | None
    on_error: ErrorHook | None
    max_duration: float | None

    def __init__(self, **options: Unpack[StreamOptionsDict]) -> None:
        check_option_names(options)
        self.heartbeat = _positive_seconds("heartbeat", options.get("heartbeat", 15.0))
        self.max_duration = _positive_seconds("max_duration", options.get("max_duration"))
        flush = options.get("flush", "auto")
        if flush not in ("each", "auto"):
            if isinstance(flush, bool) or not isinstance(flush, (int, float)) or not flush > 0:
                raise ValueError(
                    f'flush must be "each", "auto" or a positive number of seconds, not {flush!r}.'
                )
            flush = float(flush)
        self.flush = flush
        retry = options.get("retry")
        if retry is not None:
            Event(retry=retry)  # the same rule as the field: a non-negative int
        self.retry = retry
        padding = options.get("padding", 0)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(
                f"padding must be a non-negative int number of bytes, not {padding!r}."
            )
        self.padding = padding
        end = options.get("end")
        if end is not None and not isinstance(end, (str, Event)):
            raise TypeError(f"end must be a str, an Event or None, not {type(end).__name__}.")
        self.end = end
        serializer = options.get("serializer")
        if serializer is not None and not callable(serializer):
            raise TypeError("serializer must be a callable that returns str or bytes.")
        self.serializer = serializer
        on_error = options.get("on_error")
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be a callable taking the exception.")
        self.on_error = on_error
        #: Chunk -> event bytes, by the rules of `to_sse()` and this serializer.
        self.frame: Callable[[Any], bytes] = make_framer(serializer)


def check_option_names(options: Mapping[str, object]) -> None:
    """Refuse an unknown option with a `TypeError` that names it (and the known ones)."""
    unknown = [name for name in options if name not in StreamOptionsDict.__annotations__]
    if unknown:
        known = ", ".join(OPTION_NAMES)
        raise TypeError(f"Unknown stream option {unknown[0]!r}; the options are: {known}.")


def _positive_seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, not {value!r}.")
    return float(value)
