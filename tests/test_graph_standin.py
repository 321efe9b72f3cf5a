"""FakeGraphAPI, driven with plain requests: what it answers and what it records."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
import requests

from django_live_oauth_mail.testing import FakeGraphAPI, XOAuth2SMTPServer

BOB = "bob@contoso.com"
SEND_ONLY = frozenset({"Mail.Send"})
READ_WRITE_SEND = frozenset({"Mail.Send", "Mail.ReadWrite"})


@dataclass(frozen=True)
class Issued:
    """Duck-typed stand-in for the identity platform's IssuedToken."""

    mailbox: str
    audience: str
    scopes: frozenset[str]
    expires_at: float


class Tokens:
    """A fake token validator: tokens are minted by the test, for the server."""

    def __init__(self) -> None:
        self.issued: dict[str, Issued] = {}

    def mint(self, graph: FakeGraphAPI, mailbox: str = BOB, **changes: Any) -> str:
        fields = {"audience": graph.audience, "scopes": SEND_ONLY, **changes}
        fields.setdefault("expires_at", time.time() + 3600)
        token = f"token-{len(self.issued)}"
        self.issued[token] = Issued(mailbox, **fields)
        return token

    def introspect(self, token: str) -> Issued | None:
        return self.issued.get(token)


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def graph(tokens: Tokens) -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI(tokens.introspect) as server:
        yield server


