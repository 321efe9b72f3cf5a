"""Every word identity says when something fails: one table per kind of failure.

Error wording lives in one table per protocol (issue #24), as msal keeps its
message templates on its exception classes: each row names a reason, the
exception a caller meets and the message, which names the mailbox and says
what to do next (link again, grant consent, fix a setting). Which row
applies is decided elsewhere (:mod:`.errors`, and where a check finds it).
The fields filled in are the platform's error code and the first line of its
description (which hold no secret), names and URLs: never a token, a code or
a credential.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import (
    AppConsentRequired,
    AppCredentialsError,
    AuthorizationDeclined,
    AuthorizationFailed,
    ConfigurationError,
    ConsentRequired,
    IdentityPlatformUnavailable,
    ReconnectRequired,
    TokenError,
)

#: No token was issued. ``{who}`` is the mailbox, or "this mailbox" in a
#: connect flow; ``{error}`` and ``{description}`` are the platform's.
TOKEN_REFUSALS: dict[str, tuple[type[TokenError], str]] = {
    # Only a public client sends no secret: the device-code link, and the
    # refreshes of a mailbox linked so. A new secret would not help.
    "public_client_flows_disabled": (
        AppCredentialsError,
        "The app registration does not allow public client flows, which "
        "linking with a device code needs ({description}). An administrator "
        "must set 'Allow public client flows' to Yes under Authentication in "
        "the app registration; users do not need to link again.",
    ),
    "app_credentials_refused": (
        AppCredentialsError,
        "The app registration's credentials were refused "
        "({description}). An administrator must create a new client secret "
        "(or upload a certificate) in the Azure portal and update "
        "LIVE_OAUTH_MAIL['CLIENT_SECRET'] (or CLIENT_CERTIFICATE); users "
        "do not need to link again.",
    ),
    "graph_consent_missing": (
        ConsentRequired,
        "{who} has not granted this app {permissions} on Microsoft Graph "
        "({description}), which sending through Graph needs. Link the "
        "mailbox again (re-link) to grant it; until then it can send only "
        "through SMTP.",
    ),
    "consent_missing": (
        ReconnectRequired,
        "Consent is missing for {who} ({description}). A tenant administrator "
        "must grant admin consent to the app (Azure portal > Enterprise "
        "applications > Permissions), then link the mailbox again.",
    ),
    # Refresh tokens that ran out rather than being revoked: say which limit
    # was reached and what would keep it from happening again. Microsoft ends
    # a refresh token unused for 90 days; tenants cannot change that since
    # configurable refresh token lifetimes were retired in 2021.
    "unused_for_90_days": (
        ReconnectRequired,
        "The sign-in for {who} expired because it was not used for 90 days "
        "({description}). Link the mailbox again. To keep it from expiring, send "
        "mail from it, or run `manage.py live_oauth_mail refresh`, at least once "
        "a month.",
    ),
    "sign_in_frequency": (
        ReconnectRequired,
        "The sign-in for {who} expired because the tenant's sign-in frequency "
        "policy in Conditional Access limits how long a sign-in lasts "
        "({description}). Link the mailbox again. A tenant administrator can "
        "lengthen the sign-in frequency for this app, or exclude the app from "
        "that policy.",
    ),
    "policy": (
        ReconnectRequired,
        "{who} must sign in again because of an organisation policy "
        "(multi-factor authentication or Conditional Access: {description}). "
        "Link the mailbox again.",
    ),
    "grant_gone": (
        ReconnectRequired,
        "The sign-in for {who} has expired or was revoked ({description}). "
        "Link the mailbox again.",
    ),
    "temporarily_unavailable": (
        IdentityPlatformUnavailable,
        "The Microsoft identity platform is temporarily unavailable "
        "({description}). Try again in a moment.",
    ),
    "refused": (
        TokenError,
        "Microsoft refused to issue a token for {who}: {error} ({description}).",
    ),
    "no_service_principal": (
        AppConsentRequired,
        "The app has no service principal in tenant {tenant}, so it cannot "
        "send as {mailbox} ({detail}). A tenant administrator grants admin "
        "consent at {consent_url}",
    ),
    # Found by us, not the platform: the row's name is the exception's ``error``.
    "missing_role": (
        AppConsentRequired,
        "The app's token for {mailbox} lacks the {role} application "
        "permission: admin consent was not granted in tenant {tenant}. Add "
        "{role} under API permissions, then a tenant administrator grants "
        "consent at {consent_url}",
    ),
    "unknown_tenant": (
        TokenError,
        "The identity platform does not know tenant {tenant!r} of {mailbox} "
        "({detail}). Register the mailbox again with its tenant id: "
        "`manage.py live_oauth_mail add-app MAILBOX --tenant ID`.",
    ),
    "unreachable": (
        IdentityPlatformUnavailable,
        "Could not reach the identity platform at {authority} ({failure}). Try "
        "again in a moment; if it persists, check LIVE_OAUTH_MAIL['AUTHORITY'] "
        "and the server's network access.",
    ),
    "unavailable": (
        IdentityPlatformUnavailable,
        "The Microsoft identity platform is not answering properly ({failure}). "
        "This is temporary and not the mailbox's fault: try again in a moment.",
    ),
    # The cache was decrypted, so the keys are right (a wrong key is a
    # ConfigurationError in models.py); what it holds is not a cache msal
    # wrote. Only a new sign-in replaces it, and that is the mailbox owner's
    # to do, so this marks the mailbox like a revoked grant.
    "unreadable_cache": (
        ReconnectRequired,
        "The stored sign-in for {mailbox} cannot be read ({problem}), so no "
        "token can be refreshed from it. Link the mailbox again to replace it.",
    ),
    "no_account": (
        ReconnectRequired,
        "No sign-in is stored for {mailbox}. Link the mailbox again.",
    ),
    "no_refresh_token": (
        ReconnectRequired,
        "No refresh token is stored for {mailbox}. Link the mailbox again.",
    ),
}

#: A connect flow ended without a mailbox; seen only by the person linking.
SIGN_IN_FAILURES: dict[str, tuple[type[AuthorizationFailed], str]] = {
    "cancelled": (
        AuthorizationDeclined,
        "You cancelled the sign-in, so no mailbox was linked. You can try "
        "again whenever you like.",
    ),
    "sign_in_error": (
        AuthorizationFailed,
        "Microsoft sign-in ended with an error ({error}): {description}",
    ),
    "answer_mismatch": (
        AuthorizationFailed,
        "The sign-in response did not match this sign-in. Please start again.",
    ),
    "no_email": (
        AuthorizationFailed,
        "Microsoft did not say which mailbox you signed in with (no email or "
        "preferred_username claim). Make sure the app registration grants the "
        "'email' delegated permission, then link again.",
    ),
    "account_kind_refused": (
        AuthorizationFailed,
        "This kind of account cannot sign in with the configured authority "
        "({description}). To accept personal Outlook.com accounts, set "
        "LIVE_OAUTH_MAIL['AUTHORITY'] to https://login.microsoftonline.com/common "
        "(or /consumers).",
    ),
    "redirect_uri_unregistered": (
        AuthorizationFailed,
        "The redirect URI {redirect_uri} is not registered for this app "
        "({description}). Add exactly that URI under Authentication > Redirect "
        "URIs in the app registration, or set LIVE_OAUTH_MAIL['REDIRECT_URI'] to "
        "one that is registered.",
    ),
    "not_accepted": (
        AuthorizationFailed,
        "Microsoft did not accept the sign-in ({description}). Please try again.",
    ),
    "device_declined": (
        AuthorizationDeclined,
        "The sign-in was declined; no mailbox was linked.",
    ),
    "device_code_expired": (
        AuthorizationFailed,
        "The device code expired before the sign-in finished. Run the command "
        "again and enter the new code.",
    ),
}

#: The settings cannot work; said before any request where possible.
MISCONFIGURATIONS: dict[str, str] = {
    "no_client_id": (
        "LIVE_OAUTH_MAIL['CLIENT_ID'] is not set. Copy the Application (client) "
        "ID from your app registration in the Azure portal."
    ),
    "authority_not_https": (
        "LIVE_OAUTH_MAIL['AUTHORITY'] must be an https URL, not {authority!r}; "
        "msal refuses anything else."
    ),
    "authority_refused": (
        "msal refused LIVE_OAUTH_MAIL['AUTHORITY'] {authority!r} ({detail})."
    ),
    "no_client_secret": (
        "LIVE_OAUTH_MAIL['CLIENT_SECRET'] is not set. Create a client secret "
        "under Certificates & secrets in your app registration, or upload a "
        "certificate there and set CLIENT_CERTIFICATE."
    ),
    "private_key_unreadable": (
        "LIVE_OAUTH_MAIL['CLIENT_CERTIFICATE']['private_key'] is neither a PEM "
        "private key nor a readable file ({failure})."
    ),
    "credential_cannot_sign": (
        "The app's credential could not sign a token request for {mailbox} "
        "({failure}). Check LIVE_OAUTH_MAIL['CLIENT_CERTIFICATE'] "
        "(`manage.py check`)."
    ),
}


def refusal(
    reason: str,
    *,
    mailbox: str | None,
    error: str | None = None,
    error_codes: Sequence[int] = (),
    description: str | None = None,
    **fields: object,
) -> TokenError:
    """The ``TOKEN_REFUSALS`` row ``reason`` as an exception.

    ``error`` is the platform's code; without one (a finding of ours) it is
    ``reason`` itself.
    """
    kind, template = TOKEN_REFUSALS[reason]
    message = template.format(
        mailbox=mailbox,
        who=mailbox or "this mailbox",
        error=error,
        description=description,
        **fields,
    )
    return kind(
        message,
        mailbox=mailbox,
        error=error or reason,
        error_codes=error_codes,
        description=description,
    )


def sign_in_failed(reason: str, **fields: object) -> AuthorizationFailed:
    """The ``SIGN_IN_FAILURES`` row ``reason`` as an exception."""
    kind, template = SIGN_IN_FAILURES[reason]
    return kind(template.format(**fields))


def misconfigured(reason: str, **fields: object) -> ConfigurationError:
    """The ``MISCONFIGURATIONS`` row ``reason`` as an exception."""
    return ConfigurationError(MISCONFIGURATIONS[reason].format(**fields))
