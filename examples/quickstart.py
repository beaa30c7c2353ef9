"""Pipe a generator through `to_sse()` and print the bytes a browser would receive.

Run: python examples/quickstart.py
"""

import time

from ssekit import Event, to_sse


def progress():
    """A slow job reporting progress, then a custom event with an id."""
    for percent in (0, 25, 50, 75, 100):
        yield {"percent": percent}
        time.sleep(0.1)
    yield Event("done\nall good", event="finished", id="job-1")


for data in to_sse(progress(), end="[DONE]", flush="each"):
    print(data.decode(), end="", flush=True)
