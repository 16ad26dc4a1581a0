"""`make bench` runs each benchmark as ``python -m benchmarks.<name>``, a process in which Django is set up
by the benchmark itself: a module that imports the portal's models at its top fails before it starts."""

from __future__ import annotations

import pytest

from tests.support.services import ROOT, python_run

# The runnable ones (the URL confs and settings modules are loaded by Django inside a benchmark's process).
BENCHMARKS = sorted(
    path.stem
    for path in (ROOT / "benchmarks").glob("*.py")
    if path.stem not in {"__init__", "__main__"} and not path.stem.endswith(("_urls", "_settings"))
)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_module_imports_before_django_is_set_up(name: str) -> None:
    result = python_run(f"import benchmarks.{name}", env={"DJANGO_SETTINGS_MODULE": None})
    assert result.returncode == 0, result.stderr[-2000:]
