"""Build our backend the way the installed Django expects.

Django 6.1 builds backends from MAILERS and deprecates get_connection(); older
versions only have get_connection(). The tests use whichever applies.
"""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings
from django.core import mail
from django.test import override_settings

from django_live_oauth_mail.backends import EmailBackend

BACKEND = "django_live_oauth_mail.backends.EmailBackend"
USES_MAILERS = django.VERSION >= (6, 1)


def make_backend(**options: Any) -> EmailBackend:
    if USES_MAILERS:
        mailers = {
            **settings.MAILERS,
            "under_test": {"BACKEND": BACKEND, "OPTIONS": options},
        }
        with override_settings(MAILERS=mailers):
            backend = mail.mailers["under_test"]
    else:
        backend = mail.get_connection(BACKEND, **options)
    assert isinstance(backend, EmailBackend)
    return backend
