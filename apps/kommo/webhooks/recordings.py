"""Recorded webhook deliveries, read back into the exact bytes and headers Kommo sent.

Three forms are read: a raw body (``*.form.txt``, posted byte for byte), a delivery captured as a curl
command (``*.curl.txt``: its ``--header`` lines and ``--data-urlencode`` pairs), and a documentation
rendering (``*.json``: the decoded body, form-encoded here with the target account's block added).
"""

from __future__ import annotations

import itertools
import json
import shlex
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

from apps.kommo.webhooks.parser import FORM, encode_form

USER_AGENT = "amoCRM-Webhooks/3.0"
# Set by the HTTP client for the new request, never replayed.
_HOP_HEADERS = frozenset({"content-length", "host", "connection", "transfer-encoding"})
_DATA_OPTIONS = {"--data-urlencode", "--data", "--data-raw", "--data-binary", "-d"}


@dataclass(frozen=True)
class Recording:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", FORM)


def kommo_headers() -> dict[str, str]:
    """The headers of a Kommo delivery (API.md §12.2), with a new request id."""
    return {
        "content-type": FORM,
        "user-agent": USER_AGENT,
        "x-amocrm-requestid": str(uuid.uuid4()),
        "accept-encoding": "gzip",
    }


def _php_urlencode(text: str) -> str:
    return quote_plus(text, safe="").replace("~", "%7E")


def _curl_data(option: str, value: str) -> str:
    """One ``-d``-style argument as Kommo sent it. ``--data-urlencode name=content`` carries the name
    already encoded and the content decoded; the content is encoded back the way Kommo encodes (PHP's
    ``urlencode``, ``+`` for a space), which gives the captured ``content-length`` exactly."""
    if option != "--data-urlencode":
        return value
    name, separator, content = value.partition("=")
    if not separator:
        return _php_urlencode(value)
    return f"{name}={_php_urlencode(content)}"


def recording_from_curl(text: str) -> Recording:
    args = shlex.split(text.replace("\\\n", " "))
    headers = kommo_headers()
    data: list[str] = []
    for option, value in itertools.pairwise(args):
        if option in ("--header", "-H"):
            name, _, content = value.partition(":")
            if name.strip().lower() not in _HOP_HEADERS:
                headers[name.strip().lower()] = content.strip()
        elif option in _DATA_OPTIONS:
            data.append(_curl_data(option, value))
    return Recording(body="&".join(data).encode(), headers=headers)


def recording_from_rendering(text: str, account: dict[str, str] | None) -> Recording:
    """A decoded JSON rendering as the form body Kommo would send; ``account`` (``subdomain``, ``id``,
    ``self``) becomes the ``account[...]`` block in front when the rendering has none."""
    tree = json.loads(text)
    if account is not None and "account" not in tree:
        block = {"subdomain": account["subdomain"], "id": account["id"], "_links": {"self": account["self"]}}
        tree = {"account": block, **tree}
    return Recording(body=encode_form(tree), headers=kommo_headers())


def recording_load(path: Path, *, account: dict[str, str] | None = None) -> Recording:
    """The delivery recorded in ``path`` (see the module notes for the forms)."""
    if path.name.endswith(".curl.txt"):
        return recording_from_curl(path.read_text(encoding="utf-8"))
    if path.suffix == ".json":
        return recording_from_rendering(path.read_text(encoding="utf-8"), account)
    return Recording(body=path.read_bytes(), headers=kommo_headers())
