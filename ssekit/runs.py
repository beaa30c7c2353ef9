"""Runs: a model call that keeps going when its client leaves, followed and resumed by any worker.

```
runs = Runs(broker)                                   # MemoryBroker, or RedisBroker for workers
run = runs.start(engine, memory=memory)              # a background task; the reply stored once
to_sse(runs.follow(run.id, last_event_id))           # from the start, or resumed after an id
runs.stop(run.id)                                    # cancels the upstream; keeps the partial
```

A run streams `engine.stream(messages)` into a broker topic of its own, through `record()` when
a memory is given (the reply stored once: whole, or partial when stopped, failed or timed out).
Followers read the topic: from the start, or after the `Last-Event-ID` they last saw, so a
reload, a dropped connection or another worker misses nothing and repeats nothing.  The topic
ends with one `done` event, `{"outcome": "done" | "stopped" | "failed" | "timeout" |
"abandoned"}`, after which `follow()` ends the stream; a failure is first reported by an `error`
event (`{"message"}`: a `StreamError`'s text, else a generic one).  With `format="ui"` the
topic carries the AI SDK UI message stream instead (a stop adds an `abort` part) and the `done`
event's data is `[DONE]`, so `useChat` can read a run directly.

Async apps start runs on their own event loop; sync apps (Flask, Django, WSGI) on one loop
thread the `Runs` starts on first use, which `close()` ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Literal

from ssekit._ai_formats import UIParts
from ssekit._errors import StreamError
from ssekit._frame import Encoded
from ssekit.broker import Broker, MemoryBroker

__all__ = ["END_EVENT", "Run", "RunLimitReached", "RunNotFound", "Runs", "RunsFormat"]

#: The event type of the last event of every run.
END_EVENT = "done"
#: What a run's topic carries: ssekit's chunks, or the AI SDK UI message stream.
RunsFormat = Literal["chunks", "ui"]
#: The client's message for a run that failed with anything but a `StreamError`.
_GENERIC_ERROR = "The reply failed."
#: Run ids: a random token, a dot, and the id of the run's first event (where following starts).
_RUN_ID = re.compile(r"([A-Za-z0-9_-]{8,64})\.([0-9]{1,20}-[0-9]{1,20})")
_END_LINES = (f"event: {END_EVENT}\n".encode(), b"event: reset\n")
#: How long closing waits for each run to store its reply and publish its end.
_CLOSE_SECONDS = 10.0

logger = logging.getLogger("ssekit")

Outcome = Literal["done", "stopped", "failed", "timeout", "abandoned"]


class RunLimitReached(RuntimeError):
    """Too many runs at once, for the session or the process: answer 429 and try again later."""

    status = 429


class RunNotFound(LookupError):
    """No run has that id (malformed, or never started): answer 404."""

    status = 404


class Run:
    """One run: its `id` (what clients follow), its session, and how it ended (`outcome`)."""

    def __init__(self, run_id: str, topic: str, session: str | None) -> None:
        self.id = run_id
        self.topic = topic
        self.session = session
        #: None while running, then how the run ended.
        self.outcome: Outcome | None = None
        self.started_at = time.monotonic()
        #: Set once the run has ended (for sync code: `run.ended.wait(timeout)`).
        self.ended = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._why_cancelled: Outcome | None = None

    async def wait(self) -> Outcome:
        """Wait for the run's end (its reply stored, its `done` event published)."""
        task = self._task
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            await asyncio.shield(task)
        else:  # a run on another loop (a sync app's loop thread)
            await asyncio.to_thread(self.ended.wait)
        assert self.outcome is not None
        return self.outcome

    def _cancel(self, why: Outcome) -> bool:
        """Cancel the run's task (from any thread); False if it has already ended."""
        if self.ended.is_set():
            return False
        if self._why_cancelled is None:
            self._why_cancelled = why
        loop = self._loop
        if loop is None:
            return False
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._cancel_task()
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
                loop.call_soon_threadsafe(self._cancel_task)
        return True

    def _cancel_task(self) -> None:
        # A task cancelled before its first step would skip its own clean-up (the end event):
        # one that has not started yet sees `_why_cancelled` when it does, and stops then.
        if self._task is not None and self._running:
            self._task.cancel()

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, outcome={self.outcome!r})"


