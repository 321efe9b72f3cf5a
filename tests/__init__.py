"""The test suite. It tests the installed package, never this checkout.

tox installs the built wheel and runs pytest where only a link to ``tests/``
is importable (see tox.ini), so a file missing from the wheel fails here. The
guard below makes that rule hold in every process that imports the tests, the
task workers the suite starts included; conftest.py checks the imported
package again once it is loaded.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
ALLOW_CHECKOUT = "LIVE_OAUTH_MAIL_TEST_CHECKOUT"


def refuse_checkout(origin: str | None) -> None:
    """Raise if ``origin`` (the package's ``__init__.py``) is the checkout's."""
    if origin is None or os.environ.get(ALLOW_CHECKOUT):
        return
    if Path(origin).resolve().parent == CHECKOUT / "django_live_oauth_mail":
        raise ImportError(
            f"The tests import django_live_oauth_mail from the checkout "
            f"({CHECKOUT}), not the installed package. Run them through tox "
            f"(make test, make test-fast), or set {ALLOW_CHECKOUT}=1 to test "
            f"the checkout on purpose."
        )


_spec = find_spec("django_live_oauth_mail")
refuse_checkout(_spec.origin if _spec else None)
