"""The report pages: one module per page, each registering its build function with
:func:`apps.reports.framework.report_register`. Every module of this package is imported when the app is
ready, so a new page needs no list to be edited."""

from __future__ import annotations

import importlib
import pkgutil


def pages_discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
