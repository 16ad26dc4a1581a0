from django.urls import path

from apps.kommo.webhooks.views import KommoWebhookView

app_name = "kommo_webhooks"

urlpatterns = [
    path("<str:token>/", KommoWebhookView.as_view(), name="receive"),
]
