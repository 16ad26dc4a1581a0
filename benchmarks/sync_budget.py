"""Sync API budget: ``python -m benchmarks.sync_budget [--seed demo --seed large:10000]``.

For each seed, a Kommo sandbox with its rate limit ON (7 requests per second, as Kommo), on a fresh
SQLite database (one for the run, an account per seed): one full ``mirror_sync`` of every resource,
then one incremental run. Reported: the calls the sandbox's request log saw, the minimum a full sync
can make (every list in pages of 250, custom fields in pages of 50), their ratio (budget: 1.05), the
wall time, and the least time the rate limit allows for the minimum (calls / 7 s).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 1.05
WIDTHS = (7, 7, 6, 7, 8, 7, 11)


def _setup_django(database: Path) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def measure(seed: str) -> dict[str, object]:
    from apps.flows.sync import mirror_follow
    from apps.kommo.services.sync import mirror_sync
    from kommo_sandbox.server import SandboxServer
    from tests.kommo.sandbox_support import account_for, api_requests, minimum_full_sync_calls

    server = SandboxServer(host="127.0.0.1", port=0, seed=seed, webhooks=False).start()
    try:
        account = account_for(server, rate_limit_per_second=7.0)
        mark = server.app.request_log.last_seq
        started = time.monotonic()
        results = mirror_sync(account=account, full=True, follow=mirror_follow)
        full_seconds = time.monotonic() - started
        full_calls = len(api_requests(server, mark))
        mark = server.app.request_log.last_seq
        started = time.monotonic()
        mirror_sync(account=account, follow=mirror_follow)
        incremental_seconds = time.monotonic() - started
        incremental_calls = len(api_requests(server, mark))
        minimum = minimum_full_sync_calls(server)
        return {
            "seed": seed,
            "deals": results["leads"].created,
            "calls": full_calls,
            "minimum": minimum,
            "ratio": full_calls / minimum,
            "seconds": full_seconds,
            "minimum_seconds": minimum / 7.0,
            "incremental_calls": incremental_calls,
            "incremental_seconds": incremental_seconds,
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seed", action="append", help="sandbox seed (repeatable); default demo, large:10000"
    )
    args = parser.parse_args(argv)
    seeds = args.seed or ["demo", "large:10000"]
    worst = 0.0
    header = ("seed", "deals", "calls", "min", "ratio", "time s", "min s", "incr calls")
    print(
        f"{header[0]:<13}"
        + "".join(f"{name:>{width}}" for name, width in zip(header[1:], WIDTHS, strict=True))
    )
    folder = tempfile.TemporaryDirectory(prefix="sync-bench-")
    _setup_django(Path(folder.name) / "db.sqlite3")
    for seed in seeds:
        row = measure(seed)
        worst = max(worst, float(row["ratio"]))  # type: ignore[arg-type]
        print(
            f"{row['seed']:<13}{row['deals']:>7}{row['calls']:>7}{row['minimum']:>6}{row['ratio']:>7.3f}"
            f"{row['seconds']:>8.1f}{row['minimum_seconds']:>7.1f}{row['incremental_calls']:>11}"
        )
    folder.cleanup()
    print(f"budget {BUDGET}: {'met' if worst <= BUDGET else 'EXCEEDED'} (worst ratio {worst:.3f})")
    return 0 if worst <= BUDGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
