"""The example as a WSGI application: `gunicorn -k gthread --threads 32 wsgi:application`."""

import app  # noqa: F401 (configures Django)

from ssekit.adapters.django import get_wsgi_application

application = get_wsgi_application()
