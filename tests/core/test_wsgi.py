"""The WSGI module gunicorn's workers import."""

from tests.support.services import python_run


def test_a_worker_loads_the_urlconf_and_the_views_when_it_starts_not_in_its_first_request():
    result = python_run(
        "import sys\n"
        "import config.wsgi\n"
        "print('config.urls' in sys.modules, 'apps.kommo.webhooks.views' in sys.modules)\n",
        env={"DJANGO_SETTINGS_MODULE": "config.settings.test"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
