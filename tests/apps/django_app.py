"""The Django test project (`apps.django_project`) as a WSGI application.

gunicorn: `apps.django_app:create_app()` with `SSEKIT_TEST_EVENTS` set to the event log; the
registry's signal handlers are chained there (gunicorn loads the app after its own handlers).
"""

from __future__ import annotations

from typing import Any

from apps import django_project


def create_app(events: str | None = None) -> Any:
    """The WSGI application; sources log to `events` (default: `SSEKIT_TEST_EVENTS`)."""
    django_project.configure(events)
    if events is not None:  # in the test process: leave its signal handlers alone
        from django.core.wsgi import get_wsgi_application as django_wsgi_application

        return django_wsgi_application()
    from ssekit.adapters.django import get_wsgi_application

    return get_wsgi_application()
