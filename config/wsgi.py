import os

from django.core.wsgi import get_wsgi_application

from apps.core.timeouts import bounded_wsgi

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# The webhook and intake requests' database deadline starts here, before Django's own connection checks
# (apps/core/timeouts.py).
application = bounded_wsgi(get_wsgi_application())
