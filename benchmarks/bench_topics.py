"""Topic churn: what a `MemoryBroker` keeps after many distinct topics come and go.

Run:  python benchmarks/bench_topics.py [--topics N]

Three rows, each on a fresh broker in this process, memory taken with `tracemalloc` (traced
Python allocations, after a garbage collection) before and after:

- "subscribed and left": N distinct topics, each subscribed once and the subscription closed
  (one topic per chat or job, never published to), the case that must return to its baseline;
- "published, no history": the same with one publish each and `history_size=0`;
- "published, history kept": one publish each with the default history: kept (the history is
  the point) up to `max_topics`, then the least recently active idle topics are evicted.

Time per cycle is wall time with tracemalloc off (a separate pass).  A report, not a test.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable

from ssekit.broker import MemoryBroker

GOAL_MB = 5.0


def subscribed_and_left(broker: MemoryBroker, n: int) -> None:
    broker.subscribe(f"chat/{n}").close()


def published(broker: MemoryBroker, n: int) -> None:
    subscription = broker.subscribe(f"chat/{n}")
    broker.publish(f"chat/{n}", {"n": n})
    subscription.close()


def measure(
    make: Callable[[], MemoryBroker], cycle: Callable[[MemoryBroker, int], None], count: int
) -> tuple[float, float, int]:
    """(MB kept, µs per cycle, topics kept) for `count` cycles on a fresh broker."""
    broker = make()
    cycle(broker, -1)  # warm-up
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(count):
            cycle(broker, n)
        gc.collect()
        kept = (tracemalloc.get_traced_memory()[0] - before) / 1024 / 1024
    finally:
        tracemalloc.stop()
    topics = (
        broker._hub.topic_count()
        if hasattr(broker, "_hub") and hasattr(broker._hub, "topic_count")
        else -1
    )
    timed = make()
    start = time.perf_counter()
    for n in range(count):
        cycle(timed, n)
    per_cycle = (time.perf_counter() - start) / count * 1e6
    return kept, per_cycle, topics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=100_000)
    args = parser.parse_args()
    rows = [
        ("subscribed and left", MemoryBroker, subscribed_and_left),
        ("published, no history", lambda: MemoryBroker(history_size=0), published),
        ("published, history kept", MemoryBroker, published),
    ]
    print(f"{args.topics:,} distinct MemoryBroker topics, one cycle each")
    print(f"  {'':26}{'MB kept':>10}{'µs/cycle':>10}{'topics kept':>13}")
    results = {}
    for name, make, cycle in rows:
        kept, per_cycle, topics = measure(make, cycle, args.topics)
        results[name] = kept
        shown = f"{topics:,}" if topics >= 0 else "n/a"
        print(f"  {name:26}{kept:10.1f}{per_cycle:10.1f}{shown:>13}")
    kept = results["subscribed and left"]
    verdict = "PASS" if kept < GOAL_MB else "FAIL"
    print(f"{verdict} subscribed and left: {kept:.1f} MB kept (goal: under {GOAL_MB:.0f} MB)")


if __name__ == "__main__":
    main()
