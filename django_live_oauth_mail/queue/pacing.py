"""How fast one mailbox may send queued mail, decided through the database.

Exchange takes 30 messages a minute from a mailbox and delays the excess,
and counts recipients per 24 hours. Every worker, on every machine, asks
here before it sends, holding the mailbox's row lock (see
:func:`.worker.deliver`), so the limits hold across all of them with no
service beyond the database. The attempts themselves are the log: a sliding
window over the outbox rows' ``started_at``.
"""

from __future__ import annotations

import dataclasses
import datetime

from django.db.models import Sum

from ..conf import SETTINGS_NAME, conf, parse_rate
from ..exceptions import ConfigurationError
from ..models import MailAccount, OutboundMessage

DAY = datetime.timedelta(days=1)

#: Seconds added to each rate's period (at most a tenth of it); see wait_for.
MARGIN = 0.25


@dataclasses.dataclass(frozen=True)
class Wait:
    """Not now: try again at ``until``, for ``reason``."""

    until: datetime.datetime
    reason: str


def rate_of(account: MailAccount) -> tuple[int, float]:
    """The mailbox's own rate, else ``SEND_RATE``: (messages, seconds)."""
    if not account.send_rate:
        return conf.SEND_RATE
    try:
        return parse_rate(account.send_rate, f"The send rate of {account.email}")
    except ConfigurationError as error:
        # Written past the form and the field's validator (an update(), a
        # fixture, an older version): say which row to mend, not only why.
        raise ConfigurationError(
            f"{error} Correct it on the mailbox's admin page (Send rate), or "
            f"clear it to follow {SETTINGS_NAME}['SEND_RATE'], then retry the "
            "message."
        ) from None


def daily_budget(account: MailAccount) -> int:
    if account.daily_recipients is not None:
        return account.daily_recipients
    return conf.daily_recipients(account.kind)


def wait_for(
    account: MailAccount, message: OutboundMessage, now: datetime.datetime
) -> Wait | None:
    """When ``message`` may go, if not now. Call with the mailbox locked."""
    attempts = OutboundMessage.objects.filter(account=account).exclude(pk=message.pk)
    count, seconds = rate_of(account)
    # The window is a little longer than the period: a message reaches
    # Exchange some milliseconds after it is counted here, and not always the
    # same number, so back-to-back windows could otherwise overlap there.
    period = datetime.timedelta(seconds=seconds + min(MARGIN, seconds / 10))
    # The count-th latest attempt: inside the window, the mailbox is at its limit.
    oldest_counted = (
        attempts.filter(started_at__gt=now - period)
        .order_by("-started_at")
        .values_list("started_at", flat=True)[count - 1 : count]
    )
    for started in oldest_counted:
        assert started is not None  # filtered on it
        until = started + period
        # Messages deferred before this one fill the coming windows first, so
        # a backlog wakes a window's worth at a time, in order.
        ahead = (
            OutboundMessage.objects.filter(
                account=account,
                status=OutboundMessage.Status.DEFERRED,
                send_after__gte=until,
            )
            .exclude(pk=message.pk)
            .count()
        )
        return Wait(
            until + period * (ahead // count),
            f"Paced: {account.email} sends at most {count} message(s) per "
            f"{_period(seconds)}.",
        )
    budget = daily_budget(account)
    today = attempts.filter(started_at__gt=now - DAY, recipient_count__gt=0)
    used = today.aggregate(total=Sum("recipient_count"))["total"] or 0
    if used + message.recipient_count <= budget:
        return None
    # Wait until enough of the last 24 hours' recipients have aged out.
    freed, until = 0, now + DAY
    for started, recipients in today.order_by("started_at").values_list(
        "started_at", "recipient_count"
    ):
        freed += recipients
        if started and used - freed + message.recipient_count <= budget:
            until = started + DAY
            break
    return Wait(
        until,
        f"Daily recipient budget: {account.email} has sent to {used} of its "
        f"{budget} recipients in the last 24 hours (set per mailbox in the "
        f"admin, or {SETTINGS_NAME}['DAILY_RECIPIENTS']); deferred to the next "
        "window.",
    )


def _period(seconds: float) -> str:
    names = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}
    return names.get(seconds, f"{seconds:g} seconds")
