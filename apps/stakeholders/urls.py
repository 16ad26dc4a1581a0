from django.urls import path

from apps.stakeholders import views

app_name = "stakeholders"

urlpatterns = [
    path("", views.deal_list, name="deal_list"),
    path("<int:deal_id>/", views.deal_detail, name="deal_detail"),
    path("<int:deal_id>/stakeholders/", views.stakeholder_add, name="stakeholder_add"),
    path(
        "<int:deal_id>/stakeholders/<int:stakeholder_id>/",
        views.stakeholder_update,
        name="stakeholder_update",
    ),
    path(
        "<int:deal_id>/stakeholders/<int:stakeholder_id>/approval-request/",
        views.approval_request,
        name="approval_request",
    ),
    path(
        "<int:deal_id>/stakeholders/<int:stakeholder_id>/objection/",
        views.objection_save,
        name="objection_save",
    ),
]
