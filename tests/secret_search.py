"""Everywhere a failure can leave a secret, as text to search.

Django's DEBUG=True page (every frame's locals, whatever
``sensitive_variables`` says), the DEBUG=False error e-mail of
AdminEmailHandler (HTML and text), the pickled exception chain (task result
backends pickle errors), and the locals of every frame on the traceback.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterator
from types import TracebackType

from django.test import RequestFactory, override_settings
from django.views.debug import ExceptionReporter

from .identity.test_auth_frames import _as_shown

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]

LIMIT = 100_000


def exc_info() -> ExcInfo:
    """``sys.exc_info()`` of the exception being handled."""
    kind, error, traceback = sys.exc_info()
    assert kind is not None and error is not None and traceback is not None
    return kind, error, traceback


def places_of(failure: ExcInfo) -> dict[str, str]:
    """Each place the failure shows or keeps, by name."""
    request = RequestFactory().get("/")
    with override_settings(DEBUG=True):
        page = ExceptionReporter(request, *failure).get_traceback_html()
    assert "Local vars" in page  # it does show frame locals
    with override_settings(DEBUG=False):
        reporter = ExceptionReporter(request, *failure, is_email=True)
        html, text = reporter.get_traceback_html(), reporter.get_traceback_text()
    return {
        "debug page": _as_shown(page),
        "error e-mail (HTML)": _as_shown(html),
        "error e-mail (text)": text,
        "pickled error": _pickled(failure[1]),
        "frame locals": _frame_locals(failure[1]),
    }


def fragments(secret: str) -> Iterator[str]:
    """The secret, and a piece that still identifies it if a page cuts it.

    A JWT's header and claims repeat between tokens; its signature doesn't.
    """
    yield secret
    tail = secret.rpartition(".")[2]
    if len(tail) >= 40:
        yield tail[:32]


def key_fragments(pem: str) -> Iterator[str]:
    """A PEM private key, and each line of its base64 body."""
    yield pem
    yield from (line for line in pem.splitlines() if line and "-----" not in line)


def chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what Django's reports (and Sentry) follow: causes, and
    contexts not suppressed by ``raise ... from None``."""
    current: BaseException | None = error
    while current is not None:
        yield current
        suppressed = current.__suppress_context__
        current = current.__cause__ or (None if suppressed else current.__context__)


def _pickled(error: BaseException) -> str:
    shown = []
    for link in chain(error):
        shown += [str(link), repr(link), repr(vars(link))]
        shown.append(pickle.dumps(link).decode("latin-1"))
    return "\n".join(shown)


def _frame_locals(error: BaseException) -> str:
    shown = []
    for link in chain(error):
        traceback = link.__traceback__
        while traceback is not None:
            code = traceback.tb_frame.f_code
            for name, value in traceback.tb_frame.f_locals.items():
                where = f"{code.co_filename}:{code.co_name}() {name}="
                try:
                    # The first 100 kB: past that are attachments, not secrets.
                    shown.append(where + repr(value)[:LIMIT] + str(value)[:LIMIT])
                except Exception as problem:
                    shown.append(where + type(problem).__name__)
            traceback = traceback.tb_next
    return "\n".join(shown)
