"""The example project in headless Chromium, against the local stand-ins.

Starts ``example_project/manage.py demo`` as a subprocess (its own SQLite
file, free ports for the site and both stand-ins), then signs in, links a
mailbox through the stand-in consent page, sends a message with an attachment
and finds it in the Dev inbox; declines consent once; finds the site's shared
mailbox in the admin; and sends the contact form, which must go out from that
shared mailbox with the visitor only in Reply-To, whatever address the
visitor types.

Chromium comes from the system (``CHROMIUM_PATH``, ``chromium`` on PATH, or
a browser playwright already has); nothing is ever downloaded. Without
playwright or Chromium the tests skip, unless ``CI=true``, where they fail.

Screenshots of every step go to ``build/screenshots/``. The few used by the
README are copied to ``docs/screenshots/`` when missing there, or always with
``LIVE_OAUTH_MAIL_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import tests
from tests.example_site import MANAGE, REPO, DemoSite, run_demo

# The first test also starts the demo site; every step may wait 10 s.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

SHOTS = REPO / "build" / "screenshots"
DOCS_SHOTS = REPO / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PERSONAL = "ada@outlook.com"
WORK = "grace@contoso.com"
ALAN = "alan@fabrikam.com"
# What `manage.py demo` links for the site and marks shared (settings.py).
SITE_MAILBOX = "noreply@contoso.com"
SITE_SENDER = f"Contoso website <{SITE_MAILBOX}>"


def _is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _unavailable(reason: str) -> None:
    if _is_ci():
        pytest.fail(f"{reason} (browser tests are required when CI=true)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def live_settings() -> None:
    """Replace conftest's autouse fixture: the site runs in its own process,
    with its own stand-ins and database, so nothing is needed in this one."""


def test_the_demo_runs_the_installed_package() -> None:
    if os.environ.get(tests.ALLOW_CHECKOUT):
        pytest.skip(f"{tests.ALLOW_CHECKOUT} is set: testing the checkout")
    # How manage.py finds it: its own directory first, then PYTHONPATH.
    found = subprocess.run(
        [sys.executable, "-c", "import django_live_oauth_mail as m; print(m.__file__)"],
        cwd=MANAGE.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found).resolve().parent != REPO / "django_live_oauth_mail"


# -- the example project, as a subprocess ----------------------------------------


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    # Every test here may send the contact form: no limit gets in the way.
    with run_demo(
        tmp_path_factory.mktemp("example_project"),
        CONTACT_LIMIT_PER_VISITOR="1000/h",
        CONTACT_LIMIT_SITE_WIDE="1000/h",
    ) as site:
        yield site


# -- the browser -----------------------------------------------------------------


def _chromium_path(playwright: Any) -> str | None:
    candidates = [
        os.environ.get("CHROMIUM_PATH"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        "/usr/bin/chromium",
    ]
    # A browser playwright installed earlier, if any (this never downloads).
    with contextlib.suppress(Exception):
        candidates.append(playwright.chromium.executable_path)
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        executable = _chromium_path(playwright)
        if executable is None:
            _unavailable(
                "no Chromium found (apt-get install chromium, or set CHROMIUM_PATH)"
            )
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Steps:
    """Takes a numbered, full-page screenshot of every step."""

    page: Any
    prefix: str
    count: int = field(default=0)

    def __post_init__(self) -> None:
        for stale in SHOTS.glob(f"{self.prefix}-*.png"):  # from earlier runs
            stale.unlink()

    def shot(self, name: str, *, docs: str | None = None) -> None:
        self.count += 1
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{self.prefix}-{self.count:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if docs and not _is_ci():
            target = DOCS_SHOTS / f"{docs}.png"
            if not target.exists() or os.environ.get(
                "LIVE_OAUTH_MAIL_UPDATE_SCREENSHOTS"
            ):
                DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # The stand-in identity platform uses a throwaway CA Chromium doesn't know.
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _sign_in(page: Any, site: DemoSite, steps: Steps) -> None:
    from playwright.sync_api import expect

    page.goto(site.url + "/accounts/login/")
    expect(page.locator("#mode-banner")).to_have_attribute("data-mode", "standins")
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo-password")
    steps.shot("sign-in")
    page.click("#sign-in-submit")
    expect(page.locator("#sign-out")).to_be_visible()


def _open(page: Any, label: str) -> None:
    page.locator(".site-nav").get_by_role("link", name=label, exact=True).click()


def _start_linking(page: Any, site: DemoSite, steps: Steps) -> None:
    from playwright.sync_api import expect

    page.click("#lom-connect")
    expect(page.locator("#lom-start")).to_have_text("Continue to Microsoft")
    steps.shot("connect")
    page.click("#lom-start")
    page.wait_for_url(re.compile("^" + re.escape(site.identity_url)))
    expect(page.locator(f'[data-identity="{PERSONAL}"]')).to_be_visible()


def _sign_out(page: Any) -> None:
    from playwright.sync_api import expect

    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()


def _ensure_linked(page: Any, site: DemoSite, steps: Steps, email: str) -> None:
    """Link ``email`` for the signed-in user through the consent page, once."""
    from playwright.sync_api import expect

    _open(page, "Mailboxes")
    if page.locator(f'tr[data-mailbox="{email}"]').count():
        return
    _start_linking(page, site, steps)
    page.click(f'[data-identity="{email}"]')
    page.wait_for_url(site.url + "/mail/")
    expect(page.locator(".lom-messages")).to_contain_text(f"{email} is linked")


def _received(page: Any, subject: str) -> Any:
    """The Dev inbox entry with ``subject``: what the SMTP stand-in accepted.

    Queued mail (the contact form's) arrives once the demo's worker sent it:
    the page is reloaded until it is there.
    """
    from playwright.sync_api import expect

    _open(page, "Dev inbox")
    mail = page.locator(
        "article.mail",
        has=page.locator('[data-field="subject"]', has_text=subject),
    )
    deadline = time.monotonic() + 20
    while mail.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.25)
        page.reload()
    expect(mail).to_have_count(1)
    return mail


def _send_contact_form(page: Any, steps: Steps, name: str, email: str) -> str:
    """Fill in and send the contact form; return the subject it will have."""
    from playwright.sync_api import expect

    _open(page, "Contact")
    expect(page.locator("#contact-sender")).to_contain_text(SITE_MAILBOX)
    expect(page.locator("#why-reply-to")).to_contain_text("SenderNotAllowed")
    page.fill("#id_name", name)
    page.fill("#id_email", email)
    page.fill("#id_message", f"Hello from {name}.")
    steps.shot("contact-form")
    page.click("#contact-send")
    expect(page.locator(".lom-messages")).to_contain_text(
        f"queued to go out from {SITE_MAILBOX} in a moment, and replies will go "
        f"to {email}"
    )
    expect(page.locator("#send-error")).to_have_count(0)
    steps.shot("contact-sent")
    return f"Contact form: {name}"


# -- the tests ---------------------------------------------------------------------


def test_declining_consent_links_nothing(demo_site: DemoSite, page: Any) -> None:
    from playwright.sync_api import expect

    steps = Steps(page, "decline")
    _sign_in(page, demo_site, steps)
    _open(page, "Mailboxes")
    linked = page.locator("tr[data-mailbox]").count()
    _start_linking(page, demo_site, steps)
    steps.shot("consent")

    page.click("#decline")
    page.wait_for_url(re.compile("^" + re.escape(demo_site.url)))
    expect(page.locator("#lom-error h1")).to_have_text("You cancelled the sign-in")
    steps.shot("declined")

    page.get_by_role("link", name="Back to your mailboxes").click()
    expect(page.locator("#lom-accounts")).to_be_visible()
    expect(page.locator("tr[data-mailbox]")).to_have_count(linked)


def test_link_send_and_read_in_dev_inbox(demo_site: DemoSite, page: Any) -> None:
    from playwright.sync_api import expect

    steps = Steps(page, "flow")
    page.goto(demo_site.url + "/")
    expect(page.locator("#mode-banner")).to_contain_text("local stand-ins")
    steps.shot("home-signed-out")

    _sign_in(page, demo_site, steps)
    expect(page.locator("#next-steps")).to_be_visible()
    steps.shot("home", docs="home")

    # 1. Link the personal mailbox through the stand-in consent page.
    _open(page, "Mailboxes")
    expect(page.locator("#lom-accounts h1")).to_have_text("Your mailboxes")
    steps.shot("mailboxes-before")
    _start_linking(page, demo_site, steps)
    steps.shot("consent", docs="consent")
    page.click(f'[data-identity="{PERSONAL}"]')
    page.wait_for_url(demo_site.url + "/mail/")
    expect(page.locator(".lom-messages")).to_contain_text(f"{PERSONAL} is linked")
    row = page.locator(f'tr[data-mailbox="{PERSONAL}"]')
    expect(row.locator(".lom-badge")).to_have_class(re.compile(r"\bactive\b"))
    expect(row.locator(".lom-badge")).to_have_text("Active")
    steps.shot("mailboxes", docs="mailboxes")

    # 2. Send a message with an attachment from it.
    _open(page, "Compose")
    sender = page.locator("#id_sender")
    sender.select_option(label=f"Ada Lovelace <{PERSONAL}>")
    page.fill("#id_to", "grace@example.com")
    page.fill("#id_subject", "Notes on the Analytical Engine")
    page.fill(
        "#id_body",
        "Hello Grace,\n\nThe notes are attached. Sent through the linked "
        "mailbox with XOAUTH2.\n\nAda",
    )
    page.set_input_files(
        "#id_attachment",
        files=[
            {
                "name": "note-g.txt",
                "mimeType": "text/plain",
                "buffer": b"Bernoulli numbers, step by step.\n",
            }
        ],
    )
    steps.shot("compose")
    page.click("#send")
    expect(page.locator(".lom-messages")).to_contain_text(
        f"from {PERSONAL} to grace@example.com"
    )
    expect(page.locator("#send-error")).to_have_count(0)
    steps.shot("sent")

    # 3. See it in the Dev inbox.
    _open(page, "Dev inbox")
    mail = page.locator("article.mail").first
    expect(mail.locator('[data-field="subject"]')).to_contain_text(
        "Notes on the Analytical Engine"
    )
    expect(mail.locator('[data-field="from"]')).to_have_text(
        f"Ada Lovelace <{PERSONAL}>"
    )
    expect(mail.locator('[data-field="to"]')).to_have_text("grace@example.com")
    expect(mail.locator('[data-field="authenticated-as"]')).to_contain_text(
        f"{PERSONAL} via XOAUTH2"
    )
    expect(mail.locator('[data-field="body"]')).to_contain_text(
        "The notes are attached."
    )
    expect(mail.locator('[data-attachment="note-g.txt"]')).to_be_visible()
    steps.shot("dev-inbox", docs="dev-inbox")

    # The home page now shows all three steps as done.
    _open(page, "Home")
    for step in ("#step-link", "#step-send", "#step-inbox"):
        expect(page.locator(step)).to_have_class(re.compile(r"\bdone\b"))
    steps.shot("home-done")


def test_a_mailbox_whose_smtp_auth_is_off_sends_through_graph(
    demo_site: DemoSite, page: Any
) -> None:
    from playwright.sync_api import expect

    steps = Steps(page, "graph")
    _sign_in(page, demo_site, steps)
    _ensure_linked(page, demo_site, steps, WORK)

    # The Exchange admin's switch, on the stand-in: SMTP AUTH off.
    _open(page, "Dev inbox")
    switch = page.locator(f'#smtp-auth tr[data-mailbox="{WORK}"]')
    expect(switch.locator('[data-field="smtp-auth"]')).to_have_text("on")
    switch.get_by_role("button", name="Turn SMTP AUTH off").click()
    expect(page.locator(".lom-messages")).to_contain_text("535 5.7.139")
    expect(switch.locator('[data-field="smtp-auth"]')).to_have_text("off")
    steps.shot("smtp-auth-off")

    _open(page, "Compose")
    page.locator("#id_sender").select_option(label=f"Grace Hopper <{WORK}>")
    page.fill("#id_to", "ada@example.com")
    page.fill("#id_subject", "Sent through Graph")
    page.fill("#id_body", "SMTP AUTH is off for this mailbox.")
    page.click("#send")
    expect(page.locator("#send-error")).to_have_count(0)
    expect(page.locator(".lom-messages")).to_contain_text(f"from {WORK}")

    mail = _received(page, "Sent through Graph")
    expect(mail.locator('[data-field="authenticated-as"]')).to_contain_text(
        f"{WORK} via graph"
    )
    # "auto" remembered the move: the mailbox now sends through Graph.
    expect(switch.locator('[data-field="sends-through"]')).to_contain_text(
        "graph (Microsoft Graph)"
    )
    steps.shot("sent-through-graph")


def _disconnect(page: Any, email: str) -> None:
    """Disconnect ``email`` on the Mailboxes page, through its question page."""
    from playwright.sync_api import expect

    _open(page, "Mailboxes")
    page.locator(f'tr[data-mailbox="{email}"] [data-action="disconnect"]').click()
    expect(page.locator("#lom-disconnect h1")).to_have_text(f"Disconnect {email}?")
    page.click("#lom-disconnect-confirm")
    expect(page.locator(".lom-messages")).to_contain_text(
        f"{email} is no longer linked"
    )
    expect(page.locator(f'tr[data-mailbox="{email}"]')).to_have_count(0)


def test_disconnect_asks_first_and_cancel_keeps_the_mailbox(
    demo_site: DemoSite, page: Any
) -> None:
    from playwright.sync_api import expect

    steps = Steps(page, "disconnect")
    _sign_in(page, demo_site, steps)
    _ensure_linked(page, demo_site, steps, ALAN)

    row = page.locator(f'tr[data-mailbox="{ALAN}"]')
    row.locator('[data-action="disconnect"]').click()
    question = page.locator("#lom-disconnect")
    expect(page).to_have_title(f"Disconnect {ALAN}? · Mail demo")
    expect(question.locator("h1")).to_have_text(f"Disconnect {ALAN}?")
    expect(question).to_contain_text(
        f"This site deletes its link to {ALAN} and the tokens it keeps for it."
    )
    expect(question).to_contain_text(f"Mail from {ALAN} stops")
    expect(question.locator("#lom-disconnect-waiting")).to_have_text(
        "No message is waiting to be sent from it."
    )
    steps.shot("question")

    question.get_by_role("link", name="Cancel").click()
    expect(page.locator("#lom-accounts")).to_be_visible()
    expect(row).to_have_count(1)
    expect(row.locator(".lom-badge")).to_have_text("Active")
    expect(page.locator(".lom-messages")).to_have_count(0)


def test_compose_keeps_the_draft_when_the_mailbox_was_disconnected_meanwhile(
    demo_site: DemoSite, page: Any
) -> None:
    from playwright.sync_api import expect

    steps = Steps(page, "draft")
    _sign_in(page, demo_site, steps)
    _ensure_linked(page, demo_site, steps, ALAN)
    _open(page, "Compose")
    page.locator("#id_sender").select_option(label=f"Alan Turing <{ALAN}>")
    page.fill("#id_to", "ada@example.com")
    page.fill("#id_subject", "On computable numbers")
    page.fill("#id_body", "A draft worth keeping.")

    # Another tab of the same session disconnects every mailbox of the user...
    other_tab = page.context.new_page()
    other_tab.goto(demo_site.url + "/")
    _open(other_tab, "Mailboxes")
    for email in other_tab.locator("tr[data-mailbox]").evaluate_all(
        "rows => rows.map(row => row.dataset.mailbox)"
    ):
        _disconnect(other_tab, email)
    other_tab.close()

    # ...so Send says why not, and keeps every typed field.
    page.click("#send")
    expect(page.locator("#send-error")).to_contain_text("Not sent.")
    expect(page.locator("#send-error-reason")).to_have_text(
        f"{ALAN} is no longer linked: it was disconnected, perhaps in another "
        "tab. Link it again, then press Send here; or choose another mailbox."
    )
    expect(page.locator("#id_sender")).to_have_value(ALAN)
    expect(page.locator("#id_sender option")).to_have_count(1)  # none can send
    expect(page.locator("#id_to")).to_have_value("ada@example.com")
    expect(page.locator("#id_subject")).to_have_value("On computable numbers")
    expect(page.locator("#id_body")).to_have_value("A draft worth keeping.")
    steps.shot("not-sent")

    # Linking it again in the new tab the page opens lets the same draft go.
    with page.context.expect_page() as opened:
        page.click("#relink")
    tab = opened.value
    expect(tab.locator("#lom-start")).to_have_text(f"Continue as {ALAN}")
    tab.click("#lom-start")
    tab.wait_for_url(re.compile("^" + re.escape(demo_site.identity_url)))
    tab.click(f'[data-identity="{ALAN}"]')
    tab.wait_for_url(demo_site.url + "/mail/")
    expect(tab.locator(".lom-messages")).to_contain_text(f"{ALAN} is linked")
    tab.close()

    page.click("#send")
    expect(page.locator(".lom-messages")).to_contain_text(
        f"from {ALAN} to ada@example.com"
    )
    expect(page.locator("#send-error")).to_have_count(0)
    mail = _received(page, "On computable numbers")
    expect(mail.locator('[data-field="body"]')).to_contain_text(
        "A draft worth keeping."
    )
    steps.shot("sent-after-relinking")


def test_admin_lists_linked_mailboxes_with_shared_column(
    demo_site: DemoSite, page: Any
) -> None:
    from playwright.sync_api import expect

    steps = Steps(page, "admin")
    _sign_in(page, demo_site, steps)
    _open(page, "Admin")
    # Staff with the mailbox permissions only, not a superuser.
    linked_mailboxes = page.get_by_role("link", name="Linked mailboxes")
    expect(linked_mailboxes).to_be_visible()
    expect(page.get_by_role("link", name="Users", exact=True)).to_have_count(0)
    steps.shot("index")

    linked_mailboxes.click()
    expect(page.locator("#result_list th.column-shared")).to_have_text("Shared")
    row = page.locator("#result_list tbody tr", has_text=SITE_MAILBOX)
    expect(row.locator("td.field-user")).to_have_text("website")
    expect(row.locator("td.field-shared img")).to_have_attribute("alt", "True")
    steps.shot("mailboxes")

    # Un-sharing it leaves the contact form nothing to send from...
    row.get_by_role("link", name=SITE_MAILBOX).click()
    change_url = page.url
    expect(page.locator("#id_shared")).to_be_checked()
    page.uncheck("#id_shared")
    page.click("input[name=_save]")
    expect(row.locator("td.field-shared img")).to_have_attribute("alt", "False")
    page.goto(demo_site.url + "/contact/")
    expect(page.locator("#no-shared-mailbox")).to_contain_text("tick Shared")
    expect(page.locator("#contact-form")).to_have_count(0)
    steps.shot("contact-without-shared-mailbox")

    # ...and sharing it again brings the form back.
    page.goto(change_url)
    page.check("#id_shared")
    page.click("input[name=_save]")
    expect(row.locator("td.field-shared img")).to_have_attribute("alt", "True")
    page.goto(demo_site.url + "/contact/")
    expect(page.locator("#contact-sender")).to_contain_text(SITE_MAILBOX)


def test_contact_form_sends_from_shared_mailbox_with_visitor_in_reply_to(
    demo_site: DemoSite, page: Any
) -> None:
    from playwright.sync_api import expect

    steps = Steps(page, "contact")
    page.goto(demo_site.url + "/")
    expect(page.locator("#sign-in")).to_be_visible()  # an anonymous visitor
    subject = _send_contact_form(
        page, steps, "Katherine Johnson", "katherine@example.com"
    )

    _sign_in(page, demo_site, steps)
    mail = _received(page, subject)
    expect(mail.locator('[data-field="from"]')).to_have_text(SITE_SENDER)
    expect(mail.locator('[data-field="reply-to"]')).to_have_text(
        "Katherine Johnson <katherine@example.com>"
    )
    expect(mail.locator('[data-field="to"]')).to_have_text(SITE_MAILBOX)
    expect(mail.locator('[data-field="authenticated-as"]')).to_contain_text(
        f"{SITE_MAILBOX} via XOAUTH2"
    )
    steps.shot("dev-inbox")


def test_contact_form_never_sends_as_a_linked_mailbox_the_visitor_names(
    demo_site: DemoSite, page: Any
) -> None:
    from playwright.sync_api import expect

    steps = Steps(page, "impersonation")
    _sign_in(page, demo_site, steps)
    _ensure_linked(page, demo_site, steps, WORK)
    _sign_out(page)

    # Anyone may type the address of a linked mailbox...
    subject = _send_contact_form(page, steps, "Not Grace", WORK)

    # ...but the site's shared mailbox signed in and sent; Grace's did not.
    _sign_in(page, demo_site, steps)
    mail = _received(page, subject)
    expect(mail.locator('[data-field="authenticated-as"]')).to_contain_text(
        f"{SITE_MAILBOX} via XOAUTH2"
    )
    expect(mail.locator('[data-field="from"]')).to_have_text(SITE_SENDER)
    expect(mail.locator('[data-field="reply-to"]')).to_have_text(f"Not Grace <{WORK}>")
    for field_name in ("from", "authenticated-as"):
        expect(mail.locator(f'[data-field="{field_name}"]')).not_to_contain_text(WORK)
    steps.shot("dev-inbox")


def test_the_site_has_an_icon_so_no_page_logs_a_404(demo_site: DemoSite) -> None:
    with urllib.request.urlopen(demo_site.url + "/favicon.ico") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/svg+xml"
        assert response.read().startswith(b"<svg")
    with urllib.request.urlopen(demo_site.url + "/") as response:
        assert b'rel="icon" href="/favicon.ico"' in response.read()


def _overflow(page: Any) -> dict[str, int]:
    """How wide the changelist's table is, and the room it has."""
    return page.locator("#result_list").evaluate(  # type: ignore[no-any-return]
        """table => ({
            table: table.scrollWidth,
            room: table.closest(".results").clientWidth,
            page: document.documentElement.scrollWidth,
            window: window.innerWidth,
        })"""
    )


def test_admin_changelists_fit_1280_pixels_and_save_shows_only_where_editable(
    demo_site: DemoSite, page: Any
) -> None:
    from playwright.sync_api import expect

    steps = Steps(page, "admin-width")
    page.set_viewport_size({"width": 1280, "height": 800})
    # A queued message, so the outbox has a row to lay out.
    page.goto(demo_site.url + "/")
    _send_contact_form(page, steps, "Dorothy Vaughan", "dorothy@example.com")
    _sign_in(page, demo_site, steps)
    _ensure_linked(page, demo_site, steps, PERSONAL)
    # Every mailbox refreshed: each row has all its times filled in.
    page.goto(f"{demo_site.url}/admin/live_oauth_mail/mailaccount/")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "refresh_now")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Refreshed")

    for changelist in ("mailaccount", "outboundmessage"):
        page.goto(f"{demo_site.url}/admin/live_oauth_mail/{changelist}/")
        expect(page.locator("#result_list tbody tr").first).to_be_visible()
        sizes = _overflow(page)
        steps.shot(changelist)
        assert sizes["table"] <= sizes["room"], (changelist, sizes)
        assert sizes["page"] <= sizes["window"], (changelist, sizes)

    # A linked mailbox has settings to save; a queued message is a record.
    page.goto(f"{demo_site.url}/admin/live_oauth_mail/mailaccount/")
    page.locator("#result_list").get_by_role("link", name=PERSONAL).click()
    expect(page.locator("input[name=_save]")).to_be_visible()
    expect(page.locator("#id_transport")).to_be_editable()
    page.goto(f"{demo_site.url}/admin/live_oauth_mail/outboundmessage/")
    page.locator("#result_list tbody tr th a").first.click()
    expect(page.locator(".submit-row")).to_be_visible()
    expect(page.locator("input[name=_save], input[name=_continue]")).to_have_count(0)
    expect(page.get_by_role("link", name="Close")).to_be_visible()
