"""``python manage.py kommo_sync [--account ID] [--full | --since ISO] [--resource NAME] [--history DAYS]``:
sync the mirror.

Without ``--account`` every connected account is synced. A progress bar per resource shows the count,
the rate and, when Kommo says it, the total; on a pipe or a file it prints plain lines instead. An
interrupted run (Ctrl-C, an error) continues where it stopped the next time.

An account's first sync also reads back ``KOMMO_HISTORY_DAYS`` of stage moves from Kommo's events (the
history backfill, after the deals); ``--history DAYS`` reads back DAYS again (it adds only what is
missing), ``--history`` alone the default span. Its bar counts days.

The command runs the data paths' sync: each page's writes are followed by the stakeholders and the gates
(``apps.flows.sync``), as the beat's sync is.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any, Protocol

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from apps.flows.sync import field_changes_follow, mirror_follow, touches_follow
from apps.kommo.exceptions import KommoError
from apps.kommo.models import KommoAccount
from apps.kommo.services.mirror import BatchResult
from apps.kommo.services.sync import (
    RESOURCES,
    HistoryResult,
    events_reconcile,
    history_backfill,
    history_needed,
    mirror_sync,
)

BAR_WIDTH = 28
# Resources whose bar counts days rather than rows.
DAY_BARS = ("history",)


class _Writer(Protocol):
    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


class TerminalProgress:
    """One line per resource: redrawn in place on a terminal, printed every ``every`` items elsewhere."""

    def __init__(self, out: _Writer, *, tty: bool, every: int = 1000) -> None:
        self.out, self.tty, self.every = out, tty, every
        self.done: dict[str, int] = {}
        self.total: dict[str, int | None] = {}
        self.started: dict[str, float] = {}
        self.printed: dict[str, int] = {}

    def start(self, resource: str, total: int | None) -> None:
        self.done[resource], self.total[resource] = 0, total
        self.started[resource], self.printed[resource] = time.monotonic(), 0

    def advance(self, resource: str, count: int) -> None:
        self.done[resource] += count
        if self.tty:
            self.out.write("\r" + self._line(resource))
            self.out.flush()
        elif self.done[resource] - self.printed[resource] >= self.every:
            self.printed[resource] = self.done[resource]
            self.out.write(self._line(resource) + "\n")

    def finish(self, resource: str, result: BatchResult | HistoryResult) -> None:
        if isinstance(result, HistoryResult):
            line = self._line(resource) + " — " + result.summary()
            self.out.write(("\r" if self.tty else "") + line + "\n")
            return
        summary = (
            f" — {result.created:,} created, {result.updated:,} updated, {result.unchanged:,} unchanged"
            + (f", {result.stale:,} stale" if result.stale else "")
            + (f", {len(result.new_stage_changes):,} stage moves" if result.new_stage_changes else "")
        )
        self.out.write(("\r" if self.tty else "") + self._line(resource) + summary + "\n")

    def _line(self, resource: str) -> str:
        done, total = self.done[resource], self.total[resource]
        elapsed = max(time.monotonic() - self.started[resource], 1e-6)
        rate = f"{done / elapsed:,.0f}/s"
        if resource in DAY_BARS:
            rate = "days"
        if total:
            filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            return f"{resource:<14} [{bar}] {done:,}/{total:,} {rate}"
        return f"{resource:<14} {done:,} {rate}"


class Command(BaseCommand):
    help = "Sync the local mirror from Kommo (full, or incremental by updated_at) and reconcile events."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", type=int, help="KommoAccount id (default: every connected account)")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--full", action="store_true", help="read everything again")
        mode.add_argument("--since", help="ISO datetime: deals, contacts, companies changed since then")
        parser.add_argument(
            "--resource",
            action="append",
            choices=[*RESOURCES, "events"],
            help="only this resource (repeatable); 'events' runs the events reconciliation",
        )
        parser.add_argument(
            "--history",
            type=int,
            nargs="?",
            const=-1,
            metavar="DAYS",
            help="read back DAYS of stage moves from Kommo's events (default: KOMMO_HISTORY_DAYS); "
            "without it, only an account's first sync does",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since = self._since(options["since"])
        history: int | None = options["history"]
        if history is not None and history != -1 and history <= 0:
            raise CommandError("--history: give a number of days above 0")
        accounts = KommoAccount.objects.all().order_by("pk")
        if options["account"] is not None:
            accounts = accounts.filter(pk=options["account"])
            if not accounts.exists():
                raise CommandError(f"no Kommo account with id {options['account']}")
        chosen: list[str] = options["resource"] or [*RESOURCES, "events"]
        resources = [name for name in chosen if name != "events"]
        tty = sys.stdout.isatty()
        # On a terminal the bar is redrawn in place: write to it directly (the command's wrapper would
        # end every write with a newline).
        progress = TerminalProgress(sys.stdout if tty else self.stdout, tty=tty)
        for account in accounts:
            if not account.is_connected:
                self.stderr.write(f"{account}: not connected, skipped")
                continue
            self.stdout.write(f"{account} ({account.base_url})")
            try:
                if resources:
                    mirror_sync(
                        account=account,
                        resources=resources,
                        full=options["full"],
                        since=since,
                        progress=progress,
                        follow=mirror_follow,
                    )
                if history is not None or ("leads" in resources and history_needed(account)):
                    history_backfill(
                        account=account,
                        days=history if history and history > 0 else None,
                        progress=progress,
                        field_changes_follow=field_changes_follow,
                    )
                if "events" in chosen:
                    events_reconcile(
                        account=account,
                        progress=progress,
                        follow=mirror_follow,
                        touches_follow=touches_follow,
                    )
            except KommoError as error:
                raise CommandError(f"{account}: {error} — run the command again to continue") from error

    def _since(self, value: str | None) -> dt.datetime | None:
        if value is None:
            return None
        try:
            moment = parse_datetime(value)  # a bare date reads as its midnight
        except ValueError:  # well formed but no such day, e.g. 2024-02-30T00:00
            moment = None
        if moment is None:
            raise CommandError(f"--since: not an ISO date or datetime: {value!r}")
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
