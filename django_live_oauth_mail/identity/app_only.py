"""The app's own token for an app mailbox (client credentials).

No person and no refresh token: the app asks for itself, in the mailbox's
tenant. The application object is kept (see
:func:`.applications.kept_for_app_tokens`) so that msal answers from its
cache for the token's lifetime, and the token's ``roles`` claim is checked
here, because Entra issues a token even when the role was never granted.
"""

from __future__ import annotations

from django.views.decorators.debug import sensitive_variables

from .applications import application, kept_for_app_tokens
from .authority import admin_consent_url
from .errors import TRANSPORT_ERRORS, app_error, unavailable
from .issued import AccessToken, Issued
from .wording import misconfigured, refusal


@sensitive_variables()
def acquire_app_token(
    tenant: str, scope: str, role: str, *, mailbox: str, force_refresh: bool = False
) -> AccessToken:
    """The app's own token for ``scope`` in ``tenant``; it must carry ``role``.

    No person and no refresh token: client credentials, against the
    mailbox's tenant (never ``common``). Entra issues a token even when the
    role was never granted, and the server's refusal then is vague, so the
    ``roles`` claim is checked here first.
    """
    entry = kept_for_app_tokens(tenant, scope)
    with entry.lock:
        if entry.app is None:
            entry.app = application(tenant=tenant, mailbox=mailbox)
        app = entry.app
        if force_refresh:
            app.remove_tokens_for_client()
        try:
            # Taken apart at once: msal's answer holds the token.
            issued = Issued.of(app.acquire_token_for_client([scope]))
        except TRANSPORT_ERRORS as error:
            raise unavailable(mailbox, error) from None
        except Exception as error:  # msal's signing (PyJWT) with a broken key
            raise misconfigured(
                "credential_cannot_sign", mailbox=mailbox, failure=type(error).__name__
            ) from None
        assert issued is not None  # msal answers client credentials with a dict
        if not issued.error and role not in issued.roles:
            # Else msal would answer from its cache, without the role, until the
            # token expires, even after the administrator consented.
            app.remove_tokens_for_client()
    if issued.error:
        raise app_error(issued.error, tenant, mailbox)
    if role not in issued.roles:
        raise refusal(
            "missing_role",
            mailbox=mailbox,
            role=role,
            tenant=tenant,
            consent_url=admin_consent_url(tenant),
        )
    return issued.token()
