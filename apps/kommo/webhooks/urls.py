from django.urls import path

from apps.kommo.webhooks.views import kommo_webhook

app_name = "kommo_webhooks"

urlpatterns = [
    path("<str:token>/", kommo_webhook, name="receive"),
]