def mime(
    sender: str = BOB, to: str = "carol@example.org", bcc: str | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    if to:
        message["To"] = to
    if bcc:
        message["Bcc"] = bcc
    message["Subject"] = "Hello"
    message.set_content("Hi Carol,\nthis came through Graph.\n")
    return message


def post(
    graph: FakeGraphAPI, path: str, token: str | None, body: bytes | EmailMessage = b""
) -> requests.Response:
    if isinstance(body, EmailMessage):
        body = base64.b64encode(body.as_bytes())
    headers = {"Content-Type": "text/plain"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{graph.endpoint}/v1.0/{path}"
    return requests.post(url, body, headers=headers, verify=graph.ca_bundle, timeout=10)


def error(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_send_mail_delivers_to_all_recipients_and_hides_bcc(
    graph: FakeGraphAPI, tokens: Tokens
) -> None:
    token = tokens.mint(graph)
    response = post(graph, "me/sendMail", token, mime(bcc="dave@example.org"))

    assert response.status_code == 202
    assert response.content == b""
    [message] = graph.wait_for_messages(1)
    assert message.mail_from == BOB
    assert message.rcpt_tos == ["carol@example.org", "dave@example.org"]
    assert (message.authenticated_as, message.mechanism) == (BOB, "graph")
    assert message.message["Bcc"] is None
    assert message.text == "Hi Carol,\nthis came through Graph.\n"
    [sent_copy] = graph.sent_items[BOB]
    assert b"Bcc: dave@example.org" in sent_copy
    assert graph.requests == [("POST", "/v1.0/me/sendMail")]


def test_token_problems_are_invalid_authentication_token(
    graph: FakeGraphAPI, tokens: Tokens
) -> None:
    expired = tokens.mint(graph, expires_at=time.time() - 1)
    other_resource = tokens.mint(graph, audience="https://graph.microsoft.com")
    answers = {
        None: "Access token is empty.",
        "unknown": "IDX14100: JWT is not well formed, there are no dots (.).",
        expired: "Lifetime validation failed, the token is expired.",
        other_resource: "Access token validation failure. Invalid audience.",
    }
    for token, text in answers.items():
        response = post(graph, "me/sendMail", token, mime())
        assert error(response) == (401, "InvalidAuthenticationToken")
        body = response.json()["error"]
        assert body["message"] == text
        assert "token" not in str(response.headers)
        assert set(body["innerError"]) == {"date", "request-id"}
    assert graph.messages == []


def test_each_call_needs_its_permission(graph: FakeGraphAPI, tokens: Tokens) -> None:
    read_write = tokens.mint(graph, scopes=frozenset({"Mail.ReadWrite"}))
    send_only = tokens.mint(graph)

    assert error(post(graph, "me/sendMail", read_write, mime())) == (
        403,
        "ErrorAccessDenied",
    )
    assert error(post(graph, "me/messages", send_only, mime())) == (
        403,
        "ErrorAccessDenied",
    )
    draft = post(graph, "me/messages", read_write, mime()).json()["id"]
    # Sending a draft needs Mail.Send, as in Graph; Mail.ReadWrite is not enough.
    assert post(graph, f"me/messages/{draft}/send", read_write).status_code == 403
    assert post(graph, f"me/messages/{draft}/send", send_only).status_code == 202


def test_mailbox_rules_rest_disabled_quota_and_other_users(
    graph: FakeGraphAPI, tokens: Tokens
) -> None:
    token = tokens.mint(graph)
    same_user = post(graph, f"users/{BOB.upper()}/sendMail", token, mime())
    assert same_user.status_code == 202
    assert error(post(graph, "users/eve@contoso.com/sendMail", token, mime())) == (
        403,
        "ErrorAccessDenied",
    )
    graph.quota_exceeded.add(BOB)
    assert error(post(graph, "me/sendMail", token, mime())) == (
        403,
        "ErrorQuotaExceeded",
    )
    graph.rest_disabled.add(BOB.upper())
    assert error(post(graph, "me/sendMail", token, mime())) == (
        404,
        "MailboxNotEnabledForRESTAPI",
    )
    assert len(graph.messages) == 1


def test_send_as_needs_a_grant(graph: FakeGraphAPI, tokens: Tokens) -> None:
    token = tokens.mint(graph)
    shared = "sales@contoso.com"

    assert error(post(graph, "me/sendMail", token, mime(sender=shared))) == (
        403,
        "ErrorSendAsDenied",
    )
    graph.send_as[BOB] = {shared}
    assert post(graph, "me/sendMail", token, mime(sender=shared)).status_code == 202
    assert graph.messages[0].mail_from == shared


def test_bodies_graph_refuses(graph: FakeGraphAPI, tokens: Tokens) -> None:
    token = tokens.mint(graph)
    graph.max_request_bytes = 2000
    big = mime()
    big.set_content("x" * 3000)
    answers = [
        (post(graph, "me/sendMail", token, big), (413, "RequestBodyTooLarge")),
        (
            post(graph, "me/sendMail", token, b"not base64!"),
            (400, "ErrorMimeContentInvalidBase64String"),
        ),
        (
            post(graph, "me/sendMail", token, base64.b64encode(b"no headers here")),
            (400, "ErrorMimeContentInvalid"),
        ),
        (
            post(graph, "me/sendMail", token, mime(to="")),
            (400, "ErrorInvalidRecipients"),
        ),
    ]
    for response, expected in answers:
        assert error(response) == expected
    assert graph.messages == []


def test_large_message_goes_through_a_draft_and_an_upload_session(
    graph: FakeGraphAPI, tokens: Tokens
) -> None:
    token = tokens.mint(graph, scopes=READ_WRITE_SEND)
    created = post(graph, "me/messages", token, mime(bcc="dave@example.org"))
    assert created.status_code == 201
    draft = created.json()
    item = {"attachmentType": "file", "name": "big.bin", "size": 5 * 1024 * 1024}
    session = requests.post(
        f"{graph.endpoint}/v1.0/me/messages/{draft['id']}/attachments/"
        "createUploadSession",
        json={"AttachmentItem": {**item, "contentType": "application/zip"}},
        headers={"Authorization": f"Bearer {token}"},
        verify=graph.ca_bundle,
        timeout=10,
    )
    assert session.status_code == 201
    assert session.json()["nextExpectedRanges"] == ["0-"]
    upload_url = session.json()["uploadUrl"]
    content = bytes(range(256)) * (5 * 4096)
    chunk = 2 * 1024 * 1024
    answers = []
    for start in range(0, len(content), chunk):
        part = content[start : start + chunk]
        answers.append(
            requests.put(
                upload_url,
                part,
                headers={
                    "Content-Range": f"bytes {start}-{start + len(part) - 1}/"
                    f"{len(content)}"
                },
                verify=graph.ca_bundle,
                timeout=10,
            )
        )
    assert [a.status_code for a in answers] == [200, 200, 201]
    assert answers[0].json()["nextExpectedRanges"] == [f"{chunk}-"]
    assert "/attachments/" in answers[-1].headers["Location"]

    sent = post(graph, f"me/messages/{draft['id']}/send", token)

    assert sent.status_code == 202
    [message] = graph.messages
    assert message.rcpt_tos == ["carol@example.org", "dave@example.org"]
    assert message.message["Bcc"] is None
    assert message.attachments == [("big.bin", content)]
    assert message.text == "Hi Carol,\nthis came through Graph.\n"
    assert error(post(graph, f"me/messages/{draft['id']}/send", token)) == (
        404,
        "ErrorItemNotFound",
    )
    assert all("authtoken" not in path for _, path in graph.requests)


def test_upload_session_rules(graph: FakeGraphAPI, tokens: Tokens) -> None:
    token = tokens.mint(graph, scopes=READ_WRITE_SEND)
    draft = post(graph, "me/messages", token, mime()).json()["id"]

    def create(size: int) -> requests.Response:
        item = {"attachmentType": "file", "name": "a", "size": size}
        return requests.post(
            f"{graph.endpoint}/v1.0/me/messages/{draft}/attachments/"
            "microsoft.graph.createUploadSession",
            json={"AttachmentItem": item},
            headers={"Authorization": f"Bearer {token}"},
            verify=graph.ca_bundle,
            timeout=10,
        )

    def put(url: str, content_range: str, body: bytes) -> requests.Response:
        headers = {"Content-Range": content_range}
        return requests.put(
            url, body, headers=headers, verify=graph.ca_bundle, timeout=10
        )

    assert create(1000).json()["error"]["code"] == (
        "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"
    )
    assert error(create(151 * 1024 * 1024)) == (400, "ErrorMessageSizeExceeded")
    graph.min_upload_session_bytes = 0
    url = create(10).json()["uploadUrl"]
    for wrong in ("bytes 5-9/10", "bytes 0-4/11", "bytes 0-3/10", "0-4/10"):
        refused = put(url, wrong, b"x" * 5)
        assert error(refused) == (416, "ErrorInvalidRange")
        assert refused.json()["nextExpectedRanges"] == ["0-"]
    assert put(url, "bytes 0-4/10", b"x" * 5).status_code == 200
    assert error(post(graph, f"me/messages/{draft}/send", token)) == (
        400,
        "ErrorAttachmentUploadIncomplete",
    )
    assert error(put(url + "x", "bytes 5-9/10", b"x" * 5)) == (404, "ErrorItemNotFound")
    # The uploadUrl authorizes itself: Graph refuses a bearer token on it.
    with_bearer = requests.put(
        url,
        b"x" * 5,
        headers={"Content-Range": "bytes 5-9/10", "Authorization": f"Bearer {token}"},
        verify=graph.ca_bundle,
        timeout=10,
    )
    assert error(with_bearer) == (401, "InvalidAuthenticationToken")
    deleted = requests.delete(
        f"{graph.endpoint}/v1.0/me/messages/{draft}",
        headers={"Authorization": f"Bearer {token}"},
        verify=graph.ca_bundle,
        timeout=10,
    )
    assert deleted.status_code == 204
    assert error(post(graph, f"me/messages/{draft}/send", token)) == (
        404,
        "ErrorItemNotFound",
    )
    assert graph.messages == []


def test_fail_next_answers_api_requests_with_the_fault(
    graph: FakeGraphAPI, tokens: Tokens
) -> None:
    token = tokens.mint(graph)
    graph.fail_next(2, headers={"Retry-After": "1"})

    answers = [post(graph, "me/sendMail", token, mime()) for _ in range(3)]

    assert [a.status_code for a in answers] == [429, 429, 202]
    assert answers[0].headers["Retry-After"] == "1"
    assert answers[0].json()["error"]["code"] == "ApplicationThrottled"
    graph.fail_next(status=503, code="ServiceUnavailable", message="Try later.")
    unavailable = post(graph, "me/sendMail", token, mime())
    assert error(unavailable) == (503, "ServiceUnavailable")
    graph.reset()
    assert (graph.requests, graph.messages, graph.sent_items) == ([], [], {})


def test_a_fifth_concurrent_request_for_a_mailbox_is_throttled(
    graph: FakeGraphAPI, tokens: Tokens
) -> None:
    token = tokens.mint(graph)
    graph.response_delay = 1.0
    answers: list[requests.Response] = []
    start = threading.Barrier(5)

    def send() -> None:
        start.wait()
        answers.append(post(graph, "me/sendMail", token, mime()))

    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    throttled = [a for a in answers if a.status_code == 429]
    assert sorted(a.status_code for a in answers) == [202, 202, 202, 202, 429]
    assert throttled[0].headers["Retry-After"] == "1"
    assert "MailboxConcurrency" in throttled[0].json()["error"]["message"]


def test_shares_the_smtp_servers_inbox_and_send_as_grants(tokens: Tokens) -> None:
    smtp = XOAuth2SMTPServer(None)
    platform = type("Platform", (), {"introspect": staticmethod(tokens.introspect)})()
    with FakeGraphAPI(platform, smtp=smtp) as graph:
        smtp.send_as[BOB] = {"sales@contoso.com"}
        token = tokens.mint(graph)
        response = post(graph, "me/sendMail", token, mime(sender="sales@contoso.com"))

    assert response.status_code == 202
    assert smtp.messages == graph.messages
    assert smtp.messages[0].mechanism == "graph"
