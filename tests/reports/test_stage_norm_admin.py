"""Sales ops set a stage's usual time in the admin; the stuck-deals report uses it while the stage's history
is too thin to measure."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.reports.models import CoverageSnapshot, StageNorm
from apps.reports.selectors.stuck import stage_usual_times
from tests.reports.desk import NOW, Desk, desk

__all__ = ["desk"]
pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


def test_a_stages_usual_time_is_set_in_the_admin_and_used_by_the_report(desk: Desk, staff: Client) -> None:
    stage = desk.stages["Legal review"]
    response = staff.post("/admin/reports/stagenorm/add/", {"status": stage.pk, "usual_days": "21"})
    assert response.status_code == 302, response.content.decode()[:2000]

    assert StageNorm.objects.get().usual_days == 21
    assert stage_usual_times(account=desk.account, now=NOW)[stage.pk].days == 21.0
    listing = staff.get("/admin/reports/stagenorm/")
    assert "Legal review" in listing.content.decode()


def test_a_usual_time_of_zero_days_is_refused(desk: Desk, staff: Client) -> None:
    response = staff.post(
        "/admin/reports/stagenorm/add/", {"status": desk.stages["Legal review"].pk, "usual_days": "0"}
    )

    assert response.status_code == 200
    assert not StageNorm.objects.exists()


def test_coverage_snapshots_are_read_only_in_the_admin(desk: Desk, staff: Client) -> None:
    assert staff.get("/admin/reports/coveragesnapshot/").status_code == 200
    assert staff.get("/admin/reports/coveragesnapshot/add/").status_code == 403
    assert not CoverageSnapshot.objects.exists()
