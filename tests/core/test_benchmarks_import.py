"""`make bench` runs each benchmark as ``python -m benchmarks.<name>``, a process in which Django is set up
by the benchmark itself: a module that imports the portal's models at its top fails before it starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The runnable ones (the URL confs and settings modules are loaded by Django inside a benchmark's process).
BENCHMARKS = sorted(
    path.stem
    for path in (ROOT / "benchmarks").glob("*.py")
    if path.stem not in {"__init__", "__main__"} and not path.stem.endswith(("_urls", "_settings"))
)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_module_imports_before_django_is_set_up(name: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", f"import benchmarks.{name}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
