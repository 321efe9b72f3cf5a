from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LiveOAuthMailConfig(AppConfig):
    name = "django_live_oauth_mail"
    label = "live_oauth_mail"
    verbose_name = _("Microsoft mailboxes (OAuth)")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers the system checks)
            log_redaction,
        )
        from .conf import conf
        from .queue import outbox  # noqa: F401  (fails a deleted mailbox's queued mail)

        # Tokens out of urllib3's, requests', msal's and our log records.
        log_redaction.install()

        if conf.QUEUE == "celery":
            # Registers the Celery task in every process Django starts in.
            from .queue import celery_tasks  # noqa: F401
