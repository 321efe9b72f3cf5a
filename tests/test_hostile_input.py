"""Hostile requests to the views: forged, replayed, oversized, cross-site.

tests/test_connect_flow.py covers the basic refusals (replay, another
session, another user, a handful of bad callbacks, an external ``next`` on
connect, another user's disconnect). This file adds property-based tests over
the callback and connect parameters and the remaining edges: a state is spent
by a failed attempt too, expires, and is pruned; ``next`` tricks; CSRF on every
state-changing view but the form_post callback; oversized input refused before
any request to Microsoft.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import hypothesis
import pytest
from django.conf import settings
from django.test import Client
from hypothesis import HealthCheck
from hypothesis import strategies as st

from django_live_oauth_mail import views
from django_live_oauth_mail.identity import flows
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import FakeIdentityPlatform

pytestmark = pytest.mark.django_db(transaction=True)

CALLBACK = "/mail/callback/"
PROPERTY_SETTINGS = hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Injection payloads; each carries the marker so a raw reflection is unambiguous.
MARKER = "XSSPROBE"
PAYLOADS = [
    f"<script>alert('{MARKER}')</script>",
    f'"><script>alert("{MARKER}")</script>',
    f"'><img src=x onerror=alert('{MARKER}')>",
    f'" autofocus onfocus="alert(`{MARKER}`)" x="',
    f"</textarea></title><svg onload=alert('{MARKER}')>",
    f"{{{{ settings.SECRET_KEY }}}}{MARKER}",
    f"{{% debug %}}{MARKER}",
    f"javascript:alert('{MARKER}')",
    f"%3Cscript%3E{MARKER}%3C/script%3E",
    f"\r\nSet-Cookie: {MARKER}=1",
    f"\x00{MARKER}\x00",
    f"\u202e{MARKER}\ufeff\U0001f4a9",
]
# What must never reach a page as markup, however the payload was cut or wrapped.
DANGEROUS = ["<script>alert(", "<img src=x", "<svg onload", '" autofocus onfocus="']
PARAMETER_NAMES = [
    "state",
    "code",
    "error",
    "error_description",
    "error_uri",
    "error_codes",
    "session_state",
    "client_info",
    "id_token",
    "access_token",
    "next",
    views.RESUBMITTED,
]

values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(PAYLOADS),
    st.builds(
        lambda before, payload, after: before + payload + after,
        st.text(max_size=8),
        st.sampled_from(PAYLOADS),
        st.text(max_size=8),
    ),
    st.sampled_from(["", "access_denied", "server_error", "x" * 9000]),
)
names = st.one_of(
    st.sampled_from(PARAMETER_NAMES),
    st.text(min_size=1, max_size=20),
    st.sampled_from(PAYLOADS),
)
parameters = st.dictionaries(names, values, max_size=8)
# The fields an authorization response really has, each present half the time,
# plus anything else.
callback_parameters = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries(
        {},
        optional={
            name: values for name in ("code", "error", "error_description", "error_uri")
        },
    ),
    parameters,
)


def signed_in(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def start_flow(client: Client, **data: str) -> tuple[str, str]:
    """POST to connect; return the authorize URL and the flow's state."""
    response = client.post("/mail/connect/", data)
    assert response.status_code == 302
    authorize = str(response["Location"])
    return authorize, parse_qs(urlsplit(authorize).query)["state"][0]


def send_callback(client: Client, method: str, params: dict[str, str]) -> Any:
    if method == "get":
        return client.get(CALLBACK, params)
    # What a browser posts for response_mode=form_post.
    return client.post(
        CALLBACK, urlencode(params), content_type="application/x-www-form-urlencoded"
    )


def assert_nothing_reflected_raw(body: str, params: dict[str, str]) -> None:
    for text in [*params, *params.values()]:
        # Escaping changes these characters: such a text must never appear as
        # is. (Not "&": "a&" is a prefix of its own escaped form "a&amp;".)
        if MARKER in text and any(c in text for c in "<>\"'"):
            assert text not in body, f"{text!r} was reflected without escaping"
    for fragment in DANGEROUS:
        assert fragment not in body, f"{fragment!r} was reflected without escaping"
    assert settings.SECRET_KEY not in body  # no template evaluation of input
    assert f"alert('{MARKER}')" not in body
    assert f'alert("{MARKER}")' not in body


def assert_no_successful_exchange(platform: FakeIdentityPlatform) -> None:
    assert all(r.status != 200 for r in platform.token_requests)
    assert MailAccount.objects.count() == 0


