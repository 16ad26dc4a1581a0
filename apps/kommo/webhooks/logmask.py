"""Keeps the webhook URL's secret token out of every log line that quotes a path.

The token in ``/webhooks/kommo/<token>/`` is the only credential of a delivery (Kommo signs nothing), so
anyone who reads it in a log could post deliveries. :class:`MaskWebhookToken` is a logging filter that
rewrites a record's message with the token replaced by ``***``; the settings put it on ``django.request``
and ``django.server``, and ``config/gunicorn.py`` on gunicorn's access and error logs. It imports nothing
of Django, so gunicorn's master process can load it before the application.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
# The token's path segment, wherever a path appears: request lines, bare paths, full URLs.
_TOKEN = re.compile(r"(/webhooks/kommo/)[^/\s?#\"']+")


def mask_webhook_token(text: str) -> str:
    return _TOKEN.sub(rf"\g<1>{MASK}", text)


class MaskWebhookToken(logging.Filter):
    """Renders the record's message with the webhook token masked; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler, which reports it
            return True
        masked = mask_webhook_token(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
