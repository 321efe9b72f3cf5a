"""The package's shape: no module over 400 lines (lint-imports holds the layers).

Issue #24: a module that grows past this has grown a second job; split it.
Migrations are generated, so they are left out.
"""

from __future__ import annotations

import re
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


def test_every_top_level_module_is_in_a_layer() -> None:
    # A module outside the layers contract could import anything: lint-imports
    # checks only what the contract names.
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    block = re.search(
        r'type = "layers"\ncontainers = \["django_live_oauth_mail"\]\n'
        r"layers = \[(.*?)\n\]",
        pyproject.read_text(),
        re.S,
    )
    assert block is not None
    layered = set(re.findall(r"[a-z_]+", " ".join(re.findall(r'"(.*?)"', block[1]))))
    top_level = {
        path.stem if path.suffix == ".py" else path.name
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" or (path / "__init__.py").exists())
        and path.name not in ("__init__.py", "migrations")
    }
    assert top_level - layered == set()
