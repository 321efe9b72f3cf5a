"""The example project (``example_project/manage.py demo``) as a subprocess.

Each run has its own SQLite file and free ports for the site and the
stand-ins, and never the developer's real credentials. :class:`Visitor` talks
to it over HTTP as a browser without JavaScript would: cookies, CSRF tokens,
and the stand-in consent page's forms.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from django_live_oauth_mail.testing import find_free_port

REPO = Path(__file__).resolve().parent.parent
MANAGE = REPO / "example_project" / "manage.py"
STARTUP_TIMEOUT = 30.0
#: The staff user `manage.py demo` creates (example_project/mailsite/settings.py).
DEMO_USER = ("demo", "demo-password")


@dataclass
class DemoSite:
    url: str
    identity_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    database: Path
    env: Mapping[str, str]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def queued(self) -> int:
        """How many messages the site has queued, ever (what its database holds)."""
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM live_oauth_mail_outboundmessage"
            ).fetchone()
        return int(count)

    def manage(self, *args: str) -> str:
        """Run a manage.py command against the site's database; its output."""
        return subprocess.run(
            [sys.executable, str(MANAGE), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = find_free_port()
        if port not in ports:
            ports.append(port)
    return ports


@contextlib.contextmanager
def run_demo(tmp: Path, **settings: str) -> Iterator[DemoSite]:
    """Start ``manage.py demo`` in ``tmp``; ``settings`` are its environment."""
    site_port, identity_port, smtp_port, pages_port, graph_port = _free_ports(5)
    database = tmp / "db.sqlite3"
    env = {
        **os.environ,
        # Real variables win over example_project/.env, so a developer's real
        # credentials there can never be used by these tests.
        "LIVE_OAUTH_MAIL_CLIENT_ID": "",
        "LIVE_OAUTH_MAIL_CLIENT_SECRET": "",
        "DATABASE_URL": f"sqlite:///{database}",
        "CACHE_URL": "",
        "DEMO_IDENTITY_PORT": str(identity_port),
        "DEMO_SMTP_PORT": str(smtp_port),
        "DEMO_PAGES_PORT": str(pages_port),
        "DEMO_GRAPH_PORT": str(graph_port),
        "DEBUG": "true",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
        **settings,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)  # pytest-django set tests.settings
    log_path = tmp / "demo.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                str(MANAGE),
                "demo",
                "--port",
                str(site_port),
                "--noinput",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    site = DemoSite(
        url=f"http://127.0.0.1:{site_port}",
        # The consent page a browser sees is plain HTTP: no certificate to
        # click through (the token endpoint stays on HTTPS for msal).
        identity_url=f"http://127.0.0.1:{pages_port}/",
        process=process,
        log_path=log_path,
        database=database,
        env=env,
    )
    try:
        _wait_until_up(site)
        yield site
    finally:
        process.terminate()  # SIGTERM: the demo command stops its stand-ins
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(site: DemoSite) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if site.process.poll() is not None:
            pytest.fail(f"manage.py demo exited early:\n{site.log()}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(site.url + "/", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"manage.py demo did not answer in time:\n{site.log()}")
        time.sleep(0.2)


class _SourceAddress(requests.adapters.HTTPAdapter):
    """Connects from another loopback address: another visitor to the site."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


class Visitor:
    """One browser's worth of cookies, from one address (127.0.0.1 by default)."""

    def __init__(self, site: DemoSite, address: str = "127.0.0.1") -> None:
        self.site = site
        self.http = requests.Session()
        self.http.mount("http://", _SourceAddress(address))

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.site.url + path, timeout=20)

    def post(
        self, path: str, data: Mapping[str, str], *, page: str = "", **kwargs: Any
    ) -> requests.Response:
        """POST ``data`` to ``path`` as a form on ``page`` (default: ``path``) would,
        with that page's CSRF token."""
        token = _hidden_fields(self.get(page or path).text)["csrfmiddlewaretoken"]
        return self.http.post(
            self.site.url + path,
            data={"csrfmiddlewaretoken": token, **data},
            timeout=20,
            **kwargs,
        )

    def sign_in(self, username: str, password: str) -> None:
        page = self.post(
            "/accounts/login/", {"username": username, "password": password}
        )
        assert 'id="sign-out"' in page.text, page.text[-2000:]

    def link(self, email: str) -> None:
        """Link ``email`` through the stand-in consent page, as a person would."""
        consent = self.post("/mail/connect/", {})
        assert consent.url.startswith(self.site.identity_url), consent.url
        action, fields = _form(consent)
        answer = self.http.post(action, data={**fields, "identity": email}, timeout=20)
        if answer.url.startswith(self.site.identity_url):  # response_mode=form_post
            action, fields = _form(answer)
            answer = self.http.post(action, data=fields, timeout=20)
        assert f"{email} is linked" in html.unescape(answer.text), answer.text[-2000:]


def _form(page: requests.Response) -> tuple[str, dict[str, str]]:
    """Where the page's form posts to, and its hidden fields."""
    action = re.search(r'<form method="post" action="([^"]*)"', page.text)
    assert action is not None, page.text[-2000:]
    return urljoin(page.url, html.unescape(action.group(1))), _hidden_fields(page.text)


def _hidden_fields(page: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    return {html.unescape(name): html.unescape(value) for name, value in found}
