"""What lets the suite run on several pytest-xdist workers at once: ports and folders of their own."""

from tests.support import services
from tests.support.services import ROOT, free_port, python_run


def test_under_xdist_each_worker_takes_ports_from_a_range_of_its_own_below_the_ephemeral_range(monkeypatch):
    monkeypatch.setattr(services, "_handed_out", set())
    ranges = []
    for worker in ("gw0", "gw1", "gw5"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        ports = {free_port() for _ in range(20)}
        assert len(ports) == 20  # never the same port twice in one worker
        ranges.append((min(ports), max(ports)))
    assert all(20000 <= low and high < 32768 for low, high in ranges)
    (low0, high0), (low1, high1), (low5, high5) = ranges
    assert high0 < low1 and high1 < low5
    assert 20000 <= low0 and high0 < 20500 and 22500 <= low5 and high5 < 23000


def test_one_process_alone_takes_any_free_port(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)

    assert 0 < free_port() < 65536


def test_each_xdist_worker_and_its_processes_keep_their_files_in_a_folder_of_their_own():
    code = "from django.conf import settings; print(settings.RUN_DIR)"
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.test", "PYTEST_XDIST_WORKER": "gw3"}
    result = python_run(f"import django; django.setup(); {code}", env=env)

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(ROOT / ".run" / "test-gw3")
