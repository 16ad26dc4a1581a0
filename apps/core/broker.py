"""Publishing a task after a row is committed, without letting a broker outage fail the request.

Stored means acknowledged: once a webhook delivery or an intake submission is committed, the client gets
its 2xx whatever the broker does. A publish that fails is logged (one line, no URL or password) and left
to the sweepers, which find the row still waiting and publish again once the broker is back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)

# user:password@ in any URL an error message might quote
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]*@")


def publish_or_log(send: Callable[[], object], *, what: str) -> bool:
    """Calls ``send`` (a task's publish); on any error logs it as a warning and returns False."""
    try:
        send()
    except Exception as exc:  # the broker's errors vary by transport; none may reach the client
        logger.warning(
            "broker: %s not published, the sweeper will: %s: %s", what, type(exc).__name__, _redacted(exc)
        )
        return False
    return True


def publish_all(sends: Iterable[tuple[Callable[[], object], str]]) -> None:
    """A beat's fan-out: calls every ``send`` (one task's publish per account, each with what it is), so
    that one that fails, the broker down for a moment, does not leave the others unqueued. Each failure is
    logged; the first is raised at the end, so that the beat's run still shows as failed. Nothing is lost
    by it: each beat derives its work from the database again on its next run."""
    failed: list[Exception] = []
    for send, what in sends:
        try:
            send()
        except Exception as exc:  # the broker's errors vary by transport
            logger.warning("broker: %s not queued: %s: %s", what, type(exc).__name__, _redacted(exc))
            failed.append(exc)
    if failed:
        raise failed[0]


def _redacted(exc: Exception) -> str:
    return _CREDENTIALS.sub("***@", str(exc))[:300]
