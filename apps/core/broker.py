"""Publishing a task after a row is committed, without letting a broker outage fail the request.

Stored means acknowledged: once a webhook delivery or an intake submission is committed, the client gets
its 2xx whatever the broker does. A publish that fails is logged (one line, no URL or password) and left
to the sweepers, which find the row still waiting and publish again once the broker is back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

logger = logging.getLogger(__name__)

# user:password@ in any URL an error message might quote
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]*@")


def publish_or_log(send: Callable[[], object], *, what: str) -> bool:
    """Calls ``send`` (a task's publish); on any error logs it as a warning and returns False."""
    try:
        send()
    except Exception as exc:  # the broker's errors vary by transport; none may reach the client
        message = _CREDENTIALS.sub("***@", str(exc))[:300]
        logger.warning(
            "broker: %s not published, the sweeper will: %s: %s", what, type(exc).__name__, message
        )
        return False
    return True
