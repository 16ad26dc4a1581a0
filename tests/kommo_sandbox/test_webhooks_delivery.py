"""The webhook sender over real HTTP: headers, timeout, retry ladder, disabling, drops, DP hooks, batching."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest

from kommo_sandbox.changes import Change, Subscription
from kommo_sandbox.webhooks import DELIVERY_TIMEOUT, DpPolicy, WebhookSender, form_encode, webhook_pairs
from tests.kommo_sandbox.webhook_doubles import FakeSource, Receiver, uuid4_like

ACCOUNT_ID = 31000001
PIPELINE, NEW, QUALIFIED = 7001, 61, 62
# Kommo's ladder (5 min, 15 min, 15 min, 1 h) becomes 30, 90, 90, 360 ms.
FAST = 1e-4


def lead(lead_id: int = 501, status_id: int = QUALIFIED, **fields: Any) -> dict[str, Any]:
    return {
        "id": lead_id,
        "name": "Pilot for ACME",
        "price": 12000,
        "responsible_user_id": 11,
        "status_id": status_id,
        "pipeline_id": PIPELINE,
        "created_by": 11,
        "updated_by": 12,
        "created_at": 1_700_000_000,
        "updated_at": 1_700_000_500,
        "account_id": ACCOUNT_ID,
        "custom_fields_values": None,
        "_embedded": {"tags": [], "companies": []},
    } | fields


def moved(lead_id: int = 501, to: int = QUALIFIED, frm: int = NEW) -> Change:
    return Change(ACCOUNT_ID, "lead", "status", lead_id, lead(lead_id, to), lead(lead_id, frm), user_id=12)


def form(received_body: bytes) -> dict[str, str]:
    return dict(parse_qsl(received_body.decode(), keep_blank_values=True))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def make_sender() -> Iterator[Any]:
    senders: list[WebhookSender] = []

    def make(source: FakeSource, **options: Any) -> WebhookSender:
        options = {"time_scale": FAST, "timeout": 0.5} | options
        sender = WebhookSender(source, **options)
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        sender.stop()


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it is true; False if it is still false after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def subscribed(url: str, *settings: str) -> FakeSource:
    return FakeSource(subscriptions=[Subscription(destination=url, settings=list(settings))])


def test_a_status_change_is_posted_form_encoded_with_kommos_headers(receiver: Receiver, make_sender) -> None:
    source = subscribed(receiver.url, "status_lead")
    sender = make_sender(source)
    change = moved()

    sender.enqueue(change)

    assert sender.wait_idle(5)
    [request] = receiver.requests
    assert request.path == "/hooks/kommo?token=t0k3n"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["User-Agent"] == "amoCRM-Webhooks/3.0"
    assert request.headers["Accept-Encoding"] == "gzip"
    assert uuid4_like(request.headers["X-Amocrm-Requestid"])
    account = source.account_block(ACCOUNT_ID)
    assert request.body == form_encode(webhook_pairs(change, "status", account, old_status_id=NEW)).encode()
    assert form(request.body)["leads[status][0][old_status_id]"] == str(NEW)
    [entry] = sender.deliveries()
    assert entry["outcome"] == "delivered"
    assert (entry["status_code"], entry["attempt"], entry["sections"]) == (200, 1, ["leads[status]"])
    assert entry["request_id"] == request.headers["X-Amocrm-Requestid"]
    assert entry["keys"][:3] == ["account[subdomain]", "account[id]", "account[_links][self]"]


def test_a_status_change_also_reaches_update_lead_subscribers_as_leads_update(
    receiver: Receiver, make_sender
) -> None:
    both, update_only, add_only = Receiver(), Receiver(), Receiver()
    source = FakeSource(
        subscriptions=[
            Subscription(destination=both.url, settings=["status_lead", "update_lead"]),
            Subscription(destination=update_only.url, settings=["update_lead"]),
            Subscription(destination=add_only.url, settings=["add_lead"]),
        ]
    )
    sender = make_sender(source)
    try:
        sender.enqueue(moved())
        assert sender.wait_idle(5)

        sections = [{k.split("[0]")[0] for k in form(r.body) if k.startswith("leads")} for r in both.requests]
        assert sorted(map(sorted, sections)) == [["leads[status]"], ["leads[update]"]]
        [update] = update_only.requests
        assert form(update.body)["leads[update][0][old_status_id]"] == str(NEW)
        assert add_only.requests == []
    finally:
        for server in (both, update_only, add_only):
            server.close()


def test_a_later_update_still_carries_the_status_the_lead_last_left(receiver: Receiver, make_sender) -> None:
    sender = make_sender(subscribed(receiver.url, "update_lead", "responsible_lead"))
    reassigned = Change(ACCOUNT_ID, "lead", "responsible", 501, lead(responsible_user_id=99), lead())

    sender.enqueue(moved())
    sender.enqueue(reassigned)

    assert sender.wait_idle(5)
    bodies = [form(r.body) for r in receiver.requests]
    assert [b.get("leads[update][0][old_status_id]") for b in bodies if "leads[update][0][id]" in b] == [
        str(NEW),
        str(NEW),
    ]
    [responsible] = [b for b in bodies if "leads[responsible][0][id]" in b]
    assert responsible["leads[responsible][0][old_responsible_user_id]"] == "11"
    assert responsible["leads[responsible][0][old_status_id]"] == str(NEW)


def test_a_company_is_sent_under_contacts_and_a_task_under_task(receiver: Receiver, make_sender) -> None:
    sender = make_sender(subscribed(receiver.url, "add_company", "delete_task"))
    company = {"id": 8, "name": "ACME", "responsible_user_id": 11, "created_by": 11, "updated_by": 11}
    company |= {"created_at": 1_700_000_000, "updated_at": 1_700_000_000, "custom_fields_values": None}

    sender.enqueue(Change(ACCOUNT_ID, "company", "add", 8, company))
    sender.enqueue(Change(ACCOUNT_ID, "task", "delete", 77, {"id": 77, "text": "Call"}))
    sender.enqueue(Change(ACCOUNT_ID, "contact", "add", 9, company | {"id": 9}))  # not subscribed

    assert sender.wait_idle(5)
    company_body, task_body = (form(r.body) for r in receiver.requests)
    assert company_body["contacts[add][0][type]"] == "company"
    assert [k for k in task_body if not k.startswith("account")] == ["task[delete][0][id]"]


def test_the_account_block_goes_last_when_configured(receiver: Receiver, make_sender) -> None:
    sender = make_sender(subscribed(receiver.url, "status_lead"), account_position="last")

    sender.enqueue(moved())

    assert sender.wait_idle(5)
    keys = list(form(receiver.requests[0].body))
    assert keys[-3:] == ["account[subdomain]", "account[id]", "account[_links][self]"]


def test_a_move_into_a_stage_with_a_digital_pipeline_hook_posts_the_seven_keys(
    receiver: Receiver, make_sender
) -> None:
    source = FakeSource(dp={(PIPELINE, QUALIFIED): [receiver.url]})
    sender = make_sender(source)

    sender.enqueue(moved())

    assert sender.wait_idle(5)
    [request] = receiver.requests
    assert list(form(request.body).items()) == [
        ("leads[status][0][id]", "501"),
        ("leads[status][0][status_id]", str(QUALIFIED)),
        ("leads[status][0][pipeline_id]", str(PIPELINE)),
        ("leads[status][0][old_status_id]", str(NEW)),
        ("leads[status][0][old_pipeline_id]", str(PIPELINE)),
        ("account[id]", str(ACCOUNT_ID)),
        ("account[subdomain]", "acme"),
    ]
    assert request.headers["User-Agent"] == "amoCRM-Webhooks/3.0"
    assert sender.deliveries()[0]["kind"] == "digital_pipeline"


def test_a_lead_created_in_a_stage_with_a_digital_pipeline_hook_posts_leads_add(
    receiver: Receiver, make_sender
) -> None:
    sender = make_sender(FakeSource(dp={(PIPELINE, NEW): [receiver.url]}))

    sender.enqueue(Change(ACCOUNT_ID, "lead", "add", 502, lead(502, NEW)))
    sender.enqueue(Change(ACCOUNT_ID, "lead", "update", 502, lead(502, NEW, price=1), lead(502, NEW)))

    assert sender.wait_idle(5)
    [request] = receiver.requests
    assert list(form(request.body)) == [
        "leads[add][0][id]",
        "leads[add][0][status_id]",
        "leads[add][0][pipeline_id]",
        "account[id]",
        "account[subdomain]",
    ]


def test_an_answer_slower_than_the_timeout_counts_as_invalid(make_sender) -> None:
    release = threading.Event()
    slow = Receiver(gate=release)  # answers only once released
    try:
        sender = make_sender(subscribed(slow.url, "status_lead"), timeout=0.2)

        sender.enqueue(moved())

        assert len(slow.wait_for(1)) >= 1
        # The receiver holds its answer for 10 s unless released, which happens only after the test, so
        # an attempt logged within 5 s is one the sender stopped waiting for.
        assert wait_until(sender.deliveries)
        [entry] = sender.deliveries()[:1]
        assert entry["outcome"] == "failed"
        assert entry["status_code"] is None
        assert "no response within 0.2 s" in entry["error"]
    finally:
        release.set()
        slow.close()


def test_the_default_timeout_is_kommos_two_seconds() -> None:
    sender = WebhookSender(FakeSource())
    try:
        assert DELIVERY_TIMEOUT == 2.0
        assert sender.timeout == 2.0
    finally:
        sender.stop()


@pytest.mark.parametrize(
    ("status", "attempts"),
    [(200, 1), (204, 1), (404, 3), (302, 3), (500, 5), (503, 5), (499, 5)],
)
def test_the_retry_ladder_depends_on_the_answer(make_sender, status: int, attempts: int) -> None:
    server = Receiver(status=status)
    try:
        sender = make_sender(subscribed(server.url, "status_lead"))

        sender.enqueue(moved())

        assert sender.wait_idle(5)
        assert len(server.requests) == attempts
        log = sender.deliveries()
        assert [e["attempt"] for e in log] == list(range(1, attempts + 1))
        assert len({e["delivery_id"] for e in log}) == 1
        assert len({e["request_id"] for e in log}) == attempts
        assert len({r.body for r in server.requests}) == 1
    finally:
        server.close()


def test_retries_wait_five_then_fifteen_then_fifteen_minutes_then_an_hour(make_sender) -> None:
    server = Receiver(status=500)
    try:
        sender = make_sender(subscribed(server.url, "status_lead"))

        sender.enqueue(moved())

        assert sender.wait_idle(5)
        delays = [e["retry_in"] for e in sender.deliveries()]
        assert delays == pytest.approx([300 * FAST, 900 * FAST, 900 * FAST, 3600 * FAST, None])
    finally:
        server.close()


def test_an_unreachable_receiver_gets_three_attempts() -> None:
    closed = Receiver()
    url = closed.url
    closed.close()
    sender = WebhookSender(subscribed(url, "status_lead"), time_scale=FAST, timeout=0.5)
    try:
        sender.enqueue(moved())

        assert sender.wait_idle(5)
        log = sender.deliveries()
        assert [e["attempt"] for e in log] == [1, 2, 3]
        assert all(e["status_code"] is None and e["error"] for e in log)
    finally:
        sender.stop()


def test_a_subscription_is_disabled_after_more_invalid_answers_than_the_threshold(make_sender) -> None:
    server = Receiver(status=500)
    try:
        source = subscribed(server.url, "status_lead")
        sender = make_sender(source, disable_after=3)

        sender.enqueue(moved())
        assert sender.wait_idle(5)

        assert len(server.requests) == 4  # the fourth invalid answer is one more than 3
        assert source.disabled_calls == [(ACCOUNT_ID, server.url, True)]
        last_attempt, disabled = sender.deliveries()[-2:]
        assert (last_attempt["outcome"], last_attempt["retry_in"]) == ("failed", None)
        assert disabled["outcome"] == "disabled"

        sender.enqueue(moved(lead_id=502))
        assert sender.wait_idle(5)
        assert len(server.requests) == 4  # a disabled subscription gets nothing
    finally:
        server.close()


def test_invalid_answers_older_than_the_window_do_not_count(make_sender) -> None:
    server = Receiver(status=500)
    try:
        source = subscribed(server.url, "status_lead")
        # A 2-second window at this scale: each retry comes after the previous answer has left it.
        sender = make_sender(source, disable_after=1, disable_window=20)

        sender.enqueue(moved())

        assert sender.wait_idle(5)
        assert len(server.requests) == 5
        assert source.disabled_calls == []
    finally:
        server.close()


def test_a_dropped_delivery_is_logged_and_never_sent(receiver: Receiver, make_sender) -> None:
    source = subscribed(receiver.url, "status_lead")
    source.drops = 1
    sender = make_sender(source)

    sender.enqueue(moved(lead_id=501))
    sender.enqueue(moved(lead_id=502))

    assert sender.wait_idle(5)
    [request] = receiver.requests
    assert form(request.body)["leads[status][0][id]"] == "502"
    assert [e["outcome"] for e in sender.deliveries()] == ["dropped", "delivered"]


def test_digital_pipeline_hooks_retry_by_their_own_policy(make_sender) -> None:
    server = Receiver(status=500)
    try:
        source = FakeSource(dp={(PIPELINE, QUALIFIED): [server.url]})
        sender = make_sender(source, dp_policy=DpPolicy(retry_delays=(100, 200)))

        sender.enqueue(moved())

        assert sender.wait_idle(5)
        assert [e["retry_in"] for e in sender.deliveries()] == pytest.approx([100 * FAST, 200 * FAST, None])
        assert source.disabled_calls == []
    finally:
        server.close()


def test_too_many_invalid_digital_pipeline_answers_suspend_retries_to_the_address(make_sender) -> None:
    server = Receiver(status=500)
    try:
        source = FakeSource(dp={(PIPELINE, QUALIFIED): [server.url]})
        policy = DpPolicy(retry_delays=(10, 10), suspend_after=1, suspend_window=30_000, suspend_for=3000)
        sender = make_sender(source, dp_policy=policy)

        sender.enqueue(moved())

        assert sender.wait_idle(5)
        first, second, _ = (e["retry_in"] for e in sender.deliveries())
        assert first == pytest.approx(10 * FAST)
        assert second == pytest.approx(3000 * FAST, rel=0.05)  # the second invalid answer suspends retries
    finally:
        server.close()


def test_a_slow_receiver_does_not_hold_up_another(receiver: Receiver, make_sender) -> None:
    release = threading.Event()
    stuck = Receiver(gate=release)
    try:
        source = FakeSource(
            subscriptions=[
                Subscription(destination=stuck.url, settings=["status_lead"]),
                Subscription(destination=receiver.url, settings=["status_lead"]),
            ]
        )
        sender = make_sender(source, timeout=5)

        sender.enqueue(moved())

        assert len(stuck.wait_for(1, timeout=3)) == 1
        assert len(receiver.wait_for(1, timeout=3)) == 1  # while the first receiver still holds its request

        def outcomes() -> list[tuple[str, str]]:
            return [(entry["destination"], entry["outcome"]) for entry in sender.deliveries()]

        # The other delivery is complete while the held one has no outcome yet.
        assert wait_until(lambda: outcomes() == [(receiver.url, "delivered")], timeout=3), outcomes()
        release.set()
        assert sender.wait_idle(5)
        assert outcomes() == [(receiver.url, "delivered"), (stuck.url, "delivered")]
    finally:
        release.set()
        stuck.close()


def test_deliveries_to_one_destination_arrive_in_order(receiver: Receiver, make_sender) -> None:
    sender = make_sender(subscribed(receiver.url, "status_lead"), workers=4)

    for lead_id in range(600, 610):
        sender.enqueue(moved(lead_id=lead_id))

    assert sender.wait_idle(5)
    ids = [form(r.body)["leads[status][0][id]"] for r in receiver.requests]
    assert ids == [str(i) for i in range(600, 610)]


def test_several_changes_can_share_one_body_when_batching_is_on(receiver: Receiver, make_sender) -> None:
    sender = make_sender(subscribed(receiver.url, "status_lead"), items_per_body=3, batch_window=0.2)

    for lead_id in (701, 702, 703, 704):
        sender.enqueue(moved(lead_id=lead_id))

    assert sender.wait_idle(5)
    first, second = (form(r.body) for r in receiver.requests)
    assert [first[f"leads[status][{i}][id]"] for i in range(3)] == ["701", "702", "703"]
    assert second["leads[status][0][id]"] == "704" and "leads[status][1][id]" not in second


def test_a_full_queue_drops_the_change_and_logs_it(receiver: Receiver, make_sender) -> None:
    planning = threading.Event()
    proceed = threading.Event()

    def hold() -> None:
        planning.set()
        proceed.wait(5)

    source = subscribed(receiver.url, "status_lead")
    source.before_account_block = hold
    sender = make_sender(source, queue_size=1)

    sender.enqueue(moved(lead_id=1))
    assert planning.wait(5)  # the coordinator is busy with the first change
    sender.enqueue(moved(lead_id=2))
    sender.enqueue(moved(lead_id=3))
    proceed.set()

    assert sender.wait_idle(5)
    assert [form(r.body)["leads[status][0][id]"] for r in receiver.requests] == ["1", "2"]
    assert sender.deliveries()[0]["outcome"] == "overflow"


def test_enqueue_returns_at_once_while_the_receiver_is_slow(make_sender) -> None:
    release = threading.Event()
    stuck = Receiver(gate=release)
    try:
        sender = make_sender(subscribed(stuck.url, "status_lead"), timeout=5)
        sender.enqueue(moved(lead_id=0))
        assert len(stuck.wait_for(1)) == 1  # the receiver now holds the first delivery

        def enqueue_the_rest() -> None:
            for lead_id in range(1, 20):
                sender.enqueue(moved(lead_id=lead_id))

        # On another thread, so that an enqueue waiting on the receiver fails the test instead of hanging
        # it: the receiver answers nothing before the test ends, and the sender gives up on it after 5 s.
        enqueuing = threading.Thread(target=enqueue_the_rest)
        enqueuing.start()
        enqueuing.join(3)
        assert not enqueuing.is_alive()
        assert len(stuck.requests) == 1  # still the first delivery, unanswered
    finally:
        release.set()
        stuck.close()


def test_the_log_filters_by_account_and_keeps_the_most_recent(receiver: Receiver, make_sender) -> None:
    source = FakeSource(subscriptions=[Subscription(destination=receiver.url, settings=["status_lead"])])
    sender = make_sender(source, log_size=3)

    for lead_id in range(5):
        sender.enqueue(moved(lead_id=lead_id))
    sender.enqueue(Change(42, "lead", "status", 9, lead(9), lead(9, NEW)))

    assert sender.wait_idle(5)
    assert len(sender.deliveries()) == 3
    assert [e["account_id"] for e in sender.deliveries(account_id=42)] == [42]
    assert len(sender.deliveries(limit=1)) == 1


def test_stop_ends_the_threads_and_later_changes_are_ignored(receiver: Receiver) -> None:
    sender = WebhookSender(subscribed(receiver.url, "status_lead"))

    sender.stop()
    sender.enqueue(moved())

    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("webhooks-"))
    assert receiver.requests == [] and sender.deliveries() == []
