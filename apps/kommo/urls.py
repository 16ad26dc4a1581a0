from django.urls import path

from apps.kommo import views

app_name = "kommo"

urlpatterns = [
    path("oauth/callback/", views.oauth_callback, name="oauth-callback"),
]
