"""``python -m kommo_sandbox --port 8001``: the sandbox without Django (see :mod:`kommo_sandbox.cli`)."""

import sys

from kommo_sandbox.cli import main

sys.exit(main())
