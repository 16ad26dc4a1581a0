"""Intake benchmark: ``python -m benchmarks.intake``.

1. Acknowledgement: gunicorn (sync workers, one per core) on a throwaway PostgreSQL, tasks published to a
   throwaway Redis; wrk posts a distinct valid submission per request to ``POST /api/v1/intake/leads`` and,
   as the baseline measured in the same run, the same bodies to a bare view with the same key check.
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
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

WRK_SCRIPT = r"""
local counter = 0
local threads = {}

-- thread_id is a global of each thread's Lua state, set here
function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
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

function done(summary, latency, requests)
  local format = 'RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "errors": %d, '
    .. '"p50_us": %d, "p99_us": %d}\n'
  io.write(string.format(format,
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def _setup_django(database_url: str, broker_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.intake_settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ["CELERY_BROKER_URL"] = broker_url
    import django

    django.setup()


def _wrk(url: str, key: str, *, seconds: int, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.replace("__KEY__", key))
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script.name, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    os.unlink(script.name)
    match = re.search(r"RESULT (\{.*\})", output)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    raw = json.loads(match.group(1))
    return {
        "requests": raw["requests"],
        "per_second": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "non_2xx": raw["non2xx"],
        "socket_errors": raw["errors"],
    }


def acknowledgement(*, database_url: str, broker_url: str, seconds: int, connections: int) -> dict[str, Any]:
    import requests

    from apps.intake.models import IntakeSource, IntakeSubmission
    from apps.intake.services import intake_source_key_generate
    from apps.kommo.models import KommoAccount
    from tests.support.services import free_port, wait_for

    account = KommoAccount.objects.create(name="Bench", base_url="https://bench.kommo.com")
    key = intake_source_key_generate(source=IntakeSource(account=account, name="Bench"))
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.intake_settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
    }
    workers = str(os.cpu_count() or 2)
    server = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-w",
            workers,
            "-b",
            f"127.0.0.1:{port}",
            "-k",
            "sync",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answers() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, timeout=30, message="gunicorn")
        base = f"http://127.0.0.1:{port}"
        _wrk(f"{base}/bench/baseline", key, seconds=2, connections=connections)  # warm-up
        _wrk(f"{base}/api/v1/intake/leads", key, seconds=2, connections=connections)
        IntakeSubmission.objects.all().delete()
        baseline = _wrk(f"{base}/bench/baseline", key, seconds=seconds, connections=connections)
        intake = _wrk(f"{base}/api/v1/intake/leads", key, seconds=seconds, connections=connections)
        stored = IntakeSubmission.objects.count()
    finally:
        server.terminate()
        server.wait(timeout=15)
    return {
        "baseline": baseline,
        "intake": intake,
        "stored_submissions": stored,
        "throughput_ratio": intake["per_second"] / baseline["per_second"],
        "gunicorn_workers": int(workers),
        "connections": connections,
        "seconds": seconds,
    }


def kommo_calls(*, submissions: int) -> dict[str, Any]:
    """Submissions processed in this process against the sandbox; half bring back a known buyer."""
    from apps.intake.models import IntakeSource, IntakeSubmission
    from apps.intake.serializers import IntakeLeadSerializer
    from apps.intake.services import intake_submission_create, intake_submission_process
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
        calls = Counter()
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
        _setup_django(postgres.url, redis_server.url)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
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
