"""What one batch costs, whatever its size: the counts behind docs/benchmarks.md.

``make bench`` measures the times, next to Django's SMTP backend; the counts
are asserted here, and only here, so that a regression fails CI. Per batch, at
several N: database queries stay constant (one to find the mailboxes, and one
to mark them used in a mailbox's first batch of the minute: ``last_used_at``
is written once a minute at most), a fresh token costs no request to
the identity platform and an expiring one exactly one, each mailbox gets one
SMTP session with one AUTH, K mailboxes get K sessions, and discovery happens
once per process, never per batch. Those per-batch costs are measured cold
(``SESSION_REUSE`` off); with warm sessions, later batches of the same mailbox
cost no session, no AUTH and no token at all.

Already covered elsewhere and not repeated: two mailboxes at N = 2 and 20
(tests/test_backend.py), and the same rules for a single ``get_access_token``
call (tests/identity/test_tokens.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_live_oauth_mail.identity import applications
from django_live_oauth_mail.testing import FakeIdentity, XOAuth2SMTPServer

from ..mailers import make_backend
from ..standins import IdentityPlatform

# These tests are about transport, tokens and retries: they send as the owner.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("acting_user")]

SIZES = (1, 10, 50)
ALICE = "alice@outlook.com"


@pytest.fixture
def cold(live_settings: dict[str, Any]) -> None:
    """Every batch opens its own sessions, as in a new process."""
    live_settings["SESSION_REUSE"] = False


def batch(n: int, senders: list[str]) -> list[EmailMessage]:
    return [
        EmailMessage(
            f"Order {i} shipped",
            f"Hello,\n\nyour order {i} is on its way.\n" * 10,
            senders[i % len(senders)],
            [f"customer{i}@example.org"],
        )
        for i in range(n)
    ]


@dataclass(frozen=True)
class BatchCost:
    queries: int
    token_requests: int
    discovery_requests: int
    http_requests: int
    sessions: int
    auth_exchanges: int
    sessions_by_mailbox: dict[str, int]


def send_counted(
    messages: list[EmailMessage],
    smtp_server: XOAuth2SMTPServer,
    identity_platform: IdentityPlatform,
    **options: Any,
) -> BatchCost:
    """Send one batch through a new backend and count what it cost."""
    smtp_server.reset()
    identity_platform.reset()
    with CaptureQueriesContext(connection) as queries:
        assert make_backend(**options).send_messages(messages) == len(messages)
    received = smtp_server.messages
    assert len(received) == len(messages)
    sessions: dict[str, set[int]] = {}
    for message in received:
        sessions.setdefault(message.authenticated_as or "", set()).add(
            message.session_id
        )
    requests = identity_platform.requests
    return BatchCost(
        queries=len(queries),
        token_requests=len(identity_platform.token_requests),
        discovery_requests=sum(1 for _, p in requests if "openid-configuration" in p),
        http_requests=len(requests),
        sessions=smtp_server.sessions,
        auth_exchanges=len(smtp_server.auth_attempts),
        sessions_by_mailbox={mailbox: len(ids) for mailbox, ids in sessions.items()},
    )


@pytest.mark.parametrize("selector", ["sender", "account", "user"])
@pytest.mark.usefixtures("cold")
def test_fresh_token_batch_costs_the_same_at_every_size(
    selector: str,
    link: Any,
    user: Any,
    smtp_server: XOAuth2SMTPServer,
    identity_platform: IdentityPlatform,
) -> None:
    link(user, ALICE)
    options = {"sender": {}, "account": {"account": ALICE}, "user": {"user": user}}

    costs = [
        send_counted(
            batch(n, [ALICE]), smtp_server, identity_platform, **options[selector]
        )
        for n in SIZES
    ]

    # Find the mailbox and mark it used; then it was marked under a minute ago.
    assert [cost.queries for cost in costs] == [2, 1, 1], costs
    for cost in costs:
        assert cost.http_requests == 0  # no token request, no discovery
        assert cost.sessions == 1
        assert cost.auth_exchanges == 1
        assert cost.sessions_by_mailbox == {ALICE: 1}


@pytest.mark.usefixtures("cold")
def test_expiring_token_costs_one_refresh_per_batch_at_every_size(
    link: Any,
    user: Any,
    smtp_server: XOAuth2SMTPServer,
    identity_platform: IdentityPlatform,
) -> None:
    # msal refreshes with under five minutes left; 120 s tokens make every
    # batch start with one refresh (each refreshed token is expiring again).
    identity_platform.access_token_lifetime = 120
    link(user, ALICE)

    costs = [
        send_counted(batch(n, [ALICE]), smtp_server, identity_platform) for n in SIZES
    ]

    # The first batch also marks the mailbox used (see above).
    assert costs[0].queries == costs[1].queries + 1 == costs[2].queries + 1, costs
    for cost in costs:
        assert cost.token_requests == 1
        assert cost.discovery_requests == 0  # linking warmed msal up
        assert cost.sessions == 1
        assert cost.auth_exchanges == 1

    # Once the refresh yields a long-lived token, the next batch needs none.
    identity_platform.access_token_lifetime = 3600
    refreshing = send_counted(batch(10, [ALICE]), smtp_server, identity_platform)
    after = send_counted(batch(10, [ALICE]), smtp_server, identity_platform)
    assert (refreshing.token_requests, after.token_requests) == (1, 0)
    assert after.http_requests == 0
    assert refreshing.queries == costs[1].queries
    assert after.queries == 1  # the refresh's extra queries are gone too


@pytest.mark.usefixtures("cold")
def test_discovery_happens_once_per_process_never_per_batch(
    link: Any,
    user: Any,
    smtp_server: XOAuth2SMTPServer,
    identity_platform: IdentityPlatform,
) -> None:
    identity_platform.access_token_lifetime = 120
    expiring = link(user, ALICE)
    identity_platform.access_token_lifetime = 3600
    fresh = link(user, "bob@contoso.com")
    assert expiring.pk != fresh.pk

    applications.reset()  # as in a new worker process
    cold_fresh = send_counted(batch(5, [fresh.email]), smtp_server, identity_platform)
    identity_platform.access_token_lifetime = 120
    cold = send_counted(batch(5, [ALICE]), smtp_server, identity_platform)
    warm = [
        send_counted(batch(n, [ALICE]), smtp_server, identity_platform) for n in SIZES
    ]

    # A fresh token is read from the stored cache: msal is not even built.
    assert cold_fresh.http_requests == 0
    assert (cold.discovery_requests, cold.token_requests) == (1, 1)
    assert [(w.discovery_requests, w.token_requests) for w in warm] == [(0, 1)] * 3
    assert all(w.http_requests == 1 for w in warm)


@pytest.mark.parametrize("k", [2, 10])
@pytest.mark.usefixtures("cold")
def test_k_mailboxes_in_one_batch_cost_k_sessions_and_constant_queries(
    k: int,
    link: Any,
    user: Any,
    smtp_server: XOAuth2SMTPServer,
    identity_platform: IdentityPlatform,
) -> None:
    mailboxes = [f"team{i:02d}@fabrikam.com" for i in range(k)]
    for mailbox in mailboxes:
        identity_platform.add_identity(FakeIdentity(mailbox))  # idempotent
        link(user, mailbox)

    costs = [
        send_counted(batch(n, mailboxes), smtp_server, identity_platform)
        for n in (k, 5 * k)
    ]

    assert [cost.queries for cost in costs] == [2, 1]  # whatever N and K
    for cost in costs:
        assert cost.sessions == k
        assert cost.auth_exchanges == k
        assert cost.sessions_by_mailbox == dict.fromkeys(mailboxes, 1)
        assert cost.http_requests == 0


def test_warm_batches_cost_no_session_no_auth_and_no_token(
    link: Any,
    user: Any,
    smtp_server: XOAuth2SMTPServer,
    identity_platform: IdentityPlatform,
) -> None:
    # Tokens expire in 2 minutes: cold, each batch would refresh (see above).
    identity_platform.access_token_lifetime = 120
    link(user, ALICE)
    link(user, "bob@contoso.com")

    costs = [
        send_counted(
            batch(n, [ALICE, "bob@contoso.com"]), smtp_server, identity_platform
        )
        for n in (2, 2, 10, 50)
    ]

    assert [c.sessions for c in costs] == [2, 0, 0, 0]
    assert [c.auth_exchanges for c in costs] == [2, 0, 0, 0]
    assert [c.token_requests for c in costs] == [2, 0, 0, 0]
    assert [c.queries for c in costs][1:] == [1, 1, 1]
