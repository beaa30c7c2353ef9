"""The contract routes (see `apps`) as Django views, and every other part of
`ssekit.adapters.django`: the settings, the URLconf and the views of one test project.

`django_app` serves it under WSGI, `django_asgi_app` under ASGI.  Django's settings belong to the
process, so the event log the views report to is a module variable that `configure(path)` sets.

Django-only routes:
    /decorated            `@sse(end="[DONE]")` on a sync view returning a source
    /decorated-async      `@sse(end="[DONE]")` on an `async def` view returning an async source
    /compressed           `@sse(end="[DONE]", compress=True)` on a sync view
    /compressed-async     `@sse(end="[DONE]", compress=("gzip",))` on an `async def` view
    /decorated-gen        `@sse` on a generator view that reads `last_event_id()` as it streams
    /decorated-async-gen  the same with an async generator view
    /decorated-redirect   `@sse` on a view returning a redirect: passed through
    /decorated-broken     an `@sse` view raises before returning a source
    /async-hold           an `async def` view returning `sse_response(...)` of /hold's sources
    /guarded/<topic>      `broker_view` with an async `authorize` hook: only `X-User: ann` may in
    /guarded-stream       `@sse` with the same async hook
    /events/<topic>       `broker_view` of `BROKER` (no hook)
    /page                 a page whose `EventSource` reads `?src=` until `?n=` events (Chromium)
    /gzipped              /hold behind Django's `GZipMiddleware` (`gzip_page`)
    /gzip-exempt          /hold behind ssekit's `GZipMiddleware`, which leaves it alone
    /resume-once          an event with a non-ASCII id and `retry: 100`; after it, the id read
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect
from django.urls import path
from django.utils.decorators import decorator_from_middleware
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_safe

import apps
from ssekit import Event, StreamRegistry
from ssekit.adapters.django import (
    GZipMiddleware,
    broker_view,
    last_event_id,
    sse,
    sse_response,
)
from ssekit.broker import MemoryBroker

#: The registry's farewell and reconnection hint, checked by the tests.
FAREWELL = "bye"
FAREWELL_RETRY = 500
#: The id of /resume-once's first event.
UNICODE_ID = "é…😀"
#: The broker of /events/<topic>.
BROKER = MemoryBroker()
#: The event log the views report to (set by `configure()`).
_log: list[str] = []


def configure(events: str | None) -> None:
    """Configure Django for this project once per process; point the views at `events`."""
    _log[:] = [apps.events_path(events)]
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        # Middleware that reads no streaming body: it must leave the streams alone.
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.http.ConditionalGetMiddleware",
        ],
        SECURE_CONTENT_TYPE_NOSNIFF=False,  # the contract suite checks the exact headers
        SECURE_REFERRER_POLICY=None,
        SECURE_CROSS_ORIGIN_OPENER_POLICY=None,
        SSEKIT_REGISTRY=StreamRegistry(farewell=FAREWELL, retry=FAREWELL_RETRY),
        LOGGING_CONFIG=None,
    )
    django.setup()


def log() -> str:
    return _log[0]


def beat(request: HttpRequest, source: Any, **options: Any) -> HttpResponseBase:
    return sse_response(request, source, heartbeat=apps.HEARTBEAT, **options)


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


# -- the contract routes


@require_safe
def sample_view(request: HttpRequest) -> HttpResponseBase:
    return beat(request, apps.sample(request.GET["kind"]))


@require_safe
def resume_view(request: HttpRequest) -> HttpResponseBase:
    answer = apps.resume(log(), request.GET.get("tag"), last_event_id(request), request.method)
    return beat(request, answer)


@sse(methods=("POST",), heartbeat=apps.HEARTBEAT)
def post_view(request: HttpRequest) -> Any:
    return apps.resume(log(), request.GET.get("tag"), last_event_id(request), request.method)


@require_safe
def options_view(request: HttpRequest) -> HttpResponseBase:
    return beat(request, list(apps.OPTIONS_SOURCE), **apps.OPTIONS)


@require_safe
def hold_view(request: HttpRequest) -> HttpResponseBase:
    return beat(request, apps.hold(request.GET["kind"], log(), request.GET["tag"]))


@sse(heartbeat=apps.HEARTBEAT)
def slow_view(request: HttpRequest) -> Any:
    return apps.slow(request.GET["kind"], log(), request.GET["tag"])


@sse(heartbeat=apps.HEARTBEAT)
def subscription(request: HttpRequest) -> Any:
    return apps.Subscription(log(), request.GET["tag"])


@require_safe
def broken(request: HttpRequest) -> HttpResponseBase:
    raise ValueError(apps.SECRET)


# -- Django only


@sse(end="[DONE]", heartbeat=apps.HEARTBEAT)
def decorated(request: HttpRequest) -> Iterator[Any]:
    return apps.sample_sync()


@sse(end="[DONE]", heartbeat=apps.HEARTBEAT)
async def decorated_async(request: HttpRequest) -> AsyncIterator[Any]:
    await asyncio.sleep(0)
    return apps.sample_async()


@sse(end="[DONE]", compress=True, heartbeat=apps.HEARTBEAT)
def compressed(request: HttpRequest) -> Iterator[Any]:
    return apps.sample_sync()


@sse(end="[DONE]", compress=("gzip",), heartbeat=apps.HEARTBEAT)
async def compressed_async(request: HttpRequest) -> AsyncIterator[Any]:
    await asyncio.sleep(0)
    return apps.sample_async()


@sse(heartbeat=apps.HEARTBEAT)
def decorated_gen(request: HttpRequest) -> Iterator[Any]:
    yield {"last_event_id": last_event_id(request)}


@sse(heartbeat=apps.HEARTBEAT)
async def decorated_async_gen(request: HttpRequest) -> AsyncIterator[Any]:
    await asyncio.sleep(0)
    yield {"last_event_id": last_event_id(request)}


@sse
def decorated_redirect(request: HttpRequest) -> Any:
    return redirect("/health")


@sse
def decorated_broken(request: HttpRequest) -> Iterator[Any]:
    raise ValueError(apps.SECRET)


async def async_hold(request: HttpRequest) -> HttpResponseBase:
    await asyncio.sleep(0)
    return beat(request, apps.hold(request.GET["kind"], log(), request.GET["tag"]))


async def only_ann(request: HttpRequest, topics: list[str] | None = None) -> bool:
    await asyncio.sleep(0)  # a real await: the hook must run on a loop
    return request.headers.get("X-User") == "ann"


@sse(authorize=only_ann, heartbeat=apps.HEARTBEAT)
def guarded_stream(request: HttpRequest) -> Iterator[Any]:
    return apps.sample_sync()


PAGE = """<!doctype html><meta charset="utf-8"><script>
window.seen = [];
const query = new URLSearchParams(location.search);
const source = new EventSource(query.get("src"));
const take = (label) => (message) => {
  window.seen.push([label + message.data, message.lastEventId]);
  if (window.seen.length >= Number(query.get("n"))) source.close();
};
source.onmessage = take("");
source.addEventListener("update", take("update:"));
source.addEventListener("other", take("other:"));
</script>"""


def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PAGE)


@sse(heartbeat=apps.HEARTBEAT, retry=100)
def resume_once(request: HttpRequest) -> list[Any]:
    """First visit: one event with an id, then the end (the browser reconnects); then the id."""
    seen = last_event_id(request)
    if seen is None:
        return [Event("first", id=UNICODE_ID)]
    return [{"read": seen}]


urlpatterns = [
    path("health", health),
    path("sample", sample_view),
    path("resume", resume_view),
    path("post", post_view),
    path("options", options_view),
    path("hold", hold_view),
    path("slow", slow_view),
    path("subscription", subscription),
    path("broken", broken),
    path("decorated", decorated),
    path("decorated-async", decorated_async),
    path("compressed", compressed),
    path("compressed-async", compressed_async),
    path("decorated-gen", decorated_gen),
    path("decorated-async-gen", decorated_async_gen),
    path("decorated-redirect", decorated_redirect),
    path("decorated-broken", decorated_broken),
    path("async-hold", async_hold),
    path(
        "guarded/<path:topic>",
        broker_view(MemoryBroker(), authorize=only_ann, heartbeat=apps.HEARTBEAT),
    ),
    path("guarded-stream", guarded_stream),
    path("events/<path:topic>", broker_view(BROKER, heartbeat=apps.HEARTBEAT)),
    path("page", page),
    path("gzipped", gzip_page(hold_view)),
    path("gzip-exempt", decorator_from_middleware(GZipMiddleware)(hold_view)),
    path("resume-once", resume_once),
]
