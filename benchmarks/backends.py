"""The baseline: Django's own SMTP backend, trusting the benchmark's test CA.

Django builds its TLS context with ``ssl.create_default_context()``, which
trusts only the system CAs, so it cannot verify the local server's throwaway
certificate. Rather than turn verification off (which would make the baseline
do less work than our backend) or point ``SSL_CERT_FILE`` at the test CA
(which changes TLS for the whole process), this subclass overrides one
attribute: it builds the context with ``ssl.create_default_context(cafile=...)``,
the very call our backend makes when ``LIVE_OAUTH_MAIL['CA_BUNDLE']`` is set.
Both sides therefore build the same kind of context once per backend object,
verify the same chain, and run the same STARTTLS handshake. Everything else,
including ``open()``, ``login()`` and ``_send()``, is Django's code unchanged.
"""

from __future__ import annotations

import ssl

from django.conf import settings
from django.core.mail.backends import smtp
from django.utils.functional import cached_property


class TestCAEmailBackend(smtp.EmailBackend):
    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=settings.BENCHMARK_CA_BUNDLE)
