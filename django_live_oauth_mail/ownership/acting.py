"""Who is sending: the acting user, kept in a context variable.

Routing lets a mailbox send only for its owner (``ROUTING = "owner"``), so it
must know whose code is running. In a request, :class:`.middleware.SendingAsMiddleware`
makes ``request.user`` the acting user; elsewhere (commands, tasks, shells)
:func:`sending_as` does. A context variable keeps this correct across threads
(a new thread starts with no acting user) and async code (each task has its
own context). This module imports no models, so the package root can export
:func:`sending_as`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: A zero-argument callable giving the acting user (or None), so that a
#: request's lazy ``user`` is only loaded if something is actually sent.
_acting: contextvars.ContextVar[Callable[[], Any] | None] = contextvars.ContextVar(
    "live_oauth_mail_acting_user", default=None
)

#: The ``sending_as`` blocks open in this context, innermost last, with the
#: token that undoes each. Kept per context, not on the object: one
#: ``sending_as`` object may be entered by several threads or tasks at once.
_open_blocks: contextvars.ContextVar[
    tuple[tuple[sending_as, contextvars.Token[Any]], ...]
] = contextvars.ContextVar("live_oauth_mail_sending_as_blocks", default=())


def acting_user_pk() -> Any:
    """The primary key of the authenticated acting user, or None."""
    source = _acting.get()
    return user_pk(source() if source is not None else None)


def user_pk(user: Any) -> Any:
    """``user``'s primary key; None for None or an anonymous user.

    A bare primary key (what the backend's ``user=`` option may be) is itself.
    """
    if user is None:
        return None
    if isinstance(user, bool):
        # True == 1 in Python: it would act as the user with pk 1.
        raise TypeError(f"Expected a user or a user's primary key, not {user!r}.")
    if not hasattr(user, "is_authenticated"):
        return user  # a primary key
    return user.pk if user.is_authenticated else None


def set_acting(source: Callable[[], Any] | None) -> contextvars.Token[Any]:
    """Make ``source()`` the acting user; undo with :func:`reset_acting`."""
    return _acting.set(source)


def reset_acting(token: contextvars.Token[Any]) -> None:
    _acting.reset(token)


class sending_as:
    """Send mail as ``user`` inside a ``with`` block, or a decorated function.

    Outside a request there is no acting user, and with ``ROUTING = "owner"``
    only shared mailboxes (and an explicit ``account=``) can send. Wrap the
    code that sends on someone's behalf::

        with sending_as(invoice.owner):
            send_mail(..., from_email=invoice.owner.email, ...)

    ``sending_as(None)`` clears the acting user for the block. Blocks nest;
    each restores the previous acting user on exit.
    """

    def __init__(self, user: Any) -> None:
        user_pk(user)  # refuse what is not a user before any block runs
        self.user = user

    def __enter__(self) -> Any:
        user = self.user
        token = set_acting(lambda: user)
        _open_blocks.set((*_open_blocks.get(), (self, token)))
        return user

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        blocks = _open_blocks.get()
        # The innermost of this object's blocks in this context: with proper
        # nesting, the last one.
        index = max(i for i, (block, _) in enumerate(blocks) if block is self)
        reset_acting(blocks[index][1])
        _open_blocks.set(blocks[:index] + blocks[index + 1 :])

    def __call__(self, func: F) -> F:
        # A fresh block per call. A generator's body runs after the call
        # returns, when the wrapper's block has closed, so it is refused.
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"sending_as cannot decorate the generator {func.__qualname__}: "
                "use `with sending_as(user):` around the code that sends."
            )
        user = self.user
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with sending_as(user):
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with sending_as(user):
                return func(*args, **kwargs)

        return run  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<sending_as {self.user!r}>"
