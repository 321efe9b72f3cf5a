"""No secret on any failure path: one row per way a send can fail.

For each row the failure really happens against the stand-ins. Then every
place it may show or keep a secret (:mod:`.secret_search`, the database,
DEBUG logs from every logger) is searched for the app's configured secrets
(client secret, private key) and every value the stand-ins issued or were
shown (tokens, codes, assertions, upload URLs).

A new transport or provider adds its failure paths to ``PATHS``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.mail import EmailMessage

from django_live_oauth_mail.backends import QueuedEmailBackend
from django_live_oauth_mail.exceptions import (
    AppConsentRequired,
    AppCredentialsError,
    ConfigurationError,
    GraphError,
    IdentityPlatformUnavailable,
    MessageMayHaveBeenSent,
)
from django_live_oauth_mail.identity import applications
from django_live_oauth_mail.identity.accounts import add_app_mailbox
from django_live_oauth_mail.models import OutboundMessage
from django_live_oauth_mail.queue import worker
from django_live_oauth_mail.testing import make_client_certificate

from .conftest import CLOSED_PORT, Linker
from .secret_search import ExcInfo, exc_info, fragments, key_fragments, places_of
from .standins import GraphStandIn, IdentityPlatform, SMTPStandIn
from .test_secrets import every_stored_value

pytestmark = pytest.mark.django_db(transaction=True)

ALICE, BOB, NOREPLY = "alice@outlook.com", "bob@contoso.com", "noreply@contoso.com"
SMTP_ROLE = "https://outlook.office365.com/SMTP.SendAsApp"
CLOSED = f"https://127.0.0.1:{CLOSED_PORT}"


@dataclasses.dataclass(repr=False)  # the test's own frames are on the traceback
class World:
    """The stand-ins and settings a path sets up its failure with."""

    settings: dict[str, Any]
    identity: IdentityPlatform
    smtp: SMTPStandIn
    graph: GraphStandIn
    link: Linker
    user: Any
    monkeypatch: pytest.MonkeyPatch
    #: The private key PEM, once a path configures a certificate.
    private_key: str = ""
    caught: list[ExcInfo] = dataclasses.field(default_factory=list)

    def use_graph(self, *permissions: str) -> None:
        """Send through Graph, its scopes pinned to the stand-in's resource so
        GRAPH_ENDPOINT may point elsewhere without a new consent."""
        self.settings["TRANSPORT"] = "graph"
        self.settings["GRAPH_SCOPES"] = [
            f"{self.graph.endpoint}/{p}" for p in permissions or ("Mail.Send",)
        ]

    def link_as_owner(self, email: str) -> None:
        self.link(self.user, email)


def _send(sender: str, *, attachment: bytes = b"") -> None:
    message = EmailMessage("s", "b", sender, ["r@example.org"])
    if attachment:
        message.attach("big.bin", attachment, "application/octet-stream")
    message.send()


# --- the paths -------------------------------------------------------------------


def smtp_auth_connection_lost(world: World) -> None:
    world.link_as_owner(ALICE)
    world.smtp.fail_next(stage="auth", disconnect=True)
    _send(ALICE)


def smtp_answer_lost_after_data(world: World) -> None:
    world.link_as_owner(ALICE)
    world.smtp.lose_next_answer()
    _send(ALICE)


def graph_connection_refused(world: World) -> None:
    world.use_graph()
    world.link_as_owner(BOB)
    world.settings["GRAPH_ENDPOINT"] = CLOSED
    _send(BOB)


def graph_connect_timeout(world: World) -> None:
    world.use_graph()
    world.link_as_owner(BOB)
    world.settings["HTTP_TIMEOUT"] = 0.5
    with _full_backlog() as port:
        world.settings["GRAPH_ENDPOINT"] = f"https://127.0.0.1:{port}"
        _send(BOB)


def graph_read_timeout(world: World) -> None:
    world.use_graph()
    world.link_as_owner(BOB)
    world.settings["HTTP_TIMEOUT"] = 0.5
    world.graph.response_delay = 2.0
    try:
        _send(BOB)
    finally:
        # The stand-in still sends it: wait, so no later test sees it arrive.
        _wait_for(lambda: len(world.graph.messages) == 1)
        world.graph.response_delay = 0.0


def identity_unreachable_refreshing_in_a_fresh_process(world: World) -> None:
    world.identity.access_token_lifetime = 60  # under msal's 5 minutes: refresh
    world.link_as_owner(ALICE)
    applications.reset()  # no discovery answer kept, as in a new process
    world.settings["AUTHORITY"] = f"{CLOSED}/common"
    _send(ALICE)


def identity_discovery_refused_in_a_fresh_process(world: World) -> None:
    world.identity.access_token_lifetime = 60
    world.link_as_owner(ALICE)
    applications.reset()
    # A host that answers the openid-configuration with a 404, as a wrong
    # AUTHORITY does: msal raises its own ValueError.
    world.settings["AUTHORITY"] = f"{world.graph.endpoint}/common"
    _send(ALICE)


def _app_mailbox(world: World, *roles: str) -> None:
    tenant = str(uuid.uuid4())
    world.identity.admin_consent(tenant, *roles)
    world.smtp.app_access[world.settings["CLIENT_ID"]] = {NOREPLY}
    add_app_mailbox(NOREPLY, tenant)


def app_without_consent(world: World) -> None:
    _app_mailbox(world)  # a service principal without the role
    _send(NOREPLY)


def app_token_request_answered_500(world: World) -> None:
    _app_mailbox(world, SMTP_ROLE)
    world.identity.fail_next_token_requests(5, status=500)
    _send(NOREPLY)


def app_certificate_refused(world: World) -> None:
    _app_mailbox(world, SMTP_ROLE)
    _configure_a_certificate(world)  # never uploaded to the app
    _send(NOREPLY)


def _configure_a_certificate(world: World) -> None:
    """In a frame of its own: this test's frames are on the traceback too."""
    certificate = make_client_certificate()
    world.private_key = certificate.private_key_pem
    world.settings["CLIENT_SECRET"] = ""
    world.settings["CLIENT_CERTIFICATE"] = {
        "private_key": certificate.private_key_pem,
        "thumbprint": certificate.thumbprint,
    }


