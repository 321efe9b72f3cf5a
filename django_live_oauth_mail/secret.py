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
from typing import Any, NoReturn

MASK = "********"


class Secret:
    """A string whose ``repr``/``str`` are masked; :meth:`reveal` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
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
        if isinstance(other, Secret):
            other = other._value
        if not isinstance(other, str):
            return NotImplemented
        # Constant time: a comparison must not tell how much of a token matched.
        return hmac.compare_digest(self._value.encode(), other.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("A Secret is not pickled: it would be stored in the clear.")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: Any) -> Secret:
        return self
