import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from apps.core.timeouts import bounded_wsgi

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# The webhook and intake requests' database deadline starts here, before Django's own connection checks
# (apps/core/timeouts.py).
application = bounded_wsgi(get_wsgi_application())
# The URLconf, and with it every view module, is loaded when the worker starts rather than by its first
# request: that request's deadline would pay for it (0.36 s on the 2-core development machine under load,
# enough for a worker's first webhook after a deploy to miss its 1.5 s and be answered 503).
get_resolver().resolve("/healthz")
