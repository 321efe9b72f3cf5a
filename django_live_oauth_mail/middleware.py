"""Make the signed-in user the acting user for mail sent during a request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from .ownership.acting import reset_acting, set_acting


class SendingAsMiddleware:
    """``request.user`` becomes the acting user while the view runs.

    With ``ROUTING = "owner"`` (the default) a view's ``send_mail()`` then
    goes out through the signed-in user's own mailbox, and never through
    another user's, whatever ``from_email`` says. ``request.user`` is read
    only when mail is sent, so a request that sends nothing pays nothing.
    Put it after ``AuthenticationMiddleware``.

    Mail sent after the view returns (while a streaming response is being
    consumed, say) has no acting user; use :func:`~.acting.sending_as` there.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        token = set_acting(lambda: getattr(request, "user", None))
        try:
            return self.get_response(request)
        finally:
            reset_acting(token)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        token = set_acting(lambda: getattr(request, "user", None))
        try:
            return await self.get_response(request)  # type: ignore[no-any-return,misc]
        finally:
            reset_acting(token)
