"""The sandbox's command line, shared by ``python -m kommo_sandbox`` and ``manage.py kommo_sandbox``: serve
the Kommo sandbox in the foreground until Ctrl-C or SIGTERM. Plain ``argparse``: it needs no Django."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

from kommo_sandbox.server import SandboxServer


class Output(Protocol):
    def write(self, text: str, /) -> object: ...
    def flush(self) -> object: ...


class UsageError(Exception):
    """A bad option or credentials file: printed as one line, exit code 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", default="demo", help="empty, demo or large:N")
    parser.add_argument(
        "--credentials-file",
        type=Path,
        help="JSON file with the credentials: secrets in it are reused, then the file is rewritten",
    )
    parser.add_argument("--state-file", type=Path, help="keep the data in this JSON file across restarts")
    parser.add_argument("--redirect-uri", help="the OAuth redirect URI of the portal's integration")
    parser.add_argument("--subdomain", help="the account's subdomain (default: sandbox)")
    parser.add_argument("--no-webhooks", action="store_true", help="do not deliver webhooks")


def build_server(options: dict[str, Any]) -> SandboxServer:
    """The server the options describe, not started yet. Raises :class:`UsageError`."""
    credentials: dict[str, Any] = {}
    path: Path | None = options["credentials_file"]
    if path is not None and path.exists():
        try:
            credentials = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise UsageError(f"{path} is not valid JSON: {error}") from None
    if options["redirect_uri"]:
        credentials["redirect_uri"] = options["redirect_uri"]
    if options["subdomain"]:
        credentials["subdomain"] = options["subdomain"]
    try:
        return SandboxServer(
            host=options["host"],
            port=options["port"],
            seed=options["seed"],
            credentials=credentials,
            state_file=options["state_file"],
            webhooks=not options["no_webhooks"],
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


def serve(options: dict[str, Any], out: Output) -> None:
    """Start the server, write its credentials, wait for SIGINT or SIGTERM, stop it."""
    server = build_server(options)
    path: Path | None = options["credentials_file"]
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    if path is not None:
        server.write_credentials(path)
    out.write(f"Kommo sandbox on {server.base_url} (account {server.credentials['subdomain']})\n")
    out.write(f"Board: {server.base_url}/board\n")
    if path is not None:
        out.write(f"Credentials written to {path}\n")
    else:
        out.write(json.dumps(server.credentials, indent=2) + "\n")
    out.flush()
    stop.wait()
    out.write("Stopping the Kommo sandbox\n")
    out.flush()
    server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kommo_sandbox", description="Run the Kommo sandbox (a Kommo API v4 emulator)."
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        serve(options, sys.stdout)
    except UsageError as error:
        parser.error(str(error))  # exits with code 2
    return 0
