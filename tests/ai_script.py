"""The recorded-shape reply both fake AI servers stream for `model="tools"`: reasoning, text, two
parallel tool calls whose JSON arguments arrive in many fragments, a finish and the token counts.

Each fake writes it in its own vendor's wire shape; the tests check that every engine turns it
back into exactly these values.
"""

from __future__ import annotations

import json

#: The reasoning deltas, then the text deltas, of the reply.
REASONING_DELTAS = ["The user wants ", "the weather in two ", "cities; call the tool twice."]
TEXT_DELTAS = ["Let me check ", "both cities ☕", "."]
#: The two calls the reply makes, whole.
TOOL_CALLS = [
    {
        "id": "call_paris_01",
        "name": "get_weather",
        "arguments": json.dumps({"city": "Paris", "unit": "celsius", "days": [1, 2, 3]}),
    },
    {
        "id": "call_tokyo_02",
        "name": "get_weather",
        "arguments": json.dumps({"city": "東京", "unit": "fahrenheit", "note": 'a "quoted" word'}),
    },
]
#: The upstream's token counts for the reply.
INPUT_TOKENS = 123
OUTPUT_TOKENS = 45
#: How many pieces each call's arguments are cut into (rounding leaves at least 10).
FRAGMENTS = 12


def fragments(text: str, count: int = FRAGMENTS) -> list[str]:
    """`text` in `count` non-empty pieces of (nearly) equal length."""
    size = -(-len(text) // count)
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    assert len(pieces) >= 10, "the arguments must arrive in at least 10 fragments"
    return pieces
