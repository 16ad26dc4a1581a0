"""The gates follow the stage history through ``apps.kommo.signals.stage_changed``: every new move,
whatever reported it, is looked at; the evaluation itself runs in the worker, never in the request or
transaction that recorded the move."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.gates.models import GateEvaluation
from apps.gates.services import BATCH_WINDOW_SECONDS, gate_evaluation_starts_batch, stage_change_gate_intake
from apps.kommo.models import StageChange


def gates_on_stage_changed(sender: object, *, stage_change: StageChange, **kwargs: Any) -> None:
    evaluation = stage_change_gate_intake(stage_change=stage_change)
    if evaluation is not None:
        transaction.on_commit(lambda: _schedule(evaluation))


def _schedule(evaluation: GateEvaluation) -> None:
    from apps.gates.tasks import evaluate_pending

    if gate_evaluation_starts_batch(evaluation=evaluation):
        evaluate_pending.apply_async((evaluation.account_id,), countdown=BATCH_WINDOW_SECONDS)
