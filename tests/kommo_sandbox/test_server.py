"""The server around the API: auth and OAuth, rate limits and blocking, faults, the admin API, the board,
seeds, the state file and the change bus."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from kommo_sandbox.changes import Change
from kommo_sandbox.ratelimit import RateLimiter
from kommo_sandbox.server import SandboxServer
from tests.kommo_sandbox.conftest import Client, sample, start_server
from tests.support.services import ROOT, python_run, wait_for

pytestmark = pytest.mark.sandbox


def test_requests_without_a_valid_token_get_the_401_problem(sandbox):
    response = requests.get(
        sandbox.base_url + "/api/v4/leads", headers={"Authorization": "Bearer nope"}, timeout=5
    )
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json() == sample("error-401.json")


def test_unknown_routes_are_404_problems(api):
    response = api.get("/api/v4/unknown")
    assert response.status_code == 404 and set(response.json()) == set(sample("error-404.json"))


def test_the_account_is_chosen_by_host_subdomain(sandbox, api):
    host = f"{sandbox.credentials['subdomain']}.kommo.localhost:{sandbox.port}"
    response = api.get("/api/v4/account", headers={"Host": host})
    assert response.json()["subdomain"] == sandbox.credentials["subdomain"]
    assert response.json()["_links"]["self"]["href"].startswith(f"http://{host}/")


def test_oauth_code_then_token_then_rotating_refresh(sandbox):
    creds = sandbox.credentials
    base = sandbox.base_url
    page = requests.get(f"{base}/oauth?client_id={creds['client_id']}&state=s1&mode=post_message", timeout=5)
    assert page.status_code == 200 and "Allow" in page.text
    grant = requests.post(
        f"{base}/oauth",
        data={"client_id": creds["client_id"], "state": "s1", "decision": "allow"},
        allow_redirects=False,
        timeout=5,
    )
    assert grant.status_code == 302
    location = urlparse(grant.headers["Location"])
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert location.geturl().startswith(creds["redirect_uri"])
    assert params["state"] == "s1" and params["client_id"] == creds["client_id"] and params["referer"]
    request = {
        **sample("token-request-authorization-code.json"),
        "client_id": creds["client_id"],
        "client_secret": creds["client_secret"],
        "code": params["code"],
        "redirect_uri": creds["redirect_uri"],
    }
    tokens = requests.post(f"{base}/oauth2/access_token", json=request, timeout=5).json()
    assert set(sample("token-response.json")) <= set(tokens) and tokens["expires_in"] == 86400
    assert (
        requests.post(f"{base}/oauth2/access_token", json=request, timeout=5).status_code == 400
    )  # single use
    refresh = {**request, "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    refresh.pop("code")
    second = requests.post(f"{base}/oauth2/access_token", json=refresh, timeout=5).json()
    assert second["refresh_token"] != tokens["refresh_token"]
    # The previous refresh token keeps working until the new pair is used ...
    retry = requests.post(f"{base}/oauth2/access_token", json=refresh, timeout=5)
    assert retry.status_code == 200
    third = retry.json()
    assert Client(base, third["access_token"]).get("/api/v4/account").status_code == 200
    # ... and is revoked once it has been.
    revoked = requests.post(f"{base}/oauth2/access_token", json=refresh, timeout=5)
    assert revoked.status_code == 401
    assert revoked.json() == {**sample("error-oauth-token-revoked.json"), "hint": "Token has been revoked"}
    # The pair replaced by the retry was never received, so it no longer works.
    assert Client(base, second["access_token"]).get("/api/v4/account").status_code == 401


def test_declining_redirects_with_access_denied(sandbox):
    creds = sandbox.credentials
    grant = requests.post(
        f"{sandbox.base_url}/oauth",
        data={"client_id": creds["client_id"], "state": "s2", "decision": "deny"},
        allow_redirects=False,
        timeout=5,
    )
    assert parse_qs(urlparse(grant.headers["Location"]).query)["error"] == ["access_denied"]


class StoppedClock:
    """The sandbox limiter's clock, moved only by the test: a loaded machine that takes more than a second
    for the requests below no longer refills the bucket between them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_then_block_then_unblock():
    server = start_server("empty", rate_limit=True)
    clock = StoppedClock()
    server.app.limiter = RateLimiter(clock=clock)
    try:
        api = Client(server.base_url, server.credentials["long_lived_token"])
        admin = Client(server.base_url, server.credentials["admin_token"])
        admin.put("/_sandbox/rate-limit", {"block_threshold": 5})
        answers = [api.get("/api/v4/account") for _ in range(20)]
        # 7 a second per token; the sixth 429 within the block window is past the threshold: blocked.
        assert [answer.status_code for answer in answers] == [200] * 7 + [429] * 6 + [403] * 7
        assert set(answers[7].json()) == set(sample("error-429.json"))
        blocked = api.get("/api/v4/leads")
        assert blocked.status_code == 403 and "403 Forbidden" in blocked.text and "nginx" in blocked.text
        clock.now += 1.1
        assert api.get("/api/v4/account").status_code == 403  # blocked until an admin lifts it
        assert admin.get("/_sandbox/rate-limit").json()["blocked"] is True
        assert admin.post("/_sandbox/unblock").json() == {"blocked": False}
        assert api.get("/api/v4/account").status_code == 200
        admin.put("/_sandbox/rate-limit", {"html_429": True, "block_threshold": 1000})
        html = [api.get("/api/v4/account") for _ in range(15)][-1]
        assert html.status_code == 429 and html.headers["Content-Type"].startswith("text/html")
    finally:
        server.stop()


