"""The Django test project for daphne, which takes a module attribute, not a factory:
`daphne apps.django_daphne:application` with `SSEKIT_TEST_EVENTS` set to the event log."""

from __future__ import annotations

from apps.django_asgi_app import create_app

application = create_app()
