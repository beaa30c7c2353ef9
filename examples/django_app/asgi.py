"""The example as an ASGI application: `uvicorn asgi:application`."""

import app  # noqa: F401 (configures Django)

from ssekit.adapters.django import get_asgi_application

application = get_asgi_application()
