"""The board: Kommo's pipeline view in plain HTML, where a person moves deals as a chosen Kommo user.

``GET /board?pipeline_id=&as=`` shows one column per stage; each card has a small form that posts to
``/board/leads/<id>/move``. Moves go through the same service as ``PATCH /api/v4/leads``, so they record
events and publish changes (and therefore webhooks). ``/board/leads/<id>`` shows a deal with its contacts,
catalog elements, tasks and notes; ``/leads/detail/<id>`` too, the address of a deal in Kommo itself, which
the portal links to.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from kommo_sandbox.entities import Lead, Pipeline
from kommo_sandbox.errors import ApiError
from kommo_sandbox.fields import value_text
from kommo_sandbox.http import Request, Response, as_int, html_response, redirect
from kommo_sandbox.pages import layout
from kommo_sandbox.services.leads import move_lead
from kommo_sandbox.store import Account, SandboxStore

# The deal's page answers at the board's address and at Kommo's own, /leads/detail/<id>.
LEAD_PATH = re.compile(r"^/(?:board/leads|leads/detail)/(?P<id>\d+)/?$")
MOVE_PATH = re.compile(r"^/board/leads/(?P<id>\d+)/move/?$")
DATE_TYPES = ("date", "date_time", "birthday")


def _money(account: Account, amount: int) -> str:
    return f"{account.currency_symbol}{amount:,}"


def _date(stamp: int | None) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d") if stamp else ""


def _user_name(account: Account, user_id: int) -> str:
    user = account.users.get(user_id)
    return user.name if user else ""


def _acting_user(account: Account, raw: Any) -> int:
    user_id = as_int(raw) if isinstance(raw, str) and raw.isdigit() else None
    return user_id if user_id in account.users else account.admin_user.id


def _user_select(account: Account, acting: int) -> str:
    options = "".join(
        f"<option value='{u.id}'{' selected' if u.id == acting else ''}>{escape(u.name)}</option>"
        for u in account.users.values()
    )
    return f"<label>Acting as <select name='as' onchange='this.form.submit()'>{options}</select></label>"


def _cf_summary(account: Account, values: list[dict[str, Any]]) -> str:
    parts = []
    for item in values:
        field = account.fields.get(item["field_id"])
        if field is None:
            continue
        if field.type in DATE_TYPES:
            text = ", ".join(_date(v.get("value")) for v in item["values"])
        else:
            text = ", ".join(value_text(v) for v in item["values"])
        css = escape(text) if field.type in ("select", "radiobutton") else ""
        parts.append(f"<div>{escape(field.name)}: <span class='pill {css}'>{escape(text)}</span></div>")
    return "".join(parts)


def _stage_options(pipeline: Pipeline, current: int) -> str:
    return "".join(
        f"<option value='{s.id}'{' selected' if s.id == current else ''}>{escape(s.name)}</option>"
        for s in pipeline.ordered_statuses()
    )


def _move_form(lead: Lead, pipeline: Pipeline, acting: int, back: str) -> str:
    return (
        f"<form method='post' action='/board/leads/{lead.id}/move'>"
        f"<input type='hidden' name='as' value='{acting}'>"
        f"<input type='hidden' name='back' value='{escape(back)}'>"
        f"<select name='status_id' aria-label='Stage'>{_stage_options(pipeline, lead.status_id)}</select>"
        "<button>Move</button></form>"
    )


def board_page(store: SandboxStore, request: Request, account: Account) -> Response:
    pipeline_id = (
        as_int(request.query.get("pipeline_id"))
        if str(request.query.get("pipeline_id", "")).isdigit()
        else None
    )
    pipeline = account.pipelines.get(pipeline_id or 0) or account.main_pipeline
    acting = _acting_user(account, request.query.get("as"))
    by_status: dict[int, list[Lead]] = {s.id: [] for s in pipeline.statuses}
    for lead in account.leads.values():
        if lead.pipeline_id == pipeline.id and not lead.is_deleted and lead.status_id in by_status:
            by_status[lead.status_id].append(lead)
    back = f"/board?{urlencode({'pipeline_id': pipeline.id, 'as': acting})}"
    columns = []
    for status in pipeline.ordered_statuses():
        leads = sorted(by_status[status.id], key=lambda lead: -lead.updated_at)
        cards = "".join(
            f"<div class='card' data-lead-id='{lead.id}'>"
            f"<a href='/board/leads/{lead.id}?as={acting}'>{escape(lead.name)}</a>"
            f"<div class='meta'>{_money(account, lead.price)} · "
            f"{escape(_user_name(account, lead.responsible_user_id))}"
            f"</div>{_move_form(lead, pipeline, acting, back)}</div>"
            for lead in leads
        )
        total = _money(account, sum(lead.price for lead in leads))
        columns.append(
            f"<section class='column' style='--c:{escape(status.color)}' data-status-id='{status.id}'>"
            f"<h2>{escape(status.name)}<span class='sum'>{len(leads)} deals · {total}</span></h2>"
            f"{cards}</section>"
        )
    pipelines = "".join(
        f"<option value='{p.id}'{' selected' if p.id == pipeline.id else ''}>{escape(p.name)}</option>"
        for p in account.pipelines.values()
    )
    controls = (
        "<form method='get' action='/board'>"
        f"<select name='pipeline_id' onchange='this.form.submit()'>{pipelines}"
        f"</select> {_user_select(account, acting)} <noscript><button>Show</button></noscript></form>"
    )
    body = f"<h1>{escape(pipeline.name)}</h1><div class='board'>{''.join(columns)}</div>"
    return html_response(layout(f"{pipeline.name} — board", body, controls))


def lead_page(store: SandboxStore, request: Request, account: Account, lead_id: int) -> Response:
    lead = account.leads.get(lead_id)
    if lead is None:
        return html_response(layout("Not found", "<p>No such deal.</p>"), 404)
    acting = _acting_user(account, request.query.get("as"))
    pipeline = account.pipelines[lead.pipeline_id]
    status = pipeline.status(lead.status_id)
    key = ("leads", lead.id)
    contact_rows = []
    for (_, contact_id), meta in account.links.linked(key, "contacts"):
        contact = account.contacts.get(contact_id)
        if contact is None:
            continue
        main = " <span class='pill'>main</span>" if (meta or {}).get("main_contact") else ""
        contact_rows.append(
            f"<tr><td>{escape(contact.name)}{main}</td>"
            f"<td>{_cf_summary(account, contact.custom_fields_values)}</td></tr>"
        )
    element_rows = []
    for element_id in account.links.ids(key, "catalog_elements"):
        element = account.elements.get(element_id)
        if element is None:
            continue
        catalog = account.catalogs.get(element.catalog_id)
        element_rows.append(
            f"<tr><td>{escape(element.name)}</td><td>{escape(catalog.name if catalog else '')}</td>"
            f"<td>{_cf_summary(account, element.custom_fields_values)}</td></tr>"
        )
    tasks = sorted(
        (t for t in account.tasks.values() if t.entity_type == "leads" and t.entity_id == lead.id),
        key=lambda t: t.complete_till,
    )
    task_rows = "".join(
        f"<tr><td>{escape(t.text)}</td><td>{_date(t.complete_till)}</td>"
        f"<td>{'done' if t.is_completed else 'open'}</td>"
        f"<td>{escape(_user_name(account, t.responsible_user_id))}</td></tr>"
        for t in tasks
    )
    notes = sorted(
        (n for n in account.notes.values() if n.entity_type == "leads" and n.entity_id == lead.id),
        key=lambda n: n.created_at,
    )
    note_rows = "".join(
        f"<tr><td>{_date(n.created_at)}</td><td>{escape(n.note_type)}</td>"
        f"<td>{escape(str(n.params.get('text', n.params)))}</td></tr>"
        for n in notes
    )
    back = f"/board/leads/{lead.id}?{urlencode({'as': acting})}"

    def table(headers: list[str], rows: str, empty: str) -> str:
        if not rows:
            return f"<p>{empty}</p>"
        head = "".join(f"<th>{h}</th>" for h in headers)
        return f"<table><tr>{head}</tr>{rows}</table>"

    body = f"""
