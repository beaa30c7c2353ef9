"""gunicorn hooks: a worker's streams end with their farewell at SIGTERM, and stay under a cap.

One line of configuration, for the `gthread` and `gevent` workers:

```
gunicorn -c python:ssekit.gunicorn -k gthread --threads 32 app:app
```

or, in your own `gunicorn.conf.py`, `from ssekit.gunicorn import *` (it defines only the hooks
`post_worker_init` and `worker_int`; if you define one of them too, call ours from yours).

gunicorn stops a worker on SIGTERM by waiting for its open responses, up to the graceful timeout
(30 s), then kills it: an event stream never finishes by itself, so its client gets no farewell
and the worker lingers.  `post_worker_init` chains a SIGTERM handler in front of the worker's own
(no gunicorn code is patched): it calls `shutdown()` on every live `StreamRegistry` of the
process (see `ssekit._registry.live_registries`, held weakly), so each stream sends its registry's
farewell and `retry:` hint and ends, its kept-alive connection is closed, and the worker exits
at once.  `worker_int` (gunicorn's quick shutdown, SIGINT/SIGQUIT) does the same, best effort,
in the 0.1 s gunicorn gives it.

`post_worker_init` also gives every registry without a `max_streams` of its own (those that exist
once the worker has loaded the app) the worker's default: three quarters of `--threads` for
gthread (at least 1), of `--worker-connections` for gevent.  A stream holds one of the worker's
threads (or connections) for its whole life; with the rest kept free, ordinary routes still
answer and a stream beyond the cap gets 503 with a `Retry-After` at once, instead of waiting
unanswered for a thread.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any

from ssekit._registry import in_background, live_registries, shutdown_all

__all__ = ["post_worker_init", "worker_int"]

#: The share of a worker's threads (gthread) or connections (gevent) streams may hold.
STREAM_SHARE = 0.75


def _default_max_streams(worker: Any) -> int | None:
    """The cap for a worker's registries: 3/4 of its threads or connections; None otherwise."""
    gthread = sys.modules.get("gunicorn.workers.gthread")
    base_async = sys.modules.get("gunicorn.workers.base_async")
    if gthread is not None and isinstance(worker, gthread.ThreadWorker):
        slots = int(worker.cfg.threads)
    elif base_async is not None and isinstance(worker, base_async.AsyncWorker):
        slots = int(worker.cfg.worker_connections)
    else:
        return None  # the sync worker: one request at a time (ssekit warns about streams there)
    return max(1, int(slots * STREAM_SHARE))


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: cap the worker's registries and end their streams first on SIGTERM."""
    cap = _default_max_streams(worker)
    if cap is not None:
        for registry in live_registries():
            if registry.max_streams is None:
                registry.max_streams = cap
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        # Off the signal frame (it may have interrupted a holder of a stream's lock), then the
        # worker's own handler, which stops accepting and waits for the (now ending) responses.
        in_background(shutdown_all)
        if callable(previous):
            previous(sig, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    # As gunicorn set it: a SIGTERM does not interrupt the requests' system calls.
    signal.siginterrupt(signal.SIGTERM, False)


def worker_int(worker: Any) -> None:
    """gunicorn hook (SIGINT/SIGQUIT, its quick shutdown): end every stream with its farewell."""
    in_background(shutdown_all)
