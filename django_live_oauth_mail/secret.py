"""A secret in transit: tokens, the client secret, private keys, codes, upload URLs.

Django's debug page (``DEBUG=True`` ignores ``sensitive_variables``), its
error e-mails and reporters such as Sentry show every local of every frame a
traceback passes through, by ``repr()``. A :class:`Secret` shows as
``Secret('********')`` there, in ``str()`` and in f-strings, and refuses to
be pickled (task result backends pickle errors). Its value comes out only
through :meth:`Secret.reveal`, which is called where the bytes go onto the
wire, inside the call that sends them, so no frame of ours names the result.
"""

from __future__ import annotations

import hmac
from typing import Any, Generic, NoReturn, TypeVar

MASK = "********"

T = TypeVar("T")


class Secret(Generic[T]):
    """A value (a str, or msal's certificate dict) whose ``repr``/``str`` are
    masked; :meth:`reveal` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def reveal(self) -> T:
        """The value itself: only as an argument of the call that sends it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        mine = self._value
        theirs = other._value if isinstance(other, Secret) else other
        if not isinstance(mine, str) or not isinstance(theirs, str):
            return NotImplemented
        # Constant time: a comparison must not tell how much of a token matched.
        return hmac.compare_digest(mine.encode(), theirs.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("A Secret is not pickled: it would be stored in the clear.")

    def __copy__(self) -> Secret[T]:
        return self

    def __deepcopy__(self, memo: Any) -> Secret[T]:
        return self
