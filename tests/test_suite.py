"""The suite itself: it tests the installed package, and offline tests start no
server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import django_live_oauth_mail
import tests

from .conftest import CLOSED_PORT

pytestmark = pytest.mark.offline


def test_the_package_under_test_is_not_the_checkout() -> None:
    if os.environ.get(tests.ALLOW_CHECKOUT):
        pytest.skip(f"{tests.ALLOW_CHECKOUT} is set: testing the checkout")
    imported = Path(django_live_oauth_mail.__file__).resolve().parent
    assert imported != tests.CHECKOUT / "django_live_oauth_mail"
    assert "site-packages" in imported.parts


def test_importing_the_tests_from_the_checkout_is_refused() -> None:
    env = {k: v for k, v in os.environ.items() if k != tests.ALLOW_CHECKOUT}
    env["PYTHONPATH"] = str(tests.CHECKOUT)
    result = subprocess.run(
        [sys.executable, "-c", "import tests"],
        cwd=tests.CHECKOUT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "not the installed package" in result.stderr
    assert tests.ALLOW_CHECKOUT in result.stderr

    env[tests.ALLOW_CHECKOUT] = "1"
    allowed = subprocess.run(
        [sys.executable, "-c", "import tests"], cwd=tests.CHECKOUT, env=env
    )
    assert allowed.returncode == 0


def test_an_offline_test_gets_no_server_and_a_closed_network(
    request: pytest.FixtureRequest, live_settings: dict[str, object]
) -> None:
    assert not {"_identity_platform", "_smtp_server", "_graph_server"} & set(
        request.fixturenames
    )
    assert live_settings["SMTP_PORT"] == CLOSED_PORT
    assert str(live_settings["AUTHORITY"]).startswith(
        f"https://127.0.0.1:{CLOSED_PORT}/"
    )
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", CLOSED_PORT), timeout=5)
