"""Task names are the wire format: a message queued under a name before a deploy must still find its task
and its queue after it, wherever the task's code moved to."""

import pytest

from config.celery import app

KEPT = {
    # name: queue
    "apps.kommo.tasks.webhook_process": "webhooks",  # now apps.flows.tasks.webhook_process
    "apps.gates.tasks.evaluate_pending": "kommo",  # now apps.flows.gates.evaluate_pending
    "apps.gates.tasks.sweep": "kommo",  # now apps.flows.gates.sweep
    "apps.gates.tasks.outbound_flush": "kommo",  # apps.flows.gates.gates_outbound_flush
    "apps.gates.tasks.drain_outbound": "kommo",  # the old name of apps.kommo.tasks.outbound_drain
    "apps.kommo.tasks.outbound_drain": "kommo",
    "apps.kommo.tasks.outbound_flush": "kommo",
    "apps.kommo.tasks.sync_incremental": "kommo",  # the sync's and the events sweep's: now apps.flows.tasks
    "apps.kommo.tasks.sync_account": "kommo",
    "apps.kommo.tasks.sync_events": "kommo",
    "apps.kommo.tasks.sync_events_account": "kommo",
    "apps.intake.tasks.intake_submission_process_task": "kommo",  # now apps.flows.tasks
    "apps.intake.tasks.intake_submissions_sweep_task": "kommo",
}


@pytest.mark.parametrize("name", sorted(KEPT))
def test_a_task_queued_under_its_name_is_registered_and_routed_to_its_queue(name):
    app.loader.import_default_modules()

    assert name in app.tasks
    assert app.amqp.router.route({}, name)["queue"].name == KEPT[name]
