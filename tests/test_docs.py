"""The docs say what the code does: the settings table, the testing page."""

from __future__ import annotations

import ast
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


TESTING_PAGE = README.parent / "docs" / "testing.md"
EXAMPLES = Path(__file__).with_name("test_docs_examples.py")


def function_bodies(source: str) -> dict[str, list[str]]:
    """Each function's statements as ASTs, but for setting the email backend.

    The test module sets it for the running Django version; the page shows
    both settings.
    """
    return {
        node.name: [
            ast.dump(statement)
            for statement in node.body
            if not re.search(r"EMAIL_BACKEND|use_backend", ast.unparse(statement))
        ]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef)
    }


def test_the_testing_page_shows_the_code_its_examples_test_runs() -> None:
    """Each function on the page is in tests/test_docs_examples.py, as shown."""
    page = TESTING_PAGE.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    shown = {
        name: body for block in blocks for name, body in function_bodies(block).items()
    }
    tested = function_bodies(EXAMPLES.read_text(encoding="utf-8"))
    assert len(shown) == 8
    assert [name for name, body in shown.items() if tested.get(name) != body] == []
