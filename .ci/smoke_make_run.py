#!/usr/bin/env python3
"""Smoke test of the README's first command on this clone, as a person would use it.

`make run` must come up with the demo sandbox and its year of history (about two minutes on a quiet
2-core machine: the sync and the history backfill of 345 deals and 1,400 moves; the check allows 240 s on a
busy machine and prints the figure); a deal moved past "Legal review" while its lawyer has not approved must
come back; Ctrl-C must leave no process behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests  # from the project's .venv: this script runs with it

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / ".run" / "smoke-make-run.log"
sys.path.insert(0, str(ROOT))

from tests.support.services import free_port  # noqa: E402
from tests.support.services import wait_for as wait_until  # noqa: E402


def wait_for(what: str, predicate, timeout: float):  # type: ignore[no-untyped-def]
    """Waits for ``predicate`` (a refused or failed request counts as not yet); fails with the log's tail."""

    def answered():  # type: ignore[no-untyped-def]
        try:
            return predicate()
        except requests.RequestException:
            return None

    try:
        return wait_until(answered, timeout=timeout, interval=0.5, message=what)
    except TimeoutError:
        failure = f"FAIL: {what} within {timeout:.0f}s\n--- make run log (tail) ---\n{tail()}"
        raise SystemExit(failure) from None


def tail(lines: int = 60) -> str:
    return "\n".join(LOG.read_text(errors="replace").splitlines()[-lines:]) if LOG.exists() else ""


def leftovers() -> list[str]:
    """Processes still running from this clone (their command line names its path)."""
    mine = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(ROOT) in cmdline and "smoke_make_run" not in cmdline:
            mine.append(f"{entry.name}: {cmdline.strip()}")
    return mine


def gated_deal(base: str, token: str) -> tuple[int, int, int]:
    """A deal in "Legal review" whose lawyer is still pending, with the ids of Legal review and Signing."""
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    pipeline = api.get(f"{base}/api/v4/leads/pipelines", timeout=10).json()["_embedded"]["pipelines"][0]
    stages = {s["name"]: s["id"] for s in pipeline["_embedded"]["statuses"]}
    legal, signing = stages["Legal review"], stages["Signing"]
    catalog = next(
        c
        for c in api.get(f"{base}/api/v4/catalogs", timeout=10).json()["_embedded"]["catalogs"]
        if c["name"] == "Stakeholders"
    )
    pending_lawyers = set()
    elements = api.get(f"{base}/api/v4/catalogs/{catalog['id']}/elements", params={"limit": 250}, timeout=10)
    for element in elements.json()["_embedded"]["elements"]:
        values = {f["field_name"]: f["values"][0].get("value") for f in element["custom_fields_values"] or []}
        if values.get("Role") == "Lawyer" and values.get("Approval status") == "Pending":
            pending_lawyers.add(element["id"])
    leads = api.get(
        f"{base}/api/v4/leads",
        params={
            "filter[statuses][0][pipeline_id]": pipeline["id"],
            "filter[statuses][0][status_id]": legal,
            "with": "catalog_elements",
        },
        timeout=10,
    ).json()["_embedded"]["leads"]
    for lead in leads:
        if {e["id"] for e in lead["_embedded"].get("catalog_elements", [])} & pending_lawyers:
            return lead["id"], legal, signing
    raise SystemExit("FAIL: the demo data has no deal in Legal review with a pending lawyer")


def main() -> None:
    port, sandbox_port = free_port(), free_port()
    had_control = (ROOT / "control").exists()  # left by a run before the broker's folders moved to .run/
    portal = f"http://127.0.0.1:{port}"
    LOG.parent.mkdir(exist_ok=True)
    env = {**os.environ, "PORT": str(port), "SANDBOX_PORT": str(sandbox_port)}
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "CI"):
        env.pop(name, None)  # the zero-setup default, exactly as on a bare machine
    started = time.monotonic()
    with LOG.open("wb") as log:
        make = subprocess.Popen(  # noqa: S603  (make, from PATH, with a fixed argument)
            [shutil.which("make") or "/usr/bin/make", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for("/healthz answering 200", lambda: requests.get(f"{portal}/healthz", timeout=2).ok, 240)
        print(f"make run: /healthz 200 after {time.monotonic() - started:.0f}s")
        assert requests.get(f"{portal}/admin/login/", timeout=5).status_code == 200, "admin login page"
        print("make run: /admin/ login page 200")

        credentials = json.loads((ROOT / ".run" / "sandbox-credentials.json").read_text())
        base, token = credentials["base_url"], credentials["long_lived_token"]
        lead_id, legal, signing = gated_deal(base, token)
        headers = {"Authorization": f"Bearer {token}"}
        moved = requests.patch(
            f"{base}/api/v4/leads", json=[{"id": lead_id, "status_id": signing}], headers=headers, timeout=10
        )
        assert moved.ok, moved.text
        moved_at = time.monotonic()
        wait_for(
            f"the gate to move deal {lead_id} back to Legal review",
            lambda: (
                requests.get(f"{base}/api/v4/leads/{lead_id}", headers=headers, timeout=5).json()["status_id"]
                == legal
            ),
            30,
        )
        print(f"make run: the gate moved deal {lead_id} back after {time.monotonic() - moved_at:.1f}s")
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            make.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            raise SystemExit(f"FAIL: make run did not stop on Ctrl-C\n{tail()}") from None
    time.sleep(1)
    left = leftovers()
    if left:
        raise SystemExit("FAIL: processes left after Ctrl-C:\n" + "\n".join(left))
    print("make run: Ctrl-C stopped everything")
    if f"Webhook URL: {portal}/webhooks/kommo/" not in LOG.read_text(errors="replace"):
        raise SystemExit(f"FAIL: kommo_connect did not print the webhook URL on {portal}\n{tail()}")
    if (ROOT / "control").exists() and not had_control:
        raise SystemExit("FAIL: make run left the embedded broker's control/ in the checkout")
    print(f"make run: the webhook URL is on port {port}, and nothing was left in the checkout")


if __name__ == "__main__":
    sys.exit(main())
