"""Escalation budget: ``python -m benchmarks.escalations [--deals 500] [--runs 3]``.

For each run, a Kommo sandbox (demo seed) with its rate limit ON (7 requests per second, as Kommo) and a
fresh account on one SQLite database: deals are added to the sandbox's "Legal review" until it holds
``--deals`` (not counted), the mirror is synced, the stage gets a limit of 10 days and a second of 20, the
account a head of sales. Then the beat's work for one account runs 30 days later, when every deal is past
both limits at once: ``escalations_enforce``, then the outbound flushes it plans (as ``check_account`` and
``outbound_flush`` do). Reported: the escalations written, the task calls the sandbox saw
(``POST /api/v4/tasks``) against the budget 2 x ceil(deals / 50), every other call, the wall time; then a
second beat, which must write nothing and call nothing. Per run, and the spread (min / median / max).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_django(database: Path) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def measure(deals: int) -> dict[str, float]:
    from django.utils import timezone

    from apps.escalations.models import Escalation, HeadOfSales, StageLimit
    from apps.escalations.services import escalations_enforce
    from apps.flows.sync import mirror_follow
    from apps.kommo.models import KommoUser, Lead, Status
    from apps.kommo.services.outbound import outbound_changes_flush
    from apps.kommo.services.sync import mirror_sync
    from kommo_sandbox.server import SandboxServer
    from tests.kommo.sandbox_support import account_for, api_requests, sandbox_admin, sandbox_api

    server = SandboxServer(host="127.0.0.1", port=0, seed="demo", webhooks=False).start()
    try:
        sandbox_admin(server, "PUT", "/_sandbox/rate-limit", {"enabled": False})
        pipelines = sandbox_api(server, "GET", "/api/v4/leads/pipelines")["_embedded"]["pipelines"]
        pipeline = next(p for p in pipelines if "b2b" in p["name"].lower())
        legal = next(s for s in pipeline["_embedded"]["statuses"] if s["name"] == "Legal review")
        store = server.store.account(server.store.default_account_id or 0)
        seeded = sum(
            1 for lead in store.leads.values() if not lead.is_deleted and lead.status_id == legal["id"]
        )
        for start in range(0, deals - seeded, 250):  # the seed's deals in Legal review count among them
            batch = [
                {"name": f"Stalled deal {n:04d}", "pipeline_id": pipeline["id"], "status_id": legal["id"]}
                for n in range(start, min(deals - seeded, start + 250))
            ]
            sandbox_api(server, "POST", "/api/v4/leads", batch)
        sandbox_admin(server, "PUT", "/_sandbox/rate-limit", {"enabled": True})

        account = account_for(server, rate_limit_per_second=7.0)
        mirror_sync(account=account, full=True, follow=mirror_follow)
        stage = Status.objects.get(account=account, pipeline__kommo_id=pipeline["id"], kommo_id=legal["id"])
        StageLimit.objects.create(status=stage, limit_days=Decimal("10"), second_limit_days=Decimal("20"))
        head = KommoUser.objects.filter(account=account).order_by("kommo_id").first()
        assert head is not None
        HeadOfSales.objects.create(account=account, kommo_user=head)
        in_stage = Lead.objects.filter(account=account, status=stage, is_deleted=False).count()

        later = timezone.now() + dt.timedelta(days=30)
        mark = server.app.request_log.last_seq
        started = time.monotonic()
        run = escalations_enforce(account_id=account.pk, now=later)
        next_in = run.flush_in
        while next_in is not None:  # the flushes the plan schedules (outbound_flush), run here in turn
            time.sleep(next_in)
            next_in = outbound_changes_flush(account_id=account.pk).next_in
        seconds = time.monotonic() - started
        calls = api_requests(server, mark)
        task_posts = [c for c in calls if c["method"] == "POST" and c["path"] == "/api/v4/tasks"]
        mark = server.app.request_log.last_seq
        again = escalations_enforce(account_id=account.pk, now=later)
        return {
            "deals": in_stage,
            "escalations": Escalation.objects.filter(account=account).count(),
            "task_calls": len(task_posts),
            "other_calls": len(calls) - len(task_posts),
            "seconds": seconds,
            "second_beat_escalations": again.check.escalated,
            "second_beat_calls": len(api_requests(server, mark)),
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    budget = 2 * math.ceil(args.deals / 50)
    folder = tempfile.TemporaryDirectory(prefix="escalation-bench-")
    _setup_django(Path(folder.name) / "db.sqlite3")
    print(f"{'run':>3}{'deals':>7}{'escal.':>8}{'task calls':>12}{'other':>7}{'time s':>8}{'2nd beat':>10}")
    rows = []
    for number in range(1, args.runs + 1):
        row = measure(args.deals)
        rows.append(row)
        print(
            f"{number:>3}{row['deals']:>7}{row['escalations']:>8}{row['task_calls']:>12}{row['other_calls']:>7}"
            f"{row['seconds']:>8.2f}{row['second_beat_escalations']:>5} / {row['second_beat_calls']} calls"
        )
    folder.cleanup()
    times = sorted(row["seconds"] for row in rows)
    calls = sorted(row["task_calls"] for row in rows)
    print(
        f"spread over {len(rows)} runs: task calls {calls[0]:.0f} / {statistics.median(calls):.0f} / "
        f"{calls[-1]:.0f}, time {times[0]:.2f} / {statistics.median(times):.2f} / {times[-1]:.2f} s "
        "(min / median / max)"
    )
    worst = calls[-1]
    quiet = all(row["second_beat_escalations"] == 0 and row["second_beat_calls"] == 0 for row in rows)
    met = worst <= budget and quiet
    print(
        f"budget {budget} task calls for {args.deals} deals past their limits: "
        f"{'met' if met else 'EXCEEDED'} "
        f"(worst {worst:.0f}); a second beat: {'nothing' if quiet else 'WROTE OR CALLED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
