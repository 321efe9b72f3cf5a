"""One consent, one token per resource: SMTP's and Graph's never mix.

Entra issues a token for one resource and refuses a request naming two
(AADSTS28000), so the link asks consent for both and redeems the code for
one; the other comes silently from the same refresh token.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from django_live_oauth_mail.exceptions import ConsentRequired
from django_live_oauth_mail.identity.tokens import get_access_token
from django_live_oauth_mail.models import MailAccount

from ..conftest import Linker
from ..standins import IdentityPlatform

OUTLOOK_SCOPE = "https://outlook.office.com/SMTP.Send"

pytestmark = pytest.mark.django_db(transaction=True)


def resources(scope: str) -> set[str]:
    return {s.rpartition("/")[0] for s in scope.split() if "/" in s}


@pytest.mark.parametrize("transport", ["auto", "graph"])
def test_linking_asks_consent_for_both_and_redeems_for_one(
    live_settings: dict[str, Any],
    identity_platform: IdentityPlatform,
    link: Linker,
    user: Any,
    transport: str,
) -> None:
    live_settings["TRANSPORT"] = transport
    client = Client()
    client.force_login(user)
    authorize_url = link.start(client)
    asked = parse_qs(urlsplit(authorize_url).query)["scope"][0].split()
    assert OUTLOOK_SCOPE in asked
    assert f"{live_settings['GRAPH_ENDPOINT']}/Mail.Send" in asked
    identity_platform.reset()

    link(user, "bob@contoso.com")

    requests = identity_platform.token_requests
    assert [r.grant_type for r in requests] == ["authorization_code"]
    assert [r.status for r in requests] == [200]
    graph = live_settings["GRAPH_ENDPOINT"]
    expected = graph if transport == "graph" else "https://outlook.office.com"
    assert resources(requests[0].scope) == {expected}


def test_the_graph_token_comes_silently_from_the_same_link(
    live_settings: dict[str, Any],
    identity_platform: IdentityPlatform,
    link: Linker,
    user: Any,
) -> None:
    live_settings["TRANSPORT"] = "auto"
    account = link(user, "bob@contoso.com")
    identity_platform.reset()

    graph = get_access_token(account, protocol="graph")
    smtp = get_access_token(account)

    # One refresh, for Graph alone; SMTP's token came with the link.
    requests = identity_platform.token_requests
    assert [(r.grant_type, r.status) for r in requests] == [("refresh_token", 200)]
    assert resources(requests[0].scope) == {live_settings["GRAPH_ENDPOINT"]}
    issued = identity_platform.introspect(graph.value)
    assert issued is not None
    assert issued.audience == live_settings["GRAPH_ENDPOINT"]
    assert "Mail.Send" in issued.scopes
    # Each token is for its own resource: Exchange's SMTP refuses Graph's.
    assert identity_platform.validate_access_token(graph.value) is None
    assert identity_platform.validate_access_token(smtp.value) == "bob@contoso.com"
    assert graph.value != smtp.value

    # Both stay cached in the one encrypted cache: no further requests.
    account.refresh_from_db()
    assert get_access_token(account, protocol="graph").value == graph.value
    assert get_access_token(account).value == smtp.value
    assert identity_platform.token_requests == requests


def test_a_mailbox_linked_before_graph_was_configured_needs_consent(
    live_settings: dict[str, Any],
    identity_platform: IdentityPlatform,
    link: Linker,
    user: Any,
) -> None:
    account = link(user, "bob@contoso.com")  # TRANSPORT "smtp": SMTP only
    graph_scope = f"{live_settings['GRAPH_ENDPOINT']}/Mail.Send"
    identity_platform.withdraw_consent("bob@contoso.com", graph_scope)  # if given
    live_settings["TRANSPORT"] = "auto"

    with pytest.raises(ConsentRequired) as caught:
        get_access_token(account, protocol="graph")

    message = str(caught.value)
    assert "bob@contoso.com" in message
    assert "Mail.Send" in message
    assert "re-link" in message
    assert caught.value.error_codes == [65001]
    account.refresh_from_db()
    # SMTP still works, so the link is not marked for reconnecting...
    assert account.status == MailAccount.Status.ACTIVE
    assert get_access_token(account).value
    # ...and linking again grants the consent.
    link(user, "bob@contoso.com")
    account.refresh_from_db()
    assert get_access_token(account, protocol="graph").value
