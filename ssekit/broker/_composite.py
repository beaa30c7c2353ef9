"""Composite event ids: one client's position in every topic of a multi-topic subscription.

A Redis stream numbers its entries on its own, so one stream's id says nothing about another's.
A subscription to several topics therefore gives each event the id

    <topic>=<ms>-<n>&<topic>=<ms>-<n>...

one pair per topic of the subscription, in its order, with each name percent-encoded (`/` kept)
and `0-0` for a topic the client has had nothing of.  A resume with the same topics (in any
order) replays, per topic, what followed that topic's position.  A single-topic subscription keeps
plain `<ms>-<n>` ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from urllib.parse import quote, unquote

from ssekit.broker._hub import StreamId, format_id, parse_id

__all__ = ["NO_POSITION", "compose_id", "parse_composite"]

#: The position in a topic of which the client has had nothing (its stream may not exist yet).
NO_POSITION: StreamId = (0, 0)

#: The longest composite id read, per topic: a quoted name (3 characters per byte of a 256
#: character name, up to 4 bytes each) and an id (41) with its separators.
_MAX_PAIR_LENGTH = 3 * 4 * 256 + 43


@lru_cache(maxsize=4096)
def _quoted(topic: str) -> str:
    return quote(topic, safe="/", errors="surrogatepass")


def compose_id(topics: Sequence[str], positions: Mapping[str, StreamId]) -> str:
    """The composite id of `positions`, one pair per topic in `topics`' order."""
    return "&".join(
        f"{_quoted(topic)}={format_id(positions.get(topic, NO_POSITION))}"
        for topic in dict.fromkeys(topics)
    )


def parse_composite(value: str, topics: Sequence[str]) -> dict[str, StreamId] | None:
    """The position in each of `topics` that a composite id gives; None unless it gives exactly
    one for each of them.  Any text is safe to pass (a client's header): it never raises."""
    if not isinstance(value, str) or len(value) > _MAX_PAIR_LENGTH * len(topics):
        return None
    wanted = set(topics)
    positions: dict[str, StreamId] = {}
    for pair in value.split("&"):
        name, equals, text_id = pair.rpartition("=")
        if not equals:
            return None
        try:
            topic = unquote(name, errors="strict")
        except (UnicodeError, ValueError):
            return None
        position = parse_id(text_id)
        if position is None or topic not in wanted or topic in positions:
            return None
        positions[topic] = position
    return positions if len(positions) == len(wanted) else None