def test_fault_injection_errors_html_latency_and_timeouts(api, admin):
    try:
        config = admin.put("/_sandbox/faults", {"error_rate": 1, "error_statuses": [500], "seed": 7}).json()
        assert config["error_rate"] == 1
        failed = api.get("/api/v4/account")
        assert failed.status_code == 500 and set(failed.json()) == set(sample("error-500.json"))
        admin.put("/_sandbox/faults", {"html_errors": True, "error_statuses": [502]})
        gateway = api.get("/api/v4/account")
        assert gateway.status_code == 502 and "Bad Gateway" in gateway.text
        admin.put("/_sandbox/faults", {"error_rate": 0, "timeout_rate": 1, "timeout_seconds": 0.5})
        with pytest.raises(requests.Timeout):
            api.session.get(api.base_url + "/api/v4/account", timeout=0.2)
        admin.put("/_sandbox/faults", {"timeout_rate": 0, "latency_ms": 300})
        started = time.monotonic()
        assert api.get("/api/v4/account").status_code == 200
        assert time.monotonic() - started >= 0.3
        assert admin.put("/_sandbox/faults", {"error_rate": 2}).status_code == 400
    finally:
        admin.put(
            "/_sandbox/faults", {"error_rate": 0, "timeout_rate": 0, "latency_ms": 0, "html_errors": False}
        )


def test_seeded_faults_are_deterministic(api, admin):
    def run() -> list[int]:
        admin.put("/_sandbox/faults", {"error_rate": 0.5, "error_statuses": [500, 504], "seed": 42})
        return [api.get("/api/v4/account").status_code for _ in range(12)]

    try:
        first, second = run(), run()
    finally:
        admin.put("/_sandbox/faults", {"error_rate": 0, "seed": None})
    assert first == second and 200 in first and set(first) - {200}


def test_the_request_log_counts_the_calls(api, admin):
    since = admin.get("/_sandbox/requests").json()["last_seq"]
    api.get("/api/v4/leads?limit=1")
    api.get("/api/v4/contacts?limit=1")
    entries = admin.get(f"/_sandbox/requests?since={since}&path_prefix=/api/v4").json()["requests"]
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("GET", "/api/v4/leads", 200),
        ("GET", "/api/v4/contacts", 200),
    ]
    assert Client(api.base_url, "wrong").get("/_sandbox/requests").status_code == 401


def test_admin_sets_digital_pipeline_hooks_per_stage(sandbox, admin):
    account = sandbox.store.account(sandbox.credentials["account_id"])
    stage = account.main_pipeline.ordered_statuses()[2]
    body = {"pipeline_id": account.main_pipeline.id, "status_id": stage.id, "url": "https://hooks.example/dp"}
    assert admin.put("/_sandbox/dp-webhooks", body).json()["urls"] == ["https://hooks.example/dp"]
    assert sandbox.store.dp_destinations(account.id, account.main_pipeline.id, stage.id) == [
        "https://hooks.example/dp"
    ]
    admin.put("/_sandbox/dp-webhooks", {**body, "urls": []})
    assert sandbox.store.dp_destinations(account.id, account.main_pipeline.id, stage.id) == []


