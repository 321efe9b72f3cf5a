"""The example site against hostile visitors, over HTTP (no browser needed).

It runs ``example_project/manage.py demo`` (tests/example_site.py) and
checks what an attacker could reach without JavaScript: header-unsafe form
input is a form error, never a 500 nor a queued message; the Dev inbox shows
a user only the mail they sent, and only staff may switch SMTP AUTH; the
anonymous contact form is rate-limited. Marked ``browser``: these run in
tox's browser env, the one with the example's dependencies.
"""

from __future__ import annotations

import html
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.example_site import DEMO_USER, DemoSite, Visitor, run_demo

pytestmark = pytest.mark.browser

PERSONAL = "ada@outlook.com"
WORK = "grace@contoso.com"
SITE_MAILBOX = "noreply@contoso.com"
NOT_STAFF = ("ines", "ines-password")
#: What str.splitlines() splits on that Django 5.2's own header check misses.
LINE_BREAKS = ["\x85", "\u2028", "\x0b"]


@pytest.fixture(autouse=True)
def live_settings() -> None:
    """Replace conftest's autouse fixture: the site runs in its own process,
    with its own stand-ins and database, so nothing is needed in this one."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    with run_demo(tmp_path_factory.mktemp("example_site")) as demo:
        demo.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User; "
            f"User.objects.create_user({NOT_STAFF[0]!r}, password={NOT_STAFF[1]!r})",
        )
        yield demo


def _signed_in(site: DemoSite, user: tuple[str, str], mailbox: str) -> Visitor:
    visitor = Visitor(site)
    visitor.sign_in(*user)
    visitor.link(mailbox)
    return visitor


@pytest.fixture(scope="module")
def staff(site: DemoSite) -> Visitor:
    """The demo user, who is staff, with Ada's mailbox linked."""
    return _signed_in(site, DEMO_USER, PERSONAL)


@pytest.fixture(scope="module")
def not_staff(site: DemoSite) -> Visitor:
    """A user who is not staff, with Grace's mailbox linked."""
    return _signed_in(site, NOT_STAFF, WORK)


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", page))


def _inbox_subjects(visitor: Visitor) -> list[str]:
    page = visitor.get("/dev/inbox/").text
    found = re.findall(r'<h2 data-field="subject">(.*?) <span class="pill">', page)
    return [html.unescape(subject) for subject in found]


def _compose(visitor: Visitor, sender: str, subject: str, **kwargs: object) -> str:
    sent = visitor.post(
        "/compose/",
        {"sender": sender, "to": "someone@example.com", "subject": subject}
        | {"body": "Hello."},
        **kwargs,  # type: ignore[arg-type]
    )
    assert sent.status_code == 200, sent.text[-2000:]
    return _text(sent.text)


# -- header-unsafe input -----------------------------------------------------------


@pytest.mark.parametrize("line_break", LINE_BREAKS, ids=ascii)
def test_contact_form_refuses_a_name_with_a_line_break_as_a_form_error(
    site: DemoSite, line_break: str
) -> None:
    queued = site.queued()

    page = Visitor(site).post(
        "/contact/",
        {
            "name": f"Mallory{line_break}Bcc: victim@example.org",
            "email": "mallory@example.com",
            "message": "Hello.",
        },
    )

    assert page.status_code == 200
    assert "Enter this on one line" in _text(page.text)
    assert site.queued() == queued


def test_compose_refuses_an_attachment_whose_content_type_has_no_slash(
    site: DemoSite, staff: Visitor
) -> None:
    received = _inbox_subjects(staff)

    page = _compose(
        staff,
        PERSONAL,
        "A file with a broken content type",
        files={"attachment": ("note.txt", b"Hello.\n", "textplain")},
    )

    assert "'textplain', which is not of the form type/subtype" in page
    assert _inbox_subjects(staff) == received


@pytest.mark.parametrize("line_break", LINE_BREAKS, ids=ascii)
def test_compose_refuses_a_subject_with_a_line_break_as_a_form_error(
    site: DemoSite, staff: Visitor, line_break: str
) -> None:
    received = _inbox_subjects(staff)

    page = _compose(staff, PERSONAL, f"Hello{line_break}Bcc: victim@example.org")

    assert "Enter this on one line" in page
    assert _inbox_subjects(staff) == received


# -- the Dev inbox ---------------------------------------------------------------


def test_dev_inbox_shows_a_user_who_is_not_staff_only_the_mail_they_sent(
    site: DemoSite, staff: Visitor, not_staff: Visitor
) -> None:
    assert "Sent" in _compose(staff, PERSONAL, "From staff: private")
    assert "Sent" in _compose(not_staff, WORK, "From Ines")

    assert _inbox_subjects(not_staff) == ["From Ines"]
    assert 'data-scope="yours"' in not_staff.get("/dev/inbox/").text
    # Staff see everything, newest first.
    assert _inbox_subjects(staff)[:2] == ["From Ines", "From staff: private"]


def test_only_staff_may_switch_smtp_auth(
    site: DemoSite, staff: Visitor, not_staff: Visitor
) -> None:
    def smtp_auth(page: str) -> str:
        row = re.search(
            rf'<tr data-mailbox="{re.escape(SITE_MAILBOX)}">.*?'
            r'data-field="smtp-auth">(.*?)</td>',
            page,
            re.DOTALL,
        )
        assert row is not None, page[-3000:]
        return row.group(1)

    def switch(visitor: Visitor, state: str) -> requests.Response:
        return visitor.post(
            "/dev/smtp-auth/",
            {"mailbox": SITE_MAILBOX, "smtp_auth": state},
            page="/dev/inbox/",
        )

    assert 'id="smtp-auth"' not in not_staff.get("/dev/inbox/").text
    assert switch(not_staff, "off").status_code == 403
    assert smtp_auth(staff.get("/dev/inbox/").text) == "on"

    assert smtp_auth(switch(staff, "off").text) == "<strong>off</strong>"
    assert smtp_auth(switch(staff, "on").text) == "on"


# -- rate limits -----------------------------------------------------------------


def test_contact_form_refuses_messages_over_the_visitor_and_site_limits(
    tmp_path: Path,
) -> None:
    # Two visitors need two addresses: Linux answers on all of 127.0.0.0/8,
    # macOS only on 127.0.0.1 unless given an alias.
    for address in ("127.0.0.2", "127.0.0.3"):
        try:
            with socket.socket() as probe:
                probe.bind((address, 0))
        except OSError:
            pytest.skip(f"this machine has no loopback address {address}")
    # Periods of a year: a window boundary cannot fall inside the test.
    with run_demo(
        tmp_path,
        CONTACT_LIMIT_PER_VISITOR="3/365d",
        CONTACT_LIMIT_SITE_WIDE="5/365d",
    ) as site:
        first, second = Visitor(site, "127.0.0.2"), Visitor(site, "127.0.0.3")

        def write(visitor: Visitor, number: int) -> tuple[int, str]:
            page = visitor.post(
                "/contact/",
                {
                    "name": f"Visitor {number}",
                    "email": "visitor@example.com",
                    "message": f"Message number {number}.",
                },
                allow_redirects=False,
            )
            return page.status_code, _text(page.text)

        answers = [write(first, number) for number in range(1, 5)]
        assert [status for status, _ in answers] == [302, 302, 302, 429]
        refused = answers[-1][1]
        assert "Too many messages from you just now" in refused
        assert "Message number 4." in refused  # what was typed is kept

        answers = [write(second, number) for number in range(5, 8)]
        assert [status for status, _ in answers] == [302, 302, 429]
        assert "Too many messages reached the site just now" in answers[-1][1]

        assert site.queued() == 5
