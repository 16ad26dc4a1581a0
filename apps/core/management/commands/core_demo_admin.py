from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

DEMO_USERNAME = "admin"
DEMO_PASSWORD = "admin"  # noqa: S105  (printed to the console on purpose: a local demo login)


class Command(BaseCommand):
    help = "Creates (or resets) the local demo superuser and prints its login. Refused outside DEBUG."

    def handle(self, *args: object, **options: object) -> None:
        if not settings.DEBUG:
            raise CommandError("The demo admin is for local development only (DEBUG is off).")
        user, created = get_user_model().objects.get_or_create(username=DEMO_USERNAME)
        user.is_staff = user.is_superuser = True
        user.email = "admin@example.com"
        user.set_password(DEMO_PASSWORD)
        user.save()
        user.groups.add(*Group.objects.filter(name="Sales ops"))
        verb = "Created" if created else "Reset"
        self.stdout.write(self.style.SUCCESS(f"{verb} demo admin — login: {DEMO_USERNAME} / {DEMO_PASSWORD}"))
