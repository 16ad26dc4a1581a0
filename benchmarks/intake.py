"""Intake benchmark: ``python -m benchmarks.intake``.

1. Acknowledgement: gunicorn (the production configuration, one worker per core) on a throwaway
   PostgreSQL, tasks published to a throwaway Redis; wrk posts a distinct valid submission per request to
   ``POST /api/v1/intake/leads`` and, as the baseline measured in the same run, the same bodies to a bare
   view with the same key check.
   Reported: accepted submissions per second, p99 of the 202, and the ratio to the baseline.
2. Kommo calls per submission: submissions processed against the Kommo sandbox (rate limit off), calls
   counted with the sandbox's request log, by kind, against the target (one search per identity unknown
   locally, one complex call, one link call); a new person besides the main one adds one
   ``POST /contacts`` (the complex call takes one contact), and the first submission of an account finds
   or creates the deals' "Intake submission" field.

Options: ``--seconds`` per load run, ``--connections``, ``--submissions`` for part 2.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections import Counter
from typing import Any

from benchmarks.support import Portal, compare, django_start

WRK_SCRIPT = r"""
local counter = 0
local threads = {}

-- thread_id is a global of each thread's Lua state, set here
function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

-- each wrk run (the benchmark makes several) draws other numbers, so that no body repeats an earlier one
function init(args)
  math.randomseed(os.time() * 100 + thread_id)
end

function request()
  counter = counter + 1
  local n = thread_id .. "-" .. counter .. "-" .. math.random(1, 1000000000)
  local body = '{"deal": {"name": "Bench deal ' .. n .. '", "price": 1000},'
    .. ' "company": {"name": "Bench company ' .. n .. '"},'
    .. ' "contacts": [{"name": "Buyer ' .. n .. '", "emails": ["buyer' .. n .. '@bench.example"],'
    .. ' "phones": ["+1 415 555 0100"], "role": "decision_maker"},'
    .. ' {"name": "Lawyer ' .. n .. '", "emails": ["lawyer' .. n .. '@bench.example"], "role": "lawyer"}]}'
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer __KEY__"}
  return wrk.format("POST", nil, headers, body)
end
"""


def acknowledgement(*, database_url: str, broker_url: str, seconds: int, connections: int) -> dict[str, Any]:
    from apps.intake.models import IntakeSource, IntakeSubmission
    from apps.intake.services import intake_source_key_generate
    from apps.kommo.models import KommoAccount

    account = KommoAccount.objects.create(name="Bench", base_url="https://bench.kommo.com")
    key = intake_source_key_generate(source=IntakeSource(account=account, name="Bench"))
    script = WRK_SCRIPT.replace("__KEY__", key)
    portal = Portal(
        settings_module="benchmarks.intake_settings", database_url=database_url, broker_url=broker_url
    )
    baseline_url, intake_url = f"{portal.url}/bench/baseline", f"{portal.url}/api/v1/intake/leads"
    try:
        baseline, intake = compare(
            baseline_url,
            intake_url,
            script,
            seconds=seconds,
            connections=connections,
            after_warm_up=IntakeSubmission.objects.all().delete,
        )
        stored = IntakeSubmission.objects.count()
    finally:
        portal.stop()
    return {
        "baseline": baseline,
        "intake": intake,
        "stored_submissions": stored,
        "throughput_ratio": intake["per_second"] / baseline["per_second"],
        "gunicorn": portal.configuration(),
        "connections": connections,
        "seconds": seconds,
    }


def kommo_calls(*, submissions: int) -> dict[str, Any]:
    """Submissions processed in this process against the sandbox; half bring back a known buyer."""
    from apps.flows.intake import intake_submission_process
    from apps.intake.models import IntakeSource, IntakeSubmission
    from apps.intake.serializers import IntakeLeadSerializer
    from apps.intake.services import intake_submission_create
    from tests.kommo.sandbox_support import account_for, api_requests, sandbox_start

    server = sandbox_start("demo")
    try:
        account = account_for(server)
        source = IntakeSource.objects.create(
            account=account, name="Bench calls", key_prefix="bench", key_hash="-"
        )
        since = server.app.request_log.last_seq
        unknown = 0
        ids = []
        for number in range(submissions):
            # Every other submission brings back the buyer of the previous one: known locally by then.
            buyer = number - 1 if number % 2 else number
            body = {
                "deal": {"name": f"Calls deal {number}"},
                "company": {"name": f"Calls company {number}"},
                "contacts": [
                    {
                        "name": f"Buyer {buyer}",
                        "emails": [f"buyer{buyer}@calls.example"],
                        "phones": [f"+1415555{buyer:04d}"],
                    },
                    {
                        "name": f"Lawyer {number}",
                        "emails": [f"lawyer{number}@calls.example"],
                        "role": "lawyer",
                    },
                ],
            }
            serializer = IntakeLeadSerializer(data=body, context={"source": source})
            serializer.is_valid(raise_exception=True)
            submission, _ = intake_submission_create(
                source=source,
                raw_body=json.dumps(body),
                payload=body,
                normalized=serializer.validated_data,
                idempotency_key=None,
            )
            unknown += 1 + (0 if number % 2 else 2)  # the lawyer's e-mail; a new buyer's e-mail and phone
            ids.append(submission.pk)
            intake_submission_process(submission_id=submission.pk)
        done = IntakeSubmission.objects.filter(pk__in=ids, status="done").count()
        calls: Counter[str] = Counter()
        for entry in api_requests(server, since):
            path = re.sub(r"/\d+", "/{id}", entry["path"])
            kind = "search" if "query=" in entry["query"] else f"{entry['method']} {path}"
            calls[kind] += 1
    finally:
        server.stop()
    total = sum(calls.values())
    # Once per account: finding (and here creating) the deals' "Intake submission" field.
    setup = calls["GET /api/v4/leads/custom_fields"] + calls["POST /api/v4/leads/custom_fields"]
    return {
        "submissions": submissions,
        "done": done,
        "identities_unknown_locally": unknown,
        "calls": dict(calls),
        "calls_per_submission": total / submissions,
        "calls_per_submission_without_the_one_time_field_setup": (total - setup) / submissions,
        "target_per_submission": (unknown + 2 * submissions) / submissions,
        "target_plus_one_contacts_post_per_new_second_person": (
            unknown + 2 * submissions + calls["POST /api/v4/contacts"]
        )
        / submissions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--submissions", type=int, default=40)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    from tests.support.services import PostgresServer, RedisServer

    postgres, redis_server = PostgresServer().start(), RedisServer().start()
    try:
        django_start(
            "benchmarks.intake_settings", DATABASE_URL=postgres.url, CELERY_BROKER_URL=redis_server.url
        )
        results = {
            "acknowledgement": acknowledgement(
                database_url=postgres.url,
                broker_url=redis_server.url,
                seconds=options.seconds,
                connections=options.connections,
            ),
            "kommo_calls": kommo_calls(submissions=options.submissions),
        }
    finally:
        redis_server.stop()
        postgres.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