def test_the_board_shows_the_stages_and_moves_a_deal(sandbox, api):
    account = sandbox.store.account(sandbox.credentials["account_id"])
    page = requests.get(sandbox.base_url + "/board", timeout=5)
    assert page.status_code == 200
    for status in account.main_pipeline.statuses:
        assert status.name in page.text
    lead = next(lead for lead in account.leads.values() if lead.status_id != 142 and not lead.is_deleted)
    target = next(s for s in account.main_pipeline.statuses if s.name == "Signing")
    manager = next(u for u in account.users.values() if not u.is_admin)
    detail = requests.get(f"{sandbox.base_url}/board/leads/{lead.id}", timeout=5)
    assert "Role in the purchase" in detail.text and "Approval status" in detail.text
    moved = requests.post(
        f"{sandbox.base_url}/board/leads/{lead.id}/move",
        data={"status_id": target.id, "as": manager.id, "back": "/board"},
        allow_redirects=False,
        timeout=5,
    )
    assert moved.status_code == 303
    assert api.get(f"/api/v4/leads/{lead.id}").json()["status_id"] == target.id
    events = api.get(
        f"/api/v4/events?filter[type]=lead_status_changed&filter[entity_id]={lead.id}&filter[entity]=lead"
    )
    last = events.json()["_embedded"]["events"][-1]
    assert last["created_by"] == manager.id and last["value_after"][0]["lead_status"]["id"] == target.id


def test_every_change_is_published_on_the_bus_with_previous_and_current(sandbox, api):
    changes: list[Change] = []
    sandbox.store.bus.subscribe(changes.append)
    lead_id = api.post("/api/v4/leads", [{"name": "bus"}]).json()["_embedded"]["leads"][0]["id"]
    api.patch(f"/api/v4/leads/{lead_id}", {"status_id": 143})
    api.patch(f"/api/v4/leads/{lead_id}", {"name": "bus 2"})
    api.post(f"/api/v4/leads/{lead_id}/notes", [{"params": {"text": "n"}}])
    mine = [c for c in changes if c.entity_id == lead_id]
    assert [(c.entity, c.action) for c in mine] == [
        ("lead", "add"),
        ("lead", "status"),
        ("lead", "update"),
        ("lead", "note"),
    ]
    assert mine[1].previous["status_id"] != 143 and mine[1].current["status_id"] == 143
    assert mine[1].current["closed_at"] and "contacts" in mine[1].current["_embedded"]
    assert mine[3].current["params"] == {"text": "n"}
    assert sandbox.store.account_block(mine[0].account_id)["id"] == str(mine[0].account_id)


def test_the_demo_seed(sandbox):
    account = sandbox.store.account(sandbox.credentials["account_id"])
    demo_leads = [lead for lead in account.leads.values() if lead.id < 20000046]
    assert len(demo_leads) == 45
    assert sum(lead.price for lead in demo_leads) / 45 == pytest.approx(35000, rel=0.2)
    closed = [lead for lead in demo_leads if lead.status_id in (142, 143)]
    assert len(closed) == 10 and all(lead.closed_at for lead in closed)
    for lead in demo_leads:
        assert 2 <= len(account.links.ids(("leads", lead.id), "contacts")) <= 5
    catalog = next(iter(account.catalogs.values()))
    approval = account.field_named("catalogs", "Approval status", catalog.id)
    role = account.field_named("catalogs", "Role", catalog.id)
    legal = next(s for s in account.main_pipeline.statuses if s.name == "Legal review")
    lawyer_states = []
    for lead in (lead for lead in demo_leads if lead.status_id == legal.id):
        for element_id in account.links.ids(("leads", lead.id), "catalog_elements"):
            values = {
                v["field_id"]: v["values"][0]["value"]
                for v in account.elements[element_id].custom_fields_values
            }
            if values[role.id] == "Lawyer":
                lawyer_states.append(values[approval.id])
    assert {"Pending", "Approved"} == set(lawyer_states)
    assert len({lead.responsible_user_id for lead in demo_leads}) >= 4


