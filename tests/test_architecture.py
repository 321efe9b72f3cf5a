"""The package's shape: no module over 400 lines (lint-imports holds the layers).

Issue #24: a module that grows past this has grown a second job; split it.
Migrations are generated, so they are left out.
"""

from __future__ import annotations

from pathlib import Path

import django_live_oauth_mail

PACKAGE = Path(django_live_oauth_mail.__file__).parent
LIMIT = 400


def test_no_module_is_over_the_limit() -> None:
    sizes = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
        if "migrations" not in path.parts
    }
    assert sizes, "no modules found"
    assert {name: n for name, n in sizes.items() if n > LIMIT} == {}
