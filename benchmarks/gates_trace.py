"""Imported into the gate benchmark's worker with ``--trace`` (``celery worker -I``).

* The outbound plan logs its decision on the moves back (DEBUG), which the benchmark counts; the worker's
  own ``-l INFO`` sets the root logger's level only.
* With ``GATES_BENCH_PROFILE=DIR`` in the environment, every task the worker runs is profiled (cProfile)
  into ``DIR/<task>-<pid>-<task id>.prof``; ``python -m pstats`` or ``pstats.Stats(*files)`` adds them up.
"""

from __future__ import annotations

import cProfile
import logging
import os
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, task_prerun

logging.getLogger("apps.kommo.services.outbound").setLevel(logging.DEBUG)

PROFILE_DIR = os.environ.get("GATES_BENCH_PROFILE")
_running: dict[str, cProfile.Profile] = {}


def _start(task_id: str = "", **kwargs: Any) -> None:
    profile = cProfile.Profile()
    _running[task_id] = profile
    profile.enable()


def _stop(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    profile = _running.pop(task_id, None)
    if profile is None:
        return
    profile.disable()
    name = getattr(task, "name", "task").rsplit(".", 1)[-1]
    profile.dump_stats(str(Path(PROFILE_DIR or ".") / f"{name}-{os.getpid()}-{task_id}.prof"))


if PROFILE_DIR:
    task_prerun.connect(_start, weak=False)
    task_postrun.connect(_stop, weak=False)
