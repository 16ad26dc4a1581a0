"""The portal's data paths, each one function that reads top to bottom, above the apps it calls.

A change in Kommo reaches the portal's tables and comes back to Kommo through four apps: the Kommo
boundary (``apps.kommo``: re-fetch, mirror, stage history, outbound queue), the stakeholders, the gates,
and the Kommo boundary again (the writes). The apps are layered so that none imports one above it; the
functions here call them in order, so the path is read in one place instead of being followed through
signals and hooks:

* ``webhooks.webhook_batch`` — a batch of webhook deliveries: parse → re-fetch → upsert the mirror →
  derive the stakeholders → record the moves → queue them for the gates → (committed) evaluate the gates
  and send the moves back, tasks and notes that are due.
* ``sync.account_sync``, ``sync.account_events_sweep`` — Kommo's listings and events log into the mirror,
  each page's writes followed, in their transaction, by the stakeholders and the gates
  (``sync.mirror_follow``, given to the writers as ``follow``); the touches the sweep reads and the past
  field changes the history backfill reads given to the stakeholders (``sync.touches_follow``,
  ``sync.field_changes_follow``, given to them as ``touches_follow`` and ``field_changes_follow``).
* ``intake.intake_submission_process`` — a stored intake submission: dedupe its people → ``leads/complex``
  → upsert the mirror → derive the stakeholders → queue any new move for the gates (``intake_follow``).
* ``gates.gates_run_now`` — evaluate an account's pending moves and send what the outbound plan says is
  due, scheduling what follows (the ``evaluate_pending`` task, and the moves other sources record).

The entry points are here too: the Celery tasks (``tasks``, under their old names) and ``kommo_sync``
(``management/commands``). The admin's "Sync now", resync and "Backfill history" stay on kommo's admin,
which is given the sync's follow-up when the apps are ready (``apps.FlowsConfig.ready``). Nothing the
Kommo boundary writes or reads reaches the apps above through a signal: every writer, the sweep and the
backfill are given what follows them as parameters, and fail when called without it.

Who made the changes is a parameter too: each flow passes a ``Provenance`` (``apps.kommo.provenance``:
``webhook``, ``sync``, ``intake``; a manager's page passes ``manager`` with the user) to the stakeholders'
services, which record it in their history; it is a required argument of every one of them.

No app imports this package (``lint-imports``: it is the top layer).
"""
