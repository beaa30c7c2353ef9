"""A worker process for the runs tests: starts one run on a `RedisBroker`, prints its id as a
JSON line, and exits 0 once the run has ended (its reply stored, its `done` event published).

    python run_worker.py REDIS_URL BASE_URL DATABASE MODEL
"""

from __future__ import annotations

import asyncio
import json
import sys

from ssekit.ai import OpenAICompatibleEngine
from ssekit.broker import RedisBroker
from ssekit.memory import SQLiteMemory
from ssekit.runs import Runs


async def main(redis_url: str, base_url: str, database: str, model: str) -> None:
    broker = RedisBroker(redis_url)
    try:
        runs = Runs(broker)
        memory = SQLiteMemory(database, parent=("ChatSession", "worker"))
        memory.add_user_message("count, slowly")
        run = runs.start(OpenAICompatibleEngine(base_url, model=model), memory=memory)
        print(json.dumps({"run": run.id}), flush=True)
        await run.wait()
    finally:
        await broker.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