def test_the_large_seed_makes_n_deals_that_page_to_the_end():
    # How fast it builds and lists is measured by benchmarks.sync_budget (large:10000), not asserted here.
    server = start_server("large:10000")
    try:
        api = Client(server.base_url, server.credentials["long_lived_token"])
        data = api.get("/api/v4/leads?limit=250&page=20&with=contacts").json()
        assert len(data["_embedded"]["leads"]) == 250
        assert all(lead["_embedded"]["contacts"] for lead in data["_embedded"]["leads"])
        assert len(api.get("/api/v4/leads?limit=250&page=40").json()["_embedded"]["leads"]) == 250
        assert api.get("/api/v4/leads?page=41&limit=250").status_code == 204
    finally:
        server.stop()


def test_the_state_file_keeps_data_across_restarts(tmp_path):
    state = tmp_path / "state.json"
    server = start_server("empty", state_file=state)
    creds = server.credentials
    lead_id = (
        Client(server.base_url, creds["long_lived_token"]).post("/api/v4/leads", [{"name": "kept"}]).json()
    )
    server.stop()
    again = SandboxServer(seed="empty", webhooks=False, state_file=state, credentials=creds).start()
    try:
        api = Client(again.base_url, creds["long_lived_token"])
        api_admin = Client(again.base_url, creds["admin_token"])
        api_admin.put("/_sandbox/rate-limit", {"enabled": False})
        assert api.get(f"/api/v4/leads/{lead_id['_embedded']['leads'][0]['id']}").json()["name"] == "kept"
    finally:
        again.stop()


def test_reset_restores_the_seed(tmp_path):
    server = start_server("empty")
    try:
        api = Client(server.base_url, server.credentials["long_lived_token"])
        admin = Client(server.base_url, server.credentials["admin_token"])
        api.post("/api/v4/leads", [{"name": "gone after reset"}])
        assert api.get("/api/v4/leads").status_code == 200
        assert admin.post("/_sandbox/reset").json()["reset"] is True
        assert api.get("/api/v4/leads").status_code == 204
    finally:
        server.stop()


def test_a_deal_answers_at_its_kommo_address_leads_detail_with_its_page(sandbox):
    account = sandbox.store.account(sandbox.credentials["account_id"])
    lead = next(lead for lead in account.leads.values() if not lead.is_deleted)

    page = requests.get(f"{sandbox.base_url}/leads/detail/{lead.id}", timeout=5)
    missing = requests.get(f"{sandbox.base_url}/leads/detail/999999999", timeout=5)

    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert lead.name in page.text and "Stage" in page.text
    assert missing.status_code == 404


def test_python_dash_m_kommo_sandbox_serves_until_sigterm_with_no_django(tmp_path):
    """The sandbox is a program of its own: no settings, no Django imported, stopped cleanly by SIGTERM."""
    credentials_file = tmp_path / "credentials.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kommo_sandbox",
            "--port",
            "0",
            "--seed",
            "empty",
            "--no-webhooks",
            "--credentials-file",
            str(credentials_file),
        ],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        credentials = wait_for(lambda: _credentials(credentials_file), timeout=30, message="its credentials")
        answer = requests.get(
            credentials["base_url"] + "/api/v4/account",
            headers={"Authorization": f"Bearer {credentials['long_lived_token']}"},
            timeout=5,
        )
        assert answer.status_code == 200
        assert answer.json()["subdomain"] == credentials["subdomain"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)

    assert process.returncode == 0, output
    assert "Kommo sandbox on http://127.0.0.1:" in output
    assert "Stopping the Kommo sandbox" in output


def _credentials(path):  # type: ignore[no-untyped-def]
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or half written
        return None


def test_the_sandbox_imports_no_django():
    code = (
        "import sys, kommo_sandbox.cli, kommo_sandbox.app, kommo_sandbox.seed;"
        " print(any(m.startswith('django') for m in sys.modules))"
    )
    result = python_run(code)

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
