"""Gate benchmark: ``python -m benchmarks.gates``.

Everything real on loopback: the Kommo sandbox (demo seed) sends its webhooks to the portal served by
gunicorn on a throwaway PostgreSQL; a Celery worker (2 processes) on a throwaway Redis processes them,
evaluates the gates and drains the outbound queue back to the sandbox. The account is connected as
``make run`` does it (stakeholder fields, webhook subscription, full sync, the default rules in enforce
mode); the portal keeps to the account's 7 requests per second with its shared Redis limiter (the
sandbox's own limiter is off, so that the benchmark's manager moves do not count against it). The deals
are created in the sandbox's "Legal review" with no lawyer, so every move to "Signing" is blocked.

1. Burst: 100 deals are moved to Signing in two batch PATCHes. Measured: the Kommo calls the gates make
   for them (the fresh re-reads, the move-back PATCHes, the task and note POSTs; counted in the sandbox's
   request log), target ≤ 6; the webhook processing's own re-fetches (``with=`` GETs) are reported beside
   them, with how many decisions used the mirror's copy of the deal instead of a re-read and how long it
   took from the first webhook of the burst to its last decision.
2. Latency: 100 other deals are moved one by one at 10 moves per second. Measured per deal: from the
   moment the portal received the webhook of the move (``WebhookEvent.received_at``) to the moment Kommo
   had accepted the move back (``OutboundChange.sent_at``, set when its answer came; the drain's claim time
   ``sending_at`` would leave out a wait for the rate limit after the claim); p50, p95 (target ≤ 1 s),
   max, the median of each step, and the portal's Kommo calls by kind meanwhile.

   Where a paced move's time goes, per deal (p50 and p95 of each step): waiting for a worker (received →
   its delivery claimed), webhook processing (→ the move recorded), the gates (→ decided), the outbound
   plan and the wait for a rate-limit slot (decided → the drain's claim of the move back), the PATCH (→
   accepted); the moves back per PATCH; and, with ``--trace``, the outbound plan's own decisions on the
   moves back (the worker logs each at DEBUG): how often it held them for company and why.

Options: ``--deals`` per scenario (default 100), ``--rate`` moves per second in scenario 2 (default 10),
``--trace`` (the worker's outbound plan logs its decisions, which are counted; ``benchmarks/gates_trace.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

from benchmarks.support import Portal, django_start


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _spread(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 3), "p95": round(_percentile(values, 0.95), 3)}


# The outbound plan's DEBUG line about the moves back (apps/kommo/services/outbound.py).
PLAN_LINE = re.compile(r"outbound plan: account \d+, (\d+) moves? back waiting.*?: (\w+)(?: \((.*?)\))?$")


class Bench:
    def __init__(self, *, database_url: str, broker_url: str, trace: bool = False) -> None:
        import requests

        from kommo_sandbox.server import SandboxServer
        from tests.kommo.sandbox_support import sandbox_admin
        from tests.support.services import CeleryWorker

        self.requests = requests
        self.sandbox = SandboxServer(host="127.0.0.1", port=0, seed="demo", webhooks=True).start()
        # The manager's own moves (the benchmark's) are not the integration's calls: the sandbox does not
        # rate-limit them; the portal keeps to its account's 7 req/s through its own shared limiter.
        sandbox_admin(self.sandbox, "PUT", "/_sandbox/rate-limit", {"enabled": False})
        self.portal = Portal(
            settings_module="config.settings.test", database_url=database_url, broker_url=broker_url
        )
        self.portal_url = self.portal.url
        self.worker = CeleryWorker(
            broker_url=broker_url,
            database_url=database_url,
            extra_env={"REDIS_URL": broker_url},
            include=["benchmarks.gates_trace"] if trace else [],
        ).start()

    def stop(self) -> None:
        self.worker.stop()
        self.portal.stop()
        self.sandbox.stop()

    # -- the sandbox -----------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = self.requests.request(
            method,
            self.sandbox.base_url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.sandbox.credentials['long_lived_token']}"},
            timeout=30,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def log_mark(self) -> int:
        return int(self.sandbox.app.request_log.last_seq)

    def calls_since(self, mark: int) -> list[dict[str, Any]]:
        from tests.kommo.sandbox_support import api_requests

        return api_requests(self.sandbox, mark)

    # -- set-up -------------------------------------------------------------------------------------------

    def connect(self) -> Any:
        from apps.flows.sync import mirror_follow
        from apps.gates.models import GateRule
        from apps.gates.services import gate_rules_install_defaults
        from apps.kommo.models import KommoAccount, Status
        from apps.kommo.services.sync import mirror_sync
        from apps.stakeholders.bootstrap import account_bootstrap

        account = KommoAccount.objects.create(
            name="Sandbox",
            base_url=self.sandbox.base_url,
            auth_kind=KommoAccount.AuthKind.LONG_LIVED,
            access_token=self.sandbox.credentials["long_lived_token"],
        )
        account_bootstrap(account=account, public_url=self.portal_url)
        mirror_sync(account=account, follow=mirror_follow)
        gate_rules_install_defaults(account=account, mode=GateRule.Mode.ENFORCE)
        legal = Status.objects.get(account=account, name="Legal review")
        signing = Status.objects.get(account=account, name="Signing")
        self.pipeline_id = legal.pipeline.kommo_id
        self.legal, self.signing = legal.kommo_id, signing.kommo_id
        return account

    def create_deals(self, count: int, prefix: str) -> list[int]:
        """Deals in Legal review with no stakeholder (so no lawyer has approved); the mirror learns of
        them from their ``add_lead`` webhooks."""
        from apps.kommo.models import Lead
        from tests.support.services import wait_for

        ids: list[int] = []
        for start in range(0, count, 50):
            body = [
                {"name": f"{prefix} {n}", "pipeline_id": self.pipeline_id, "status_id": self.legal}
                for n in range(start, min(count, start + 50))
            ]
            ids += [item["id"] for item in self.api("POST", "/api/v4/leads", body)["_embedded"]["leads"]]
        wait_for(
            lambda: Lead.objects.filter(kommo_id__in=ids, status_kommo_id=self.legal).count() == len(ids),
            timeout=120,
            message="the new deals in the mirror",
        )
        return ids

    def wait_moved_back(self, ids: list[int], timeout: float = 180) -> None:
        from apps.kommo.models import OutboundChange
        from tests.support.services import wait_for

        def done() -> bool:
            pending = OutboundChange.objects.filter(entity_kommo_id__in=ids).exclude(
                status__in=[OutboundChange.Status.SENT, OutboundChange.Status.SKIPPED]
            )
            moves = OutboundChange.objects.filter(
                entity_kommo_id__in=ids,
                kind=OutboundChange.Kind.LEAD_STATUS,
                status=OutboundChange.Status.SENT,
            )
            return not pending.exists() and moves.count() >= len(ids)

        wait_for(done, timeout=timeout, interval=0.2, message="every deal moved back, tasked and noted")
        time.sleep(2)  # let the echoes of the moves back be processed before counting

    def plan_decisions(self, scenario: str, log_from: int, upto: int | None = None) -> dict[str, int] | str:
        """The outbound plan's decisions on the moves back the worker logged from ``log_from`` (with
        ``--trace``), by decision and reason; ``GATES_BENCH_PLAN_LOG=FILE`` appends the lines to FILE,
        under the scenario's name."""
        lines = [
            line
            for line in self.worker.log()[log_from:upto].splitlines()
            if PLAN_LINE.search(line) is not None
        ]
        if os.environ.get("GATES_BENCH_PLAN_LOG"):
            with open(os.environ["GATES_BENCH_PLAN_LOG"], "a") as out:
                out.writelines([f"# {scenario}\n", *(line + "\n" for line in lines)])
        plans: Counter[str] = Counter()
        for line in lines:
            found = PLAN_LINE.search(line)
            assert found is not None
            plans[found.group(2) + (f" ({found.group(3)})" if found.group(3) else "")] += 1
        return dict(plans) if plans else "run with --trace"

    # -- scenarios ----------------------------------------------------------------------------------------

    def burst(self, ids: list[int]) -> dict[str, Any]:
        from django.utils import timezone

        from apps.gates.models import GateDecision
        from apps.kommo.models import OutboundChange, WebhookEvent

        mark = self.log_mark()
        log_from = len(self.worker.log())
        self.burst_started = timezone.now()
        started = time.monotonic()
        for start in range(0, len(ids), 50):
            chunk = ids[start : start + 50]
            self.api(
                "PATCH", "/api/v4/leads", [{"id": lead_id, "status_id": self.signing} for lead_id in chunk]
            )
        self.wait_moved_back(ids)
        elapsed = time.monotonic() - started
        calls = self.calls_since(mark)
        mine = [c for c in calls if c["method"] in ("PATCH", "POST") or "with=" not in c["query"]]
        mine = [
            c for c in mine if not (c["method"] == "PATCH" and c["seq"] <= mark + math.ceil(len(ids) / 50))
        ]
        gate: dict[str, Any] = {
            "fresh_reads": sum(
                1
                for c in mine
                if c["method"] == "GET" and c["path"] == "/api/v4/leads" and "filter" in c["query"]
            ),
            "lead_patches": sum(1 for c in mine if c["method"] == "PATCH" and c["path"] == "/api/v4/leads"),
            "task_posts": sum(1 for c in mine if c["method"] == "POST" and c["path"] == "/api/v4/tasks"),
            "note_posts": sum(
                1 for c in mine if c["method"] == "POST" and c["path"] == "/api/v4/leads/notes"
            ),
            "other": sorted(
                {
                    f"{c['method']} {c['path']}"
                    for c in mine
                    if c["method"] == "GET" and "filter" not in c["query"]
                }
            ),
        }
        total = gate["fresh_reads"] + gate["lead_patches"] + gate["task_posts"] + gate["note_posts"]
        intake = [c for c in calls if c["method"] == "GET" and "with=" in c["query"]]
        decisions = GateDecision.objects.filter(lead__kommo_id__in=ids)
        on_mirror = sum(
            1 for state in decisions.values_list("fresh_state", flat=True) if state.get("read") == "mirror"
        )
        first_received = WebhookEvent.objects.order_by("received_at").values_list("received_at", flat=True)
        first = first_received.filter(received_at__gte=self.burst_started).first()
        last_decided = decisions.order_by("-decided_at").values_list("decided_at", flat=True).first()
        return {
            "deals": len(ids),
            "manager_patches": math.ceil(len(ids) / 50),
            "gate_calls": {**gate, "total": total},
            "decided_on_the_mirrors_fresh_copy": on_mirror,
            "decisions_spread_s": round((last_decided - first).total_seconds(), 2)
            if first and last_decided
            else None,
            "webhook_processing_refetches": len(intake),
            "moves_back_per_patch": sorted(
                Counter(
                    OutboundChange.objects.filter(
                        entity_kommo_id__in=ids, kind=OutboundChange.Kind.LEAD_STATUS
                    ).values_list("sending_at", flat=True)
                ).values()
            ),
            "plan_decisions_on_moves_back": self.plan_decisions("burst", log_from),
            "all_kommo_calls_after_the_move": len(calls) - math.ceil(len(ids) / 50),
            "seconds_until_all_moved_back": round(elapsed, 2),
            "target_gate_calls_max": 6,
            "meets_target": total <= 6,
        }

    def latency(self, ids: list[int], rate: float) -> dict[str, Any]:
        from apps.gates.models import GateDecision
        from apps.kommo.models import OutboundChange, StageChange, WebhookEvent

        mark = self.log_mark()
        log_from = len(self.worker.log())
        since = time.time()
        for index, lead_id in enumerate(ids):
            due = since + index / rate
            time.sleep(max(0.0, due - time.time()))
            self.api("PATCH", f"/api/v4/leads/{lead_id}", {"status_id": self.signing})
        self.wait_moved_back(ids)
        # the portal's calls while the moves came in and went back (the benchmark's own moves left out)
        portal_calls = Counter(
            "refetch" if "with=" in call["query"] else f"{call['method']} {call['path']}"
            for call in self.calls_since(mark)
            if not (call["method"] == "PATCH" and call["path"].startswith("/api/v4/leads/"))
        )
        calls_window = time.time() - since
        log_upto = len(self.worker.log())
        events = list(
            WebhookEvent.objects.order_by("received_at").values_list("received_at", "claimed_at", "body")
        )
        latencies: list[float] = []
        parts: dict[str, list[float]] = {"to_stage_change": [], "to_decision": [], "to_move_sent": []}
        steps: dict[str, list[float]] = {
            "waiting_for_a_worker": [],
            "webhook_processing": [],
            "gates": [],
            "plan_and_slot": [],
            "patch": [],
        }
        patches: Counter[Any] = Counter()
        for lead_id in ids:
            needle = quote("leads[status][0][id]", safe="").encode() + b"=" + str(lead_id).encode()
            received, claimed = next(
                ((at, claimed) for at, claimed, body in events if needle in bytes(body)), (None, None)
            )
            move = (
                OutboundChange.objects.filter(entity_kommo_id=lead_id, kind=OutboundChange.Kind.LEAD_STATUS)
                .exclude(sent_at=None)
                .order_by("sent_at")
                .values_list("sending_at", "sent_at")
                .first()
            )
            sending, sent = move if move is not None else (None, None)
            if sending is not None:
                patches[sending] += 1
            if received is not None and sent is not None:
                latencies.append((sent - received).total_seconds())
                recorded = (
                    StageChange.objects.filter(lead__kommo_id=lead_id, to_status_kommo_id=self.signing)
                    .values_list("created", flat=True)
                    .first()
                )
                decided = (
                    GateDecision.objects.filter(lead__kommo_id=lead_id)
                    .values_list("decided_at", flat=True)
                    .first()
                )
                if recorded is not None and decided is not None:
                    parts["to_stage_change"].append((recorded - received).total_seconds())
                    parts["to_decision"].append((decided - recorded).total_seconds())
                    parts["to_move_sent"].append((sent - decided).total_seconds())
                    if claimed is not None and sending is not None:
                        steps["waiting_for_a_worker"].append((claimed - received).total_seconds())
                        steps["webhook_processing"].append((recorded - claimed).total_seconds())
                        steps["gates"].append((decided - recorded).total_seconds())
                        steps["plan_and_slot"].append((sending - decided).total_seconds())
                        steps["patch"].append((sent - sending).total_seconds())
        plans = self.plan_decisions("paced", log_from, log_upto)
        return {
            "deals": len(ids),
            "moves_per_second": rate,
            "measured": len(latencies),
            "p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(_percentile(latencies, 0.95), 3),
            "max_s": round(max(latencies), 3),
            "p50_s_by_step": {
                "webhook_received_to_stage_change_recorded": round(
                    statistics.median(parts["to_stage_change"]), 3
                ),
                "stage_change_to_decision": round(statistics.median(parts["to_decision"]), 3),
                "decision_to_move_back_sent": round(statistics.median(parts["to_move_sent"]), 3),
            },
            "steps_s": {name: _spread(values) for name, values in steps.items() if values},
            "moves_back_per_patch": sorted(Counter(patches.values()).items()),
            "plan_decisions_on_moves_back": plans,
            "portal_kommo_calls": dict(portal_calls),
            "portal_kommo_calls_per_second": round(sum(portal_calls.values()) / calls_window, 2),
            "target_p95_s_max": 1.0,
            "meets_target": _percentile(latencies, 0.95) <= 1.0,
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deals", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--trace", action="store_true", help="count the outbound plan's decisions")
    options = parser.parse_args()
    from tests.support.services import PostgresServer, RedisServer

    postgres, redis_server = PostgresServer().start(), RedisServer().start()
    bench: Bench | None = None
    try:
        django_start(
            "config.settings.test",
            DATABASE_URL=postgres.url,
            CELERY_BROKER_URL=redis_server.url,
            REDIS_URL=redis_server.url,  # the portal's shared rate limiter, in this process too
        )
        bench = Bench(database_url=postgres.url, broker_url=redis_server.url, trace=options.trace)
        bench.connect()
        burst_ids = bench.create_deals(options.deals, "Burst deal")
        latency_ids = bench.create_deals(options.deals, "Paced deal")
        results = {
            "burst_of_blocked_moves": bench.burst(burst_ids),
            "latency_at_rate": bench.latency(latency_ids, options.rate),
        }
    finally:
        if bench is not None:
            bench.stop()
        redis_server.stop()
        postgres.stop()
    print(json.dumps({"gates": results}, indent=2))


if __name__ == "__main__":
    main()