def graph_upload_chunk_refused(world: World) -> None:
    world.use_graph("Mail.Send", "Mail.ReadWrite")
    world.link_as_owner(BOB)
    world.graph.failing_uploads = 1
    # Over 3 MB: an upload session; over 4 MB in base64: a draft first.
    _send(BOB, attachment=os.urandom(3 * 1024 * 1024 + 1024))


def worker_delivering_to_unreachable_graph(world: World) -> None:
    world.use_graph()
    world.link_as_owner(BOB)
    world.settings["GRAPH_ENDPOINT"] = CLOSED
    QueuedEmailBackend().send_messages([EmailMessage("s", "b", BOB, ["r@x.org"])])
    (row,) = OutboundMessage.objects.all()
    record_failure = worker._record_failure

    def recorded(*args: Any, **kwargs: Any) -> Any:
        world.caught.append(exc_info())  # the error the worker handles
        return record_failure(*args, **kwargs)

    world.monkeypatch.setattr(worker, "_record_failure", recorded)
    worker.deliver(row.pk, paced=True)
    row.refresh_from_db()
    assert row.last_error  # the failure was recorded
    if world.caught:
        raise world.caught[0][1]


@dataclasses.dataclass(frozen=True)
class Path:
    """One failure path: what makes it fail, and what it must raise."""

    run: Callable[[World], None]
    raises: type[BaseException]
    #: What the logs must show, masked: proof the secret was there to mask.
    logs_show: str = ""

    @property
    def name(self) -> str:
        return self.run.__name__


PATHS = [
    Path(smtp_auth_connection_lost, OSError),
    Path(smtp_answer_lost_after_data, MessageMayHaveBeenSent),
    Path(graph_connection_refused, OSError),
    Path(graph_connect_timeout, OSError),
    Path(graph_read_timeout, MessageMayHaveBeenSent),
    Path(
        identity_unreachable_refreshing_in_a_fresh_process, IdentityPlatformUnavailable
    ),
    Path(identity_discovery_refused_in_a_fresh_process, ConfigurationError),
    Path(app_without_consent, AppConsentRequired),
    Path(app_token_request_answered_500, IdentityPlatformUnavailable),
    Path(app_certificate_refused, AppCredentialsError),
    Path(graph_upload_chunk_refused, GraphError, "/upload?authtoken=********"),
    Path(worker_delivering_to_unreachable_graph, OSError),
]


# --- the search ------------------------------------------------------------------


@pytest.fixture
def world(
    live_settings: dict[str, Any],
    identity_platform: IdentityPlatform,
    smtp_server: SMTPStandIn,
    graph_server: GraphStandIn,
    link: Linker,
    acting_user: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    """The stand-ins, with a client secret no other text could contain."""
    live_settings["SMTP_RETRIES"] = 0
    secret = f"cs-{secrets.token_urlsafe(24)}"
    live_settings["CLIENT_SECRET"] = identity_platform.client_secret = secret
    try:
        yield World(
            live_settings,
            identity_platform,
            smtp_server,
            graph_server,
            link,
            acting_user,
            monkeypatch,
        )
    finally:
        identity_platform.client_secret = "test-client-secret"


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """DEBUG records of every logger, urllib3's request lines included."""
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level > logging.DEBUG:
            caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.name)
def test_no_secret_is_shown_or_kept_on_a_failure_path(
    path: Path, world: World, every_log: pytest.LogCaptureFixture
) -> None:
    before = set(world.identity.issued_secrets())
    kind, error, traceback = _failure_of(path, world)

    assert isinstance(error, path.raises), f"{path.name} raised {kind.__name__}"
    issued = [s for s in world.identity.issued_secrets() if s not in before]
    places = places_of((kind, error, traceback))
    places["database"] = every_stored_value()
    places["logs"] = every_log.text + "\n".join(
        record.getMessage() for record in every_log.records
    )
    assert path.logs_show in places["logs"]
    for value in _secrets(world, issued):
        for place, text in places.items():
            at = text.find(value)
            assert at < 0, f"{place} ({path.name}): {text[max(0, at - 300) : at]!r}"


def _failure_of(path: Path, world: World) -> ExcInfo:
    try:
        path.run(world)
    except Exception:
        return exc_info()
    raise AssertionError(f"{path.name} did not fail")


def _secrets(world: World, issued: list[str]) -> Iterator[str]:
    """The configured secrets, and every value the stand-ins issued."""
    upload_keys = [
        key
        for url in world.graph.upload_urls
        for key in parse_qs(urlsplit(url).query).get("authtoken", [])
    ]
    configured = world.settings["CLIENT_SECRET"] or world.identity.client_secret
    for value in [configured, *issued, *world.graph.upload_urls, *upload_keys]:
        yield from fragments(value)
    if world.private_key:
        yield from key_fragments(world.private_key)


@contextlib.contextmanager
def _full_backlog() -> Iterator[int]:
    """A port whose listen queue is full: a connection to it times out."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        port = listener.getsockname()[1]
        # The one connection the queue holds; the kernel drops later SYNs.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            yield port


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the stand-in never finished"
        time.sleep(0.05)