# -- property-based: the callback ---------------------------------------------------


@PROPERTY_SETTINGS
@hypothesis.given(
    params=callback_parameters,
    method=st.sampled_from(["get", "post"]),
    # No pending flow; a pending flow and another state; the pending flow's state.
    flow=st.sampled_from(["none", "pending", "real-state", "real-state"]),
)
@hypothesis.example(
    params={"error": PAYLOADS[0], "error_description": PAYLOADS[1]},
    method="get",
    flow="real-state",
)
@hypothesis.example(
    params={"code": PAYLOADS[2], "client_info": PAYLOADS[3]},
    method="post",
    flow="real-state",
)
def test_callback_never_errors_stores_or_reflects(
    user: Any,
    identity_platform: FakeIdentityPlatform,
    params: dict[str, str],
    method: str,
    flow: str,
) -> None:
    client = signed_in(user, enforce_csrf_checks=True)
    if flow != "none":
        _, state = start_flow(client, csrfmiddlewaretoken=csrf_token(client))
        if flow == "real-state":
            params = {**params, "state": state}

    response = send_callback(client, method, params)

    # A CSRF-checking client still gets through: form_post needs no token.
    assert 400 <= response.status_code < 500, response.status_code
    assert response.status_code != 403
    assert_nothing_reflected_raw(response.content.decode(), params)
    assert_no_successful_exchange(identity_platform)


@PROPERTY_SETTINGS
@hypothesis.given(params=parameters, method=st.sampled_from(["get", "post"]))
def test_anonymous_callback_never_errors_or_reflects(
    identity_platform: FakeIdentityPlatform, params: dict[str, str], method: str
) -> None:
    # Without a session cookie the POST is echoed back in a self-submitting form
    # (resubmit.html), the one page that renders request parameters.
    response = send_callback(Client(enforce_csrf_checks=True), method, params)

    assert response.status_code in {200, 302, 400}, response.status_code
    if response.status_code == 302:
        location = response["Location"]
        assert location.startswith("/login/?next=")
        assert "\n" not in location and "\r" not in location
    assert_nothing_reflected_raw(response.content.decode(), params)
    assert identity_platform.token_requests == []
    assert MailAccount.objects.count() == 0


# -- property-based: the connect form ------------------------------------------------

hostile_next = st.one_of(
    st.sampled_from(
        [
            "https://evil.example/",
            "//evil.example/",
            "///evil.example/",
            "/\\evil.example/",
            "\\\\evil.example/",
            "https:evil.example",
            "http://testserver@evil.example/",
            "http://evil.example\\@testserver/",
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            " //evil.example/",
            "\t//evil.example/",
            "/\t/evil.example/",
            "/mail/",
            "http://testserver/ok/",
        ]
    ),
    st.text(max_size=30),
    st.sampled_from(PAYLOADS),
)


def is_same_site(url: str) -> bool:
    """Would a browser stay on testserver? (Browsers read '\\' as '/'.)"""
    normalized = re.sub(r"[\x00-\x20]", "", url).replace("\\", "/")
    parts = urlsplit(normalized)
    if parts.scheme not in {"", "http", "https"}:
        return False
    return parts.netloc in {"", "testserver"} and not normalized.startswith("//")


@PROPERTY_SETTINGS
@hypothesis.given(
    login_hint=values, next_url=hostile_next, extra=parameters, post=st.booleans()
)
def test_connect_never_errors_reflects_or_keeps_a_foreign_next(
    user: Any,
    identity_platform: FakeIdentityPlatform,
    login_hint: str,
    next_url: str,
    extra: dict[str, str],
    post: bool,
) -> None:
    client = signed_in(user)
    data = {**extra, "login_hint": login_hint, "next": next_url}
    if not post:
        response = client.get("/mail/connect/", data)
        assert response.status_code == 200
        body = response.content.decode()
        assert_nothing_reflected_raw(body, data)
        if not is_same_site(next_url):
            assert 'name="next"' not in body
        return

    response = client.post("/mail/connect/", data)

    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(identity_platform.base_url + "/")
    assert not re.search(r"[\x00-\x20]", location)
    [entry] = client.session[flows.SESSION_KEY].values()
    assert entry["next"] is None or is_same_site(entry["next"])
    assert identity_platform.token_requests == []


# -- the state: single use, bound, short-lived ---------------------------------------


