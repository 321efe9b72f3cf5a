"""Which transport sends a mailbox's mail: the seam a new provider plugs into.

A mailbox's ``protocol`` (:attr:`.MailAccount.protocol`) names its transport.
Each name maps to a factory that takes the SMTP options the backend was given
(only SMTP's uses them) and returns a :class:`.base.Transport`. A provider adds
its transport module and one line here, or calls :func:`register` from its
``AppConfig.ready()``; the engine, routing and the queue ask by name and do not
change. The test suite proves it with a provider of its own.
"""

from __future__ import annotations

from ..exceptions import ConfigurationError
from . import graph, smtp
from .base import SMTPOptions, Transport, TransportFactory

_FACTORIES: dict[str, TransportFactory] = {
    "smtp": smtp.from_options,
    "graph": graph.from_options,
}


def register(name: str, factory: TransportFactory) -> None:
    """Send the mail of mailboxes whose ``protocol`` is ``name`` through ``factory``."""
    _FACTORIES[name] = factory


def unregister(name: str) -> None:
    _FACTORIES.pop(name, None)


def transport(name: str, options: SMTPOptions) -> Transport:
    """A new transport for ``name``; ConfigurationError if none is registered."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ConfigurationError(
            f"A mailbox sends through the transport {name!r}, but no transport "
            f"is registered under that name (registered: "
            f"{', '.join(sorted(_FACTORIES))}). Add the app that provides it to "
            "INSTALLED_APPS, or clear the mailbox's transport in the admin."
        ) from None
    return factory(options)
