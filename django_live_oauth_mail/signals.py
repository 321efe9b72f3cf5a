"""Signals, each sent after the transaction that caused it commits (except
``recipients_refused``, which has no transaction).

``account_connected``
    A mailbox was linked or re-linked. ``sender``: ``MailAccount``;
    ``user``: who linked it; ``account``: the ``MailAccount``;
    ``created``: False when an existing link was renewed.

``account_disconnected``
    A mailbox link was removed. ``sender``: ``MailAccount``; ``user``;
    ``account``: the deleted instance (its ``pk`` is already None).

``token_refreshed``
    A refresh token was redeemed and the rotated cache stored.
    ``sender``: ``MailAccount``; ``account``.

``recipients_refused``
    A message went out, but the server refused some of its recipients (all
    refused is an error instead). Sent at once. ``sender``: ``MailAccount``;
    ``account``; ``message``: the ``EmailMessage``; ``refused``: a dict of
    address to ``(code, reply text)``.

``reconnect_required``
    The grant is gone and the user must link the mailbox again.
    ``sender``: ``MailAccount``; ``account``; ``error``: the
    ``ReconnectRequired`` exception, whose message says why.

``message_sent``
    Microsoft accepted a queued message. ``sender``: ``OutboundMessage``;
    ``message``: the ``OutboundMessage``.

``message_failed``
    A queued message will not go out (status ``failed``), or may have gone
    out (``unknown``), whatever moved it there: the worker, a disconnected or
    revoked mailbox failing its waiting mail, or a worker that stopped
    mid-send. Once per message and outcome. ``sender``: ``OutboundMessage``;
    ``message``: the ``OutboundMessage`` (its body not loaded until read),
    whose ``last_error`` says why; ``error``: the exception.

The outbox's signals are sent with ``send_robust()``: a receiver's error is
logged, and changes nothing about the message.
"""

from django.dispatch import Signal

account_connected = Signal()
account_disconnected = Signal()
token_refreshed = Signal()
reconnect_required = Signal()
recipients_refused = Signal()
message_sent = Signal()
message_failed = Signal()
