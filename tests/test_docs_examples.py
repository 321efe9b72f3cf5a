"""The examples of docs/testing.md, nearly verbatim, so that they keep working.

A site's view, its URLs, and its tests written both ways the page shows: the
socket-level one against the stand-ins, and the light one with the recording
backend. The view and URLs are this module's (``pytest.mark.urls``); the
suite's autouse fixtures run first, and these fixtures override them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.decorators import login_required
from django.core import mail
from django.core.mail import send_mail
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path, reverse
from django.views.decorators.http import require_POST

from django_live_oauth_mail import sending_as
from django_live_oauth_mail.exceptions import SenderNotAllowed
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import (
    FakeIdentity,
    FakeIdentityPlatform,
    XOAuth2SMTPServer,
)
from django_live_oauth_mail.testing.recording import link_mailbox

from .mailers import USES_MAILERS

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db]


# --- the site: myapp/views.py and urls.py ---------------------------------------


@login_required
@require_POST
def invite(request: HttpRequest) -> HttpResponse:
    """Invite a colleague from the signed-in user's own linked mailbox."""
    mailbox = MailAccount.objects.filter(user=request.user).first()
    if mailbox is None:
        return HttpResponse("Link your mailbox first.", status=409)
    send_mail("Join us", "See you there.", mailbox.email, [request.POST["to"]])
    return HttpResponse("Sent.")


urlpatterns = [
    path("invite/", invite, name="invite"),
    path("mail/", include("django_live_oauth_mail.urls")),
]


def use_backend(settings: Any, backend: str) -> None:
    # Django 5.2 and 6.0: EMAIL_BACKEND; 6.1: MAILERS (the page shows both).
    if USES_MAILERS:
        settings.MAILERS = {"default": {"BACKEND": backend}}
    else:
        settings.EMAIL_BACKEND = backend


# --- 1. Against the stand-ins, through sockets ---------------------------------


@pytest.fixture(scope="module")
def microsoft() -> Iterator[tuple[FakeIdentityPlatform, XOAuth2SMTPServer]]:
    """The identity platform and Exchange's SMTP service, on local ports."""
    with (
        FakeIdentityPlatform([FakeIdentity("ann@contoso.com")]) as platform,
        XOAuth2SMTPServer(platform) as smtp,
    ):
        yield platform, smtp


@pytest.fixture
def stand_ins(
    settings: Any, microsoft: tuple[FakeIdentityPlatform, XOAuth2SMTPServer]
) -> tuple[FakeIdentityPlatform, XOAuth2SMTPServer]:
    """Point the app at the stand-ins; each test starts with an empty inbox."""
    platform, smtp = microsoft
    smtp.reset()
    settings.LIVE_OAUTH_MAIL = {
        "CLIENT_ID": platform.client_id,
        "CLIENT_SECRET": platform.client_secret,
        "AUTHORITY": platform.authority,
        "CA_BUNDLE": platform.ca_bundle,
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": smtp.port,
    }
    # Django's test set-up replaced every email backend with locmem.
    use_backend(settings, "django_live_oauth_mail.backends.EmailBackend")
    return platform, smtp


def link_through_the_views(
    client: Client, platform: FakeIdentityPlatform, email: str
) -> None:
    """Connect, consent at the stand-in, come back: as a person's browser does."""
    response = client.post(reverse("live_oauth_mail:connect"))
    answer = platform.approve(response["Location"], email)
    response = client.get(reverse("live_oauth_mail:callback"), answer.params)
    assert response.status_code == 302


def test_invite_goes_out_through_the_users_mailbox(
    client: Client,
    django_user_model: Any,
    stand_ins: tuple[FakeIdentityPlatform, XOAuth2SMTPServer],
) -> None:
    platform, smtp = stand_ins
    ann = django_user_model.objects.create_user("ann", password="pw")
    client.force_login(ann)
    link_through_the_views(client, platform, "ann@contoso.com")

    response = client.post(reverse("invite"), {"to": "bob@example.org"})

    assert response.status_code == 200
    [received] = smtp.messages
    assert received.authenticated_as == "ann@contoso.com"  # signed in with OAuth
    assert received.mail_from == "ann@contoso.com"
    assert received.rcpt_tos == ["bob@example.org"]
    assert received.subject == "Join us"


# --- 2. The light way: a linked mailbox in one call, a recording backend --------


@pytest.fixture
def recorded(settings: Any) -> None:
    use_backend(
        settings, "django_live_oauth_mail.testing.recording.RecordingEmailBackend"
    )


def test_invite_is_recorded_with_the_users_mailbox(
    client: Client, django_user_model: Any, recorded: None
) -> None:
    ann = django_user_model.objects.create_user("ann", password="pw")
    mailbox = link_mailbox(ann, "ann@contoso.com")
    client.force_login(ann)

    response = client.post(reverse("invite"), {"to": "bob@example.org"})

    assert response.status_code == 200
    [sent] = mail.outbox
    assert sent.mail_account == mailbox
    assert sent.to == ["bob@example.org"]
    assert sent.subject == "Join us"


def test_nobody_sends_from_someone_elses_mailbox(
    django_user_model: Any, recorded: None
) -> None:
    ann = django_user_model.objects.create_user("ann", password="pw")
    zed = django_user_model.objects.create_user("zed", password="pw")
    link_mailbox(zed, "zed@contoso.com")

    with sending_as(ann), pytest.raises(SenderNotAllowed):
        send_mail("Hi", "From Zed?", "zed@contoso.com", ["bob@example.org"])

    assert mail.outbox == []


def test_without_the_middleware_the_view_may_not_send_as_its_user(
    client: Client, django_user_model: Any, recorded: None, settings: Any
) -> None:
    """As the page says: SendingAsMiddleware is what lets the view send."""
    middleware = "django_live_oauth_mail.middleware.SendingAsMiddleware"
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != middleware]
    ann = django_user_model.objects.create_user("ann", password="pw")
    link_mailbox(ann, "ann@contoso.com")
    client.force_login(ann)

    with pytest.raises(SenderNotAllowed):
        client.post(reverse("invite"), {"to": "bob@example.org"})

    assert mail.outbox == []
