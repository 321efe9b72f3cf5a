"""The README's settings table and conf.py name the same settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from django_live_oauth_mail.conf import DEFAULTS

pytestmark = pytest.mark.offline

README = Path(__file__).resolve().parent.parent / "README.md"


def documented_settings() -> set[str]:
    text = README.read_text(encoding="utf-8")
    table = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def test_every_setting_is_documented_and_every_documented_one_exists() -> None:
    documented = documented_settings()
    assert documented == set(DEFAULTS), (
        f"in conf.py only: {sorted(set(DEFAULTS) - documented)}; "
        f"in the README only: {sorted(documented - set(DEFAULTS))}"
    )
