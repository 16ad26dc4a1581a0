"""The gates follow the stage history through ``apps.kommo.signals``: every new move, whatever reported
it, is looked at; the evaluation itself runs in a worker, never in the request or transaction that
recorded the move.

- ``stage_changed``: the move is queued (a :class:`GateEvaluation`). A move recorded by webhook
  processing (it comes with its ``batch``) is evaluated when the batch is committed, in the same task;
  any other is evaluated by ``evaluate_pending``, scheduled when the recording transaction commits.
- ``stage_changes_committed``: webhook processing committed a batch: its moves are evaluated at once,
  on the deals it has just re-fetched, and the moves back that are due are sent.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from apps.gates.models import GateEvaluation
from apps.gates.services import BATCH_WINDOW_SECONDS, gate_evaluation_starts_batch, stage_change_gate_intake
from apps.kommo.models import StageChange
from apps.kommo.services.mirror import StageChangeBatch

logger = logging.getLogger(__name__)


def gates_on_stage_changed(
    sender: object, *, stage_change: StageChange, batch: StageChangeBatch | None = None, **kwargs: Any
) -> None:
    evaluation = stage_change_gate_intake(stage_change=stage_change, batch=batch)
    if evaluation is not None and batch is None:
        transaction.on_commit(lambda: _schedule(evaluation))


def gates_on_stage_changes_committed(sender: object, *, batch: StageChangeBatch, **kwargs: Any) -> None:
    from apps.gates.tasks import enforce_now, evaluate_pending

    queued = GateEvaluation.objects.filter(
        stage_change__in=[change.pk for change in batch.stage_changes], status=GateEvaluation.Status.PENDING
    )
    if not queued.exists():
        return
    try:
        enforce_now(batch.account.pk)
    except Exception:
        # The moves stay queued: the task takes them over (and the sweeper, if that is lost too).
        evaluate_pending.apply_async((batch.account.pk,), countdown=BATCH_WINDOW_SECONDS)
        raise


def _schedule(evaluation: GateEvaluation) -> None:
    from apps.gates.tasks import evaluate_pending

    if gate_evaluation_starts_batch(evaluation=evaluation):
        evaluate_pending.apply_async((evaluation.account_id,), countdown=BATCH_WINDOW_SECONDS)