def test_a_failed_attempt_spends_the_state(
    user: Any, identity_platform: FakeIdentityPlatform
) -> None:
    client = signed_in(user)
    authorize, state = start_flow(client)
    answer = identity_platform.approve(authorize, "alice@outlook.com")

    forged = client.get(CALLBACK, {"state": state, "code": "forged"})
    genuine = client.get(CALLBACK, dict(answer.params))

    assert forged.status_code == genuine.status_code == 400
    assert b"already used" in genuine.content
    # Only the forged code was sent to the platform; the genuine one never was.
    assert [r.status for r in identity_platform.token_requests] == [400]
    assert MailAccount.objects.count() == 0


def test_a_declined_answer_spends_the_state(
    user: Any, identity_platform: FakeIdentityPlatform
) -> None:
    client = signed_in(user)
    authorize, state = start_flow(client)
    answer = identity_platform.approve(authorize, "alice@outlook.com")
    declined = client.get(CALLBACK, {"state": state, "error": "access_denied"})
    assert declined.status_code == 400
    assert client.get(CALLBACK, dict(answer.params)).status_code == 400
    assert identity_platform.token_requests == []
    assert MailAccount.objects.count() == 0


def test_a_flow_older_than_max_age_is_refused(
    user: Any, identity_platform: FakeIdentityPlatform
) -> None:
    client = signed_in(user)
    authorize, state = start_flow(client)
    answer = identity_platform.approve(authorize, "alice@outlook.com")
    session = client.session
    session[flows.SESSION_KEY][state]["started"] -= flows.MAX_AGE_SECONDS + 1
    session.save()

    assert client.get(CALLBACK, dict(answer.params)).status_code == 400
    assert identity_platform.token_requests == []
    assert MailAccount.objects.count() == 0


def test_only_the_newest_pending_flows_are_kept(
    user: Any, identity_platform: FakeIdentityPlatform
) -> None:
    client = signed_in(user)
    oldest, _ = start_flow(client)
    for _ in range(flows.MAX_PENDING - 1):
        start_flow(client)
    newest, _ = start_flow(client)
    assert len(client.session[flows.SESSION_KEY]) == flows.MAX_PENDING

    stale = identity_platform.approve(oldest, "alice@outlook.com")
    assert client.get(CALLBACK, dict(stale.params)).status_code == 400
    assert identity_platform.token_requests == []
    fresh = identity_platform.approve(newest, "alice@outlook.com")
    assert client.get(CALLBACK, dict(fresh.params)).status_code == 302


# -- next: only to this site -----------------------------------------------------------

FOREIGN_NEXT = [
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "https:evil.example",
    "http://testserver@evil.example/",
    "javascript:alert(1)",
    "\t//evil.example/",
]


@pytest.mark.parametrize("next_url", FOREIGN_NEXT)
def test_callback_never_redirects_off_site(
    user: Any, identity_platform: FakeIdentityPlatform, next_url: str
) -> None:
    client = signed_in(user)
    authorize, _ = start_flow(client, next=next_url)
    answer = identity_platform.approve(authorize, "alice@outlook.com")
    response = client.get(CALLBACK, dict(answer.params))
    assert response.status_code == 302
    assert response["Location"] == "/mail/"


def test_an_http_next_is_refused_on_an_https_site(user: Any) -> None:
    def kept_next(next_url: str) -> str | None:
        client = signed_in(user)
        client.post("/mail/connect/", {"next": next_url}, secure=True)
        [entry] = client.session[flows.SESSION_KEY].values()
        return entry["next"]  # type: ignore[no-any-return]

    assert kept_next("http://testserver/x/") is None
    assert kept_next("https://testserver/y/") == "https://testserver/y/"


@pytest.mark.parametrize("next_url", [*FOREIGN_NEXT[:3], "https://evil.example/"])
def test_disconnect_never_redirects_off_site(
    link: Any, user: Any, next_url: str
) -> None:
    account = link(user, "alice@outlook.com")
    client = signed_in(user)
    url = f"/mail/{account.pk}/disconnect/"
    question = client.get(url, {"next": next_url}).content.decode()
    assert "evil.example" not in question  # neither kept nor offered as Cancel
    assert 'href="/mail/">Cancel</a>' in question
    response = client.post(url, {"next": next_url})
    assert response.status_code == 302
    assert response["Location"] == "/mail/"


def test_disconnect_follows_a_local_next(link: Any, user: Any) -> None:
    account = link(user, "alice@outlook.com")
    response = signed_in(user).post(
        f"/mail/{account.pk}/disconnect/", {"next": "/settings/mail/"}
    )
    assert response["Location"] == "/settings/mail/"


# -- CSRF ------------------------------------------------------------------------------


