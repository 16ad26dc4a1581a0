"""Imported into the gate benchmark's worker with ``--trace`` (``celery worker -I``): the outbound plan
logs its decision on the moves back (DEBUG), which the benchmark counts. The worker's own ``-l INFO``
sets the root logger's level only."""

import logging

logging.getLogger("apps.kommo.services.outbound").setLevel(logging.DEBUG)