<p><a href="/board?{urlencode({"pipeline_id": pipeline.id, "as": acting})}">← {escape(pipeline.name)}</a></p>
<h1>{escape(lead.name)}</h1>
<table>
<tr><th>Stage</th><td>{escape(status.name if status else str(lead.status_id))}</td></tr>
<tr><th>Price</th><td>{_money(account, lead.price)}</td></tr>
<tr><th>Responsible</th><td>{escape(_user_name(account, lead.responsible_user_id))}</td></tr>
<tr><th>Created</th><td>{_date(lead.created_at)}</td></tr>
<tr><th>Closed</th><td>{_date(lead.closed_at)}</td></tr>
<tr><th>Fields</th><td>{_cf_summary(account, lead.custom_fields_values)}</td></tr>
<tr><th>Move</th><td>{_move_form(lead, pipeline, acting, back)}</td></tr>
</table>
<h2>Contacts</h2>{table(["Name", "Details"], "".join(contact_rows), "No contacts.")}
<h2>Catalog elements</h2>{table(["Element", "List", "Fields"], "".join(element_rows), "No catalog elements.")}
<h2>Tasks</h2>{table(["Task", "Due", "State", "Responsible"], task_rows, "No tasks.")}
<h2>Notes</h2>{table(["Date", "Type", "Text"], note_rows, "No notes.")}
"""
    return html_response(layout(lead.name, body))


def move(store: SandboxStore, request: Request, account: Account, lead_id: int) -> Response:
    form = request.form()
    lead = account.leads.get(lead_id)
    if lead is None or lead.is_deleted:
        return html_response(layout("Not found", "<p>No such deal.</p>"), 404)
    status_id = as_int(form.get("status_id")) if form.get("status_id", "").isdigit() else None
    if status_id is None:
        return html_response(layout("Bad request", "<p>Choose a stage.</p>"), 400)
    try:
        move_lead(store, account, lead, status_id, _acting_user(account, form.get("as")))
    except ApiError as error:
        return html_response(layout("Bad request", f"<p>{escape(error.detail)}</p>"), 400)
    back = form.get("back", "")
    return redirect(back if back.startswith("/board") else "/board")


def handle(store: SandboxStore, request: Request, account: Account) -> Response:
    with store.lock:
        if request.path.rstrip("/") == "/board" and request.method == "GET":
            return board_page(store, request, account)
        match = LEAD_PATH.match(request.path)
        if match and request.method == "GET":
            return lead_page(store, request, account, int(match["id"]))
        match = MOVE_PATH.match(request.path)
        if match and request.method == "POST":
            return move(store, request, account, int(match["id"]))
    return html_response(layout("Not found", "<p>Not found.</p>"), 404)
