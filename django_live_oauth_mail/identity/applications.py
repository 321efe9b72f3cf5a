"""msal's application objects, and what they share per process.

Each call builds an application object of its own, so calls for different
mailboxes and users run side by side: no lock is held across an HTTP request.
Building one costs about half a millisecond of CPU and no request, because
what is worth sharing is shared per process: the ``requests`` session and the
discovery answers (:mod:`.discovery`). msal's throttling memory is not shared
but lent per flow and per mailbox (:mod:`.throttling`). App-only tokens are
the exception: their application objects are kept, per tenant, scope and
credential, so that msal's cache in them saves a request per send.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any
from urllib.parse import urlsplit

import msal
from django.views.decorators.debug import sensitive_variables

from .. import http
from ..conf import conf
from . import discovery
from .authority import tenant_authority, uses_instance_discovery
from .credentials import credential, credential_hash
from .errors import TRANSPORT_ERRORS, first_line
from .throttling import refusals
from .wording import misconfigured, refusal


@sensitive_variables()
def application(
    *,
    public: bool = False,
    http_cache: dict[str, Any] | None = None,
    token_cache: msal.SerializableTokenCache | None = None,
    tenant: str | None = None,
    mailbox: str | None = None,
) -> msal.ClientApplication:
    """A new application object for one call, on the current settings.

    ``tenant`` replaces the authority's path (``common``): app-only tokens
    must come from the mailbox's own tenant.
    """
    client_id, authority = conf.CLIENT_ID, conf.AUTHORITY
    if not client_id:
        raise misconfigured("no_client_id")
    # Masked (a Secret): it may sit in this frame when something below raises.
    # A missing one is a ConfigurationError before any request.
    app_credential = None if public else credential()
    if urlsplit(authority).scheme != "https":
        raise misconfigured("authority_not_https", authority=authority)
    if tenant is not None:
        authority = tenant_authority(tenant)
    options: dict[str, Any] = {
        "authority": authority,
        "http_client": discovery.http_client(),
        "http_cache": {} if http_cache is None else http_cache,
        "token_cache": token_cache or msal.SerializableTokenCache(),
    }
    if not uses_instance_discovery(authority):
        options["instance_discovery"] = False
    try:
        if app_credential is None:
            return msal.PublicClientApplication(client_id, **options)
        # Revealed only as msal's argument: no frame of ours names the value.
        return msal.ConfidentialClientApplication(
            client_id, client_credential=app_credential.reveal(), **options
        )
    except ValueError as error:
        if tenant is None:
            raise misconfigured(
                "authority_refused", authority=authority, detail=first_line(error)
            ) from None
        # msal's discovery found no such tenant.
        raise refusal(
            "unknown_tenant", mailbox=mailbox, tenant=tenant, detail=first_line(error)
        ) from None
    except TRANSPORT_ERRORS as error:
        raise refusal(
            "unreachable",
            mailbox=None,
            authority=authority,
            failure=type(error).__name__,
        ) from None


@dataclasses.dataclass
class KeptApplication:
    """An application object whose msal cache keeps the app's token, so a busy
    process asks once per token lifetime; its lock makes threads starting
    cold ask once too."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    app: msal.ClientApplication | None = None


_kept: dict[tuple[Any, ...], KeptApplication] = {}
_kept_lock = threading.Lock()


def kept_for_app_tokens(tenant: str, scope: str) -> KeptApplication:
    """The kept entry for ``scope`` in ``tenant`` on the current settings.

    Keyed by client id, authority and credential too, so new settings get a
    new application (and token).
    """
    key = (tenant, scope, conf.CLIENT_ID, conf.AUTHORITY, credential_hash())
    with _kept_lock:  # held for a lookup only: building one asks the network
        return _kept.setdefault(key, KeptApplication())


def reset() -> None:
    """Forget sessions, discovery answers, throttling memory and kept
    applications, as a new process would start (for tests)."""
    discovery.forget()
    http.reset()
    refusals.clear()
    with _kept_lock:
        _kept.clear()
