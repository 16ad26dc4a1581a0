"""A lead submitted to the intake API, from the stored submission to the portal's tables.

The intake's task (``apps.intake.tasks.intake_submission_process_task``, in :mod:`apps.flows.tasks`) runs
:func:`intake_submission_process` for a stored submission: the intake dedupes its people (the mirror,
then Kommo's search), creates the deal with ``POST /leads/complex``, fills and links, and upserts the
mirror from what Kommo answered; each of those mirror writes is followed, in its transaction, by the
stakeholders derived for the deals whose rows changed and the new moves queued for the gates
(:data:`intake_follow`: the sync's follow-up, made by intake: the stakeholders' history says ``intake``).
"""

from __future__ import annotations

from apps.flows.sync import mirror_follow_as
from apps.intake.services import intake_submission_run
from apps.kommo.provenance import MirrorSource, Provenance
from apps.kommo.services.mirror import MirrorFollow

# What follows each of intake's mirror writes, inside its transaction.
intake_follow: MirrorFollow = mirror_follow_as(Provenance(MirrorSource.INTAKE))


def intake_submission_process(*, submission_id: int) -> bool:
    """One stored submission: dedupe its people → ``leads/complex`` → upsert the mirror → derive the
    stakeholders → queue the moves for the gates. Returns False when another worker has it or it is not
    waiting; a transient Kommo error is raised for the task to retry (see ``intake_submission_run``)."""
    return intake_submission_run(submission_id=submission_id, follow=intake_follow)
