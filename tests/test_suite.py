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


def test_every_test_has_a_timeout_that_fails_only_the_test(
    pytestconfig: pytest.Config,
) -> None:
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert float(pytestconfig.getini("timeout")) == 60
    assert pytestconfig.getini("timeout_method") == "signal"


def test_a_hanging_test_fails_by_name_and_the_run_goes_on(
    pytestconfig: pytest.Config, tmp_path: Path
) -> None:
    # The suite's own configuration, with only the limit shortened.
    (tmp_path / "test_hang.py").write_text(
        "import threading\n\n"
        "def test_waits_forever():\n"
        "    threading.Event().wait()\n\n"
        "def test_after_the_hang():\n"
        "    pass\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(pytestconfig.inipath),
            "--rootdir",
            str(tmp_path),
            "-p",
            "no:cacheprovider",
            "-p",
            "no:django",
            "-o",
            "timeout=1",
            str(tmp_path / "test_hang.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 1, result.stdout
    assert "FAILED test_hang.py::test_waits_forever - Failed: Timeout" in result.stdout
    assert "1 failed, 1 passed" in result.stdout
