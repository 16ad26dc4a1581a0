from django.urls import path

from apps.intake import views

app_name = "intake"

urlpatterns = [
    path("leads", views.IntakeLeadCreateView.as_view(), name="lead-create"),
    path(
        "submissions/<int:submission_id>",
        views.IntakeSubmissionDetailView.as_view(),
        name="submission-detail",
    ),
]
