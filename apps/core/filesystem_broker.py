"""kombu's file-system transport, for the zero-setup mode of ``make run`` (no Redis), made safe to read
while it is written.

kombu's own ``_put`` creates the message file under its final name and then writes it, and ``_get`` takes
any file with that name: a worker polling every 100 ms now and then takes a file the web process or beat
has created but not yet filled, reads ``b""`` and dies on the JSON error (kombu issue #1551), and the
message is lost. Here a message is written under a name the reader skips and renamed into place once
complete (``os.replace`` is atomic within a directory); a file that is not a message all the same (a
crash mid-write by an older writer, a full disk) is logged and skipped instead of stopping the worker."""

from __future__ import annotations

import logging
import os
import uuid
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

logger = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    # kombu's two base classes name the second argument differently; it is passed by position.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        # A leading dot: the reader matches on what follows the name's first dot, "<queue>.msg".
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        try:
            return super()._get(queue)
        except ValueError:  # json.JSONDecodeError: an empty or cut file, already taken off the queue
            logger.error("broker: a message file of queue %r was not a complete message; skipped", queue)
            raise Empty() from None


class Transport(filesystem.Transport):
    Channel = Channel