class Runs:
    """Starts, follows and stops runs over one broker.

    `timeout`: seconds a run may take before it is stopped (outcome `timeout`).
    `max_runs`: runs at once in this process; `max_per_session`: runs at once per session
    (a `RunLimitReached` beyond either).  `abandon_after`: seconds a run may stream with no
    follower in this process before it is stopped (None: runs go on for nobody, which is the
    point when followers are on other workers).  `format`: see the module's docstring.
    """

    def __init__(
        self,
        broker: Broker | None = None,
        *,
        timeout: float | None = 600.0,
        max_runs: int = 100,
        max_per_session: int | None = 1,
        abandon_after: float | None = None,
        format: RunsFormat = "chunks",
        topic_prefix: str = "run:",
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds or None, not {timeout!r}.")
        if max_runs < 1:
            raise ValueError(f"max_runs must be >= 1, not {max_runs!r}.")
        if max_per_session is not None and max_per_session < 1:
            raise ValueError(f"max_per_session must be >= 1 or None, not {max_per_session!r}.")
        if abandon_after is not None and abandon_after <= 0:
            raise ValueError(f"abandon_after must be > 0 seconds or None, not {abandon_after!r}.")
        if format not in ("chunks", "ui"):
            raise ValueError(f"format must be 'chunks' or 'ui', not {format!r}.")
        #: Where runs publish: this process's `MemoryBroker` unless given (`RedisBroker`: workers).
        self.broker: Broker = MemoryBroker() if broker is None else broker
        self.timeout = timeout
        self.max_runs = max_runs
        self.max_per_session = max_per_session
        self.abandon_after = abandon_after
        self.format: RunsFormat = format
        self.topic_prefix = topic_prefix
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()  # the limits are checked and taken in one step
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # -- starting ------------------------------------------------------------------------------

    def start(
        self,
        engine: Any,
        messages: Iterable[Mapping[str, Any]] | None = None,
        *,
        memory: Any = None,
        session: str | None = None,
        **params: Any,
    ) -> Run:
        """Start a run of `engine.stream(messages, **params)` as a background task.

        `messages` defaults to `memory.get_messages()`; with a `memory` the reply is recorded
        in it.  `session` (default: the memory's parent id) is what `max_per_session` counts.
        The task runs on the running event loop, or (called from sync code) on the loop thread
        of this `Runs`.  Raises `RunLimitReached` past a limit.
        """
        if messages is None:
            if memory is None:
                raise TypeError("start() needs messages, a memory, or both.")
            messages = memory.get_messages()
        if session is None and memory is not None:
            session = str(memory.parent[1])
        messages = list(messages)
        token = secrets.token_urlsafe(12)
        topic = self.topic_prefix + token
        with self._lock:
            self._check_limits(session)
            run = Run(token, topic, session)  # its id gets the start event's id below
            self._runs[token] = run
        try:
            first_id = self.broker.publish(topic, {"run": token}, event="start")
        except BaseException:
            self._forget(token)
            raise
        run.id = f"{token}.{first_id}"
        with self._lock:
            self._runs[run.id] = self._runs.pop(token)
        source = engine.stream(messages, **params)
        if memory is not None:
            source = memory.record(source)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = self._background_loop()
            run._loop = loop
            loop.call_soon_threadsafe(self._launch, run, source)
        else:
            run._loop = loop
            self._launch(run, source)
        return run

    def _launch(self, run: Run, source: Any) -> None:
        """On the run's loop: start its task and its timeout."""
        loop = asyncio.get_running_loop()
        run._task = loop.create_task(self._execute(run, source))
        run._task.add_done_callback(lambda _: self._forget(run.id))
        if self.timeout is not None:
            timer = loop.call_later(self.timeout, run._cancel, "timeout")
            run._task.add_done_callback(lambda _: timer.cancel())

    def _forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def _background_loop(self) -> asyncio.AbstractEventLoop:
        """The loop thread runs from sync code run on, started on first use."""
        with self._lock:
            if self._thread_loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="ssekit-runs", daemon=True)
                thread.start()
                self._thread_loop, self._thread = loop, thread
            return self._thread_loop

    def _check_limits(self, session: str | None) -> None:
        running = list(self._runs.values())  # under self._lock
        if len(running) >= self.max_runs:
            raise RunLimitReached(f"This server is running {len(running)} replies; try again.")
        if session is not None and self.max_per_session is not None:
            mine = sum(1 for run in running if run.session == session)
            if mine >= self.max_per_session:
                raise RunLimitReached(
                    f"This session already has {mine} running repl{'y' if mine == 1 else 'ies'}."
                )

    async def _execute(self, run: Run, source: Any) -> None:
        try:
            await self._stream(run, source)
        finally:
            run.ended.set()

    async def _stream(self, run: Run, source: Any) -> None:
        run._running = True
        topic = run.topic
        ui = UIParts(run.id, metadata=True) if self.format == "ui" else None
        outcome: Outcome = "done"
        watcher = asyncio.get_running_loop().create_task(self._watch_stop(run))
        listened = time.monotonic()
        try:
            if run._why_cancelled is not None:  # stopped before it started
                raise asyncio.CancelledError
            if ui is not None:
                await self._publish(topic, ui.begin())
            async for chunk in source:
                await self._publish(topic, ui.feed(chunk) if ui is not None else [chunk])
                if self.abandon_after is not None:
                    if self.broker.subscribers(topic):
                        listened = time.monotonic()
                    elif time.monotonic() - listened > self.abandon_after:
                        outcome = "abandoned"
                        break
            if ui is not None and outcome == "done":
                await self._publish(topic, ui.end()[:-1])  # the end event carries `[DONE]`
        except asyncio.CancelledError:
            outcome = run._why_cancelled or "stopped"
        except Exception as exc:
            outcome = "failed"
            if isinstance(exc, StreamError):
                message = exc.message
            else:
                logger.exception("ssekit: run %s failed", run.id)
                message = _GENERIC_ERROR
            if ui is not None:
                await self._publish(topic, ui.fail(message)[:-1])
            else:
                await self._publish(topic, [{"message": message}], event="error")
        finally:
            watcher.cancel()
            # Closing the source closes the upstream request and stores the partial reply (once:
            # a source that already finished or failed has stored it and ignores this).
            aclose = getattr(source, "aclose", None)
            if callable(aclose):
                with contextlib.suppress(Exception):
                    await aclose()
        run.outcome = outcome
        self._forget(run.id)  # the session may start its next run once the reply is stored
        if ui is not None:
            if outcome in ("stopped", "timeout", "abandoned"):
                await self._publish(topic, [*ui.interrupt(), {"type": "abort"}])
            await self._publish(topic, ["[DONE]"], event=END_EVENT)
        else:
            await self._publish(topic, [{"outcome": outcome}], event=END_EVENT)

    async def _publish(self, topic: str, items: list[Any], event: str | None = None) -> None:
        """Publish one chunk's events, all of them even if the run is stopped meanwhile: what
        `record()` has taken of the reply, followers see."""
        if isinstance(self.broker, MemoryBroker):  # never waits
            for item in items:
                self.broker.publish(topic, item, event=event)
            return
        task = asyncio.ensure_future(self._publish_each(topic, items, event))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise

    async def _publish_each(self, topic: str, items: list[Any], event: str | None) -> None:
        for item in items:
            await self.broker.apublish(topic, item, event=event)

    async def _watch_stop(self, run: Run) -> None:
        """Cancel the run when a stop request arrives on its control topic (from any process)."""
        if isinstance(self.broker, MemoryBroker):
            return  # one process: stop() cancels the task directly
        subscription = self.broker.subscribe(run.topic + ":stop")
        handoff = subscription._attach()
        try:
            while not handoff.take():
                if handoff.drained:
                    return
                await handoff.wait_async(None)
            run._cancel("stopped")
        finally:
            handoff.close()

    # -- following and stopping ----------------------------------------------------------------

    def _topic_and_start(self, run_id: str) -> tuple[str, str]:
        match = _RUN_ID.fullmatch(run_id) if isinstance(run_id, str) else None
        if match is None:
            raise RunNotFound(f"No run has the id {run_id!r}.")
        return self.topic_prefix + match[1], match[2]

    def follow(self, run_id: str, last_event_id: str | None = None) -> AsyncIterator[Any]:
        """A `to_sse()` source of the run's events: from its start, or after `last_event_id`;
        it ends after the run's `done` event (or a `reset`, when the history is gone).

        Works in any process that shares the broker; raises `RunNotFound` for a malformed id.
        """
        topic, start = self._topic_and_start(run_id)
        subscription = self.broker.subscribe(topic, last_event_id or start)
        return _until_end(subscription)

    def stop(self, run_id: str) -> bool:
        """Stop a run: its upstream request is closed at once, the partial reply stored, and its
        topic ends with `done` (`stopped`).  A run of another process (with a shared broker) is
        asked to stop through the broker.  False when this process knows the run has ended."""
        run = self._runs.get(run_id)
        if run is not None:
            return run._cancel("stopped")
        topic, _ = self._topic_and_start(run_id)
        if isinstance(self.broker, MemoryBroker):
            return False
        self.broker.publish(topic + ":stop", {"stop": True})
        return True

    def get(self, run_id: str) -> Run | None:
        """The run of this process with that id, while it runs."""
        with self._lock:
            return self._runs.get(run_id)

    def running(self, session: str | None = None) -> list[Run]:
        """This process's runs (of one session, if given)."""
        with self._lock:
            runs = list(self._runs.values())
        return [run for run in runs if session is None or run.session == session]

    async def aclose(self) -> None:
        """Stop every run of this process, wait until each has stored its reply, and end the
        loop thread if one was started (for an async app's shutdown)."""
        runs = self.running()
        for run in runs:
            run._cancel("stopped")
        for run in runs:
            await asyncio.to_thread(run.ended.wait, _CLOSE_SECONDS)
        self._stop_thread()

    def close(self) -> None:
        """`aclose()` for sync code (a sync app's shutdown): stop every run, end the loop thread."""
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            raise TypeError("Runs.close() blocks: in async code, await runs.aclose() instead.")
        runs = self.running()
        for run in runs:
            run._cancel("stopped")
        for run in runs:
            run.ended.wait(_CLOSE_SECONDS)
        self._stop_thread()

    def _stop_thread(self) -> None:
        with self._lock:
            loop, thread = self._thread_loop, self._thread
            self._thread_loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CLOSE_SECONDS)
        if not thread.is_alive():
            loop.close()


def _is_end(item: bytes) -> bool:
    return any(item.startswith(line) or b"\n" + line in item for line in _END_LINES)


async def _until_end(subscription: Any) -> AsyncIterator[Any]:
    """The subscription's events, ending after the run's last one."""
    handoff = subscription._attach()
    try:
        while True:
            items = handoff.take()
            for item in items:
                yield item
                if isinstance(item, bytes) and _is_end(item):
                    return
            if handoff.drained:
                if handoff.ending:
                    yield Encoded(handoff.ending)
                if handoff.error is not None:
                    raise handoff.error
                return
            if not items:
                await handoff.wait_async(None)
    finally:
        handoff.close()