def csrf_token(client: Client) -> str:
    client.get("/mail/connect/")
    return str(client.cookies["csrftoken"].value)


def test_connect_works_with_the_csrf_token(user: Any) -> None:
    strict = signed_in(user, enforce_csrf_checks=True)
    token = csrf_token(strict)
    assert strict.post("/mail/connect/").status_code == 403
    forged = {"csrfmiddlewaretoken": "x" * 64}
    assert strict.post("/mail/connect/", forged).status_code == 403
    assert (
        strict.post("/mail/connect/", {"csrfmiddlewaretoken": token}).status_code == 302
    )


def test_disconnect_requires_the_csrf_token(link: Any, user: Any) -> None:
    account = link(user, "alice@outlook.com")
    strict = signed_in(user, enforce_csrf_checks=True)
    token = csrf_token(strict)
    url = f"/mail/{account.pk}/disconnect/"

    assert strict.post(url).status_code == 403
    assert strict.post(url, {"csrfmiddlewaretoken": "x" * 64}).status_code == 403
    assert MailAccount.objects.filter(pk=account.pk).exists()
    assert strict.post(url, {"csrfmiddlewaretoken": token}).status_code == 302
    assert not MailAccount.objects.filter(pk=account.pk).exists()


def test_form_post_callback_needs_no_csrf_token(
    user: Any, identity_platform: FakeIdentityPlatform, live_settings: dict[str, Any]
) -> None:
    live_settings["RESPONSE_MODE"] = "form_post"
    strict = signed_in(user, enforce_csrf_checks=True)
    token = csrf_token(strict)
    response = strict.post("/mail/connect/", {"csrfmiddlewaretoken": token})
    answer = identity_platform.approve(response["Location"], "alice@outlook.com")
    assert answer.response_mode == "form_post"

    # Microsoft's form has no CSRF token of ours; the state protects it instead.
    linked = strict.post(urlsplit(answer.redirect_uri).path, answer.params)

    assert linked.status_code == 302
    assert MailAccount.objects.filter(user=user, email="alice@outlook.com").exists()


# -- other users' accounts -------------------------------------------------------------


def test_another_users_account_looks_exactly_like_a_missing_one(
    link: Any, user: Any, other_user: Any
) -> None:
    theirs = link(other_user, "bob@contoso.com")
    missing_pk = theirs.pk + 1000
    strict = signed_in(user, enforce_csrf_checks=True)
    token = {"csrfmiddlewaretoken": csrf_token(strict)}

    foreign = strict.post(f"/mail/{theirs.pk}/disconnect/", token)
    missing = strict.post(f"/mail/{missing_pk}/disconnect/", token)

    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    foreign = strict.get(f"/mail/{theirs.pk}/disconnect/")
    missing = strict.get(f"/mail/{missing_pk}/disconnect/")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    assert MailAccount.objects.filter(pk=theirs.pk).exists()
    assert "bob@contoso.com" not in strict.get("/mail/").content.decode()


# -- oversized input: refused before Microsoft is asked -------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize(
    "oversize",
    [
        {"code": "c" * (views.MAX_PARAM_LENGTH + 1)},
        {"error_description": "d" * (views.MAX_PARAM_LENGTH + 1)},
        {f"p{n}": "v" for n in range(views.MAX_PARAMS + 1)},
    ],
    ids=["long-code", "long-description", "too-many"],
)
def test_oversized_callbacks_are_refused_without_asking_microsoft(
    user: Any,
    identity_platform: FakeIdentityPlatform,
    method: str,
    oversize: dict[str, str],
) -> None:
    client = signed_in(user)
    _, state = start_flow(client)
    response = send_callback(client, method, {"state": state, **oversize})
    assert response.status_code == 400
    assert b"too large" in response.content
    assert identity_platform.token_requests == []
    assert MailAccount.objects.count() == 0


@pytest.mark.parametrize("signed_in_user", [True, False])
def test_requests_beyond_djangos_limits_are_a_400(
    user: Any, identity_platform: FakeIdentityPlatform, signed_in_user: bool
) -> None:
    client = signed_in(user) if signed_in_user else Client()
    too_many = urlencode({f"f{n}": "v" for n in range(1100)})  # > 1000 fields
    too_big = urlencode({"code": "c" * (3 * 1024 * 1024)})  # > 2.5 MB body
    form = "application/x-www-form-urlencoded"
    for body in (too_many, too_big):
        assert client.post(CALLBACK, body, content_type=form).status_code == 400
    assert client.get(f"{CALLBACK}?{too_many}").status_code == 400
    assert identity_platform.token_requests == []
