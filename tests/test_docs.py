"""The docs say what the code does: the settings table, the testing page."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from django_live_oauth_mail.conf import SETTINGS

pytestmark = pytest.mark.offline

README = Path(__file__).resolve().parent.parent / "README.md"


class Row(NamedTuple):
    default: Any
    meaning: str


def settings_table() -> dict[str, Row]:
    """Each setting in the README's table, in its order, with its row.

    A row may name several settings, with one default for all or one each.
    "(required)" is an empty default: the checks say it is unset.
    """
    text = README.read_text(encoding="utf-8")
    table = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, Row] = {}
    for line in table.splitlines():
        if line.startswith("| `"):
            names_cell, default_cell, meaning = line.split("|")[1:4]
            names = re.findall(r"`([A-Z][A-Z0-9_]+)`", names_cell)
            if default_cell.strip().startswith("(required"):
                defaults = [""]
            else:
                defaults = [value(v) for v in re.findall(r"`([^`]+)`", default_cell)]
            if len(defaults) == 1:
                defaults *= len(names)
            for name, default in zip(names, defaults, strict=True):
                documented[name] = Row(default, meaning)
    return documented


def value(written: str) -> Any:
    """A default as the README writes it: a Python literal, or a bare string."""
    try:
        return ast.literal_eval(written)
    except (ValueError, SyntaxError):
        return written


def test_the_settings_table_lists_every_declared_setting_in_order() -> None:
    assert list(settings_table()) == list(SETTINGS)


def test_the_settings_table_gives_each_declared_default() -> None:
    table = settings_table()
    wrong = {
        name: (table[name].default, setting.default)
        for name, setting in SETTINGS.items()
        if name in table and table[name].default != setting.default
    }
    assert wrong == {}, "README default, declared default"


def test_the_settings_table_names_each_django_fallback() -> None:
    table = settings_table()
    fallbacks = {name: s.django for name, s in SETTINGS.items() if s.django}
    assert fallbacks, "the declaration has Django fallbacks"
    unnamed = [n for n, django in fallbacks.items() if django not in table[n].meaning]
    assert unnamed == []


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
