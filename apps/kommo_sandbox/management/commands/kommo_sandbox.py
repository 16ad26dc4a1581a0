"""``manage.py kommo_sandbox``: serve the Kommo sandbox in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.kommo_sandbox.server import SandboxServer


class Command(BaseCommand):
    help = "Run the Kommo sandbox (a Kommo API v4 emulator) on its own port."

    def add_arguments(self, parser: CommandParser) -> None:
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

    def handle(self, *args: Any, **options: Any) -> None:
        credentials: dict[str, Any] = {}
        path: Path | None = options["credentials_file"]
        if path is not None and path.exists():
            try:
                credentials = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as error:
                raise CommandError(f"{path} is not valid JSON: {error}") from None
        if options["redirect_uri"]:
            credentials["redirect_uri"] = options["redirect_uri"]
        if options["subdomain"]:
            credentials["subdomain"] = options["subdomain"]
        try:
            server = SandboxServer(
                host=options["host"],
                port=options["port"],
                seed=options["seed"],
                credentials=credentials,
                state_file=options["state_file"],
                webhooks=not options["no_webhooks"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        server.start()
        if path is not None:
            server.write_credentials(path)
        self.stdout.write(f"Kommo sandbox on {server.base_url} (account {server.credentials['subdomain']})")
        self.stdout.write(f"Board: {server.base_url}/board")
        if path is not None:
            self.stdout.write(f"Credentials written to {path}")
        else:
            self.stdout.write(json.dumps(server.credentials, indent=2))
        stop.wait()
        self.stdout.write("Stopping the Kommo sandbox")
        server.stop()
