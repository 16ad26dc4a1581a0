"""Recorded Kommo payloads (tests/fixtures/kommo/api/), loaded by file name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parents[1] / "fixtures" / "kommo" / "api"


def payload(name: str) -> Any:
    return json.loads((FOLDER / name).read_text(encoding="utf-8"))


def text(name: str) -> str:
    return (FOLDER / name).read_text(encoding="utf-8")
