"""Connect-flow views and linking: behaviours mutation testing showed unasserted.

The message a first link and a renewed link show, the pages work without the
messages framework, oversized callbacks, the resubmit page, which methods
disconnect takes, a double-click's Send As address, linking an app mailbox's
address, and what an error report shows of ``link_mailbox``.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from django_live_oauth_mail import crypto, views
from django_live_oauth_mail.forms import SendAsAddressForm
from django_live_oauth_mail.identity.accounts import add_app_mailbox
from django_live_oauth_mail.models import MailAccount, SendAsAddress
from django_live_oauth_mail.ownership.routing import normalize_email

from .identity.test_mutation_tokens import Boom, boom, hidden_frames
from .standins import IdentityPlatform

pytestmark = pytest.mark.django_db(transaction=True)

ALICE = "alice@outlook.com"


@pytest.fixture
def client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def link_through_the_views(
    client: Client, identity_platform: IdentityPlatform, email: str = ALICE
) -> Any:
    authorize = client.post("/mail/connect/")["Location"]
    answer = identity_platform.approve(authorize, email)
    return client.get(urlsplit(answer.url).path, dict(answer.params))


def shown(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_a_first_link_and_a_renewed_link_say_which_they_are(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    first = link_through_the_views(client, identity_platform)
    again = link_through_the_views(client, identity_platform)

    assert shown(first) == [
        f"{ALICE} is linked. Mail from it will now be sent through Microsoft."
    ]
    assert shown(again)[1:] == [f"{ALICE} is linked again."]  # not yet shown


def test_the_views_work_without_the_messages_framework(
    client: Client, identity_platform: IdentityPlatform, settings: Any
) -> None:
    settings.MIDDLEWARE = [
        name for name in settings.MIDDLEWARE if "MessageMiddleware" not in name
    ]

    linked = link_through_the_views(client, identity_platform)
    account = MailAccount.objects.get()
    added = client.post(f"/mail/{account.pk}/send-as/", {"address": "a@example.org"})
    refused = client.post(f"/mail/{account.pk}/send-as/", {"address": ALICE})
    send_as = SendAsAddress.objects.get()
    removed = client.post(f"/mail/send-as/{send_as.pk}/remove/")
    disconnected = client.post(f"/mail/{account.pk}/disconnect/")

    responses = (linked, added, refused, removed, disconnected)
    assert [r.status_code for r in responses] == [302] * 5
    assert SendAsAddress.objects.count() == 0
    assert MailAccount.objects.count() == 0


def test_a_double_clicked_send_as_address_is_stored_once_without_an_error(
    client: Client, alice_account: MailAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"/mail/{alice_account.pk}/send-as/"
    client.post(url, {"address": "a@example.org"})

    # The second click validated before the first one's insert.
    def unchecked(form: SendAsAddressForm) -> str:
        return normalize_email(form.cleaned_data["address"])

    monkeypatch.setattr(SendAsAddressForm, "clean_address", unchecked)
    second = client.post(url, {"address": "a@example.org"})

    assert second.status_code == 302
    assert shown(second)[-1].startswith(f"{ALICE} can now send your mail as")
    assert SendAsAddress.objects.filter(account=alice_account).count() == 1


def test_only_get_and_post_reach_disconnect(
    client: Client, alice_account: MailAccount
) -> None:
    url = f"/mail/{alice_account.pk}/disconnect/"

    assert client.delete(url).status_code == 405
    assert client.put(url).status_code == 405
    assert MailAccount.objects.count() == 1


def test_an_anonymous_form_post_answer_is_posted_again_from_this_site() -> None:
    response = Client().post("/mail/callback/", {"state": "s", "code": "c"})

    assert response.status_code == 200
    assert f'name="{views.RESUBMITTED}" value="1"' in response.content.decode()


@pytest.mark.parametrize(
    "limit", ["DATA_UPLOAD_MAX_NUMBER_FIELDS", "DATA_UPLOAD_MAX_MEMORY_SIZE"]
)
def test_a_callback_over_djangos_upload_limits_gets_the_too_large_page(
    client: Client, settings: Any, limit: str
) -> None:
    setattr(settings, limit, 10)
    fields = {f"field{n}": "x" * 5 for n in range(20)}

    response = client.post("/mail/callback/", fields)

    assert response.status_code == 400
    assert "The response was too large" in response.content.decode()
    assert not response.has_header("Retry-After")  # only a 503 asks to retry


def test_an_outage_page_offers_to_try_again(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    authorize = client.post("/mail/connect/")["Location"]
    answer = identity_platform.approve(authorize, ALICE)
    identity_platform.fail_next_token_requests(1, status=503, body="<html>oops</html>")

    response = client.get(urlsplit(answer.url).path, dict(answer.params))

    assert response.status_code == 503
    assert response["Retry-After"] == "10"
    assert ">Try again</a>" in response.content.decode()


def test_a_login_hint_is_cut_to_an_address_length(client: Client) -> None:
    hint = "a" * 250 + "@" + "b" * 49

    page = client.get("/mail/connect/", {"login_hint": hint}).content.decode()

    assert f'value="{hint[:254]}"' in page


def test_an_error_report_hides_link_mailboxs_locals(
    client: Client,
    identity_platform: IdentityPlatform,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.DEBUG = False

    monkeypatch.setattr(crypto, "encrypt", boom)

    with pytest.raises(Boom) as caught:
        link_through_the_views(client, identity_platform)

    assert hidden_frames(caught.value)["link_mailbox"] is True
    assert MailAccount.objects.count() == 0


def test_linking_an_app_mailboxs_address_is_refused_as_a_conflict(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    [app, _] = add_app_mailbox("bob@contoso.com", str(uuid.uuid4()))

    response = link_through_the_views(client, identity_platform, app.email)

    assert response.status_code == 409
    assert "This mailbox cannot be linked" in response.content.decode()
    assert list(MailAccount.objects.values_list("pk", flat=True)) == [app.pk]


def test_the_connect_page_carries_next_on_to_the_post(client: Client) -> None:
    page = client.get("/mail/connect/", {"next": "/compose/"}).content.decode()

    assert '<input type="hidden" name="next" value="/compose/">' in page
