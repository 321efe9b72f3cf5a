"""Local stand-ins for Microsoft, run inside the site's process.

``manage.py demo`` calls :func:`start` before serving and :func:`stop` when it
ends. They live in the same process as the site so the Dev inbox can read the
SMTP stand-in's received messages directly (:func:`running`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

from django_live_oauth_mail.identity import applications, linking
from django_live_oauth_mail.testing import (
    FakeGraphAPI,
    FakeIdentity,
    FakeIdentityPlatform,
)

if TYPE_CHECKING:
    from django_live_oauth_mail.testing import XOAuth2SMTPServer

#: Who can "sign in with Microsoft" on the stand-in consent page; the
#: site's own mailbox (settings.DEMO_SITE_MAILBOX) is added at start.
IDENTITIES = (
    FakeIdentity("ada@outlook.com", name="Ada Lovelace", kind="personal"),
    FakeIdentity("grace@contoso.com", name="Grace Hopper", kind="work"),
    FakeIdentity("alan@fabrikam.com", name="Alan Turing", kind="work"),
)
SITE_MAILBOX_NAME = "Contoso website"


@dataclass(frozen=True)
class StandIns:
    identity: FakeIdentityPlatform
    smtp: XOAuth2SMTPServer
    graph: FakeGraphAPI

    @property
    def ca_bundle(self) -> str:
        return self.identity.ca_bundle


_running: StandIns | None = None
_lock = threading.Lock()


def running() -> StandIns | None:
    """The stand-ins this process runs, or ``None``."""
    return _running


def start() -> StandIns:
    """Start the stand-ins on the configured ports and point the app at them.

    Raises ``OSError`` when a port is taken, ``ImportError`` without aiosmtpd.
    """
    global _running
    from django_live_oauth_mail.testing import XOAuth2SMTPServer

    with _lock:
        if _running is not None:
            return _running
        config = settings.LIVE_OAUTH_MAIL
        site_mailbox = FakeIdentity(
            settings.DEMO_SITE_MAILBOX, name=SITE_MAILBOX_NAME, kind="work"
        )
        identity = FakeIdentityPlatform(
            (*IDENTITIES, site_mailbox),
            client_id=config["CLIENT_ID"],
            client_secret=config["CLIENT_SECRET"],
            host=settings.DEMO_STANDIN_HOST,
            port=settings.DEMO_IDENTITY_PORT,
            # The pages a person sees are plain HTTP, so the browser shows no
            # certificate warning; msal still talks to the HTTPS port.
            pages_port=settings.DEMO_PAGES_PORT,
        ).start()
        try:
            # Shares the platform's certificate, so one CA file covers all.
            smtp = XOAuth2SMTPServer(
                identity,
                host=settings.DEMO_STANDIN_HOST,
                port=settings.DEMO_SMTP_PORT,
                certificate=identity.certificate,
            ).start()
        except BaseException:
            identity.stop()
            raise
        try:
            # Records into the SMTP stand-in's inbox: one Dev inbox for both.
            graph = FakeGraphAPI(
                identity,
                host=settings.DEMO_STANDIN_HOST,
                port=settings.DEMO_GRAPH_PORT,
                certificate=identity.certificate,
                smtp=smtp,
            ).start()
        except BaseException:
            smtp.stop()
            identity.stop()
            raise
        if config["AUTHORITY"] != identity.authority:
            raise RuntimeError(
                f"settings say AUTHORITY={config['AUTHORITY']!r} but the identity "
                f"stand-in runs at {identity.authority!r}"
            )
        # The CA is generated on every start, so its path can only be known
        # now. Nothing has read LIVE_OAUTH_MAIL yet: no request was served.
        settings.LIVE_OAUTH_MAIL = {**config, "CA_BUNDLE": identity.ca_bundle}
        applications.reset()
        _running = StandIns(identity, smtp, graph)
        return _running


def sign_in(email: str, redirect_uri: str) -> linking.LinkedIdentity:
    """Link ``email`` as a person would, without a browser.

    The real msal auth-code flow (PKCE, state, nonce, code redemption) runs
    against the identity stand-in; only the consent page is answered in code.
    Raises ``RuntimeError`` when the stand-ins are not running, and the app's
    ``LiveOAuthMailError`` subclasses when the sign-in fails.
    """
    running = _running
    if running is None:
        raise RuntimeError("the stand-ins are not running; call start() first")
    flow = linking.start_link(redirect_uri, login_hint=email)
    answer = running.identity.approve(flow["auth_uri"], email)
    return linking.finish_link(flow, answer.params)


def stop() -> None:
    """Stop the stand-ins (safe to call when they are not running)."""
    global _running
    with _lock:
        if _running is None:
            return
        try:
            _running.graph.stop()
            _running.smtp.stop()
        finally:
            _running.identity.stop()
            _running = None
