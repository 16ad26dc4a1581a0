from django.urls import path

from apps.reports.export import views

app_name = "export"

urlpatterns = [path("<str:table>", views.ExportView.as_view(), name="table")]
