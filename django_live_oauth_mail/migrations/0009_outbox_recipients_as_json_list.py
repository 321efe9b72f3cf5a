"""Store a queued message's recipients as a JSON list, not as joined lines.

Until now they were joined with "\\n" and split with ``str.splitlines()``,
which also splits on U+2028, \\x85 and other line ends inside one address.
Existing rows are split on "\\n" only, the separator they were joined with,
so each keeps exactly the addresses it was queued with. Reversing joins them
again.
"""

from typing import Any

from django.db import migrations, models

BATCH = 500


def split_joined_recipients(apps: Any, schema_editor: Any) -> None:
    """Each row's joined recipients, as the list they were joined from."""
    messages = apps.get_model("live_oauth_mail", "OutboundMessage")
    using = schema_editor.connection.alias
    rows = messages.objects.using(using).only("pk", "recipients").order_by("pk")
    changed = []
    for row in rows.iterator(chunk_size=BATCH):
        row.recipient_addresses = [r for r in row.recipients.split("\n") if r]
        row.recipient_count = len(row.recipient_addresses)
        changed.append(row)
        if len(changed) == BATCH:
            _save(messages, using, changed)
    _save(messages, using, changed)


def join_recipient_lists(apps: Any, schema_editor: Any) -> None:
    """Back to one address per line, for the code before this migration."""
    messages = apps.get_model("live_oauth_mail", "OutboundMessage")
    using = schema_editor.connection.alias
    rows = messages.objects.using(using).only("pk", "recipient_addresses")
    changed = []
    for row in rows.order_by("pk").iterator(chunk_size=BATCH):
        row.recipients = "\n".join(row.recipient_addresses)
        changed.append(row)
        if len(changed) == BATCH:
            messages.objects.using(using).bulk_update(changed, ["recipients"])
            changed.clear()
    messages.objects.using(using).bulk_update(changed, ["recipients"])


def _save(messages: Any, using: str, changed: list[Any]) -> None:
    fields = ["recipient_addresses", "recipient_count"]
    messages.objects.using(using).bulk_update(changed, fields)
    changed.clear()


class Migration(migrations.Migration):
    dependencies = [
        ("live_oauth_mail", "0008_mailaccount_send_rate_validated"),
    ]

    operations = [
        # A new column: PostgreSQL cannot cast the joined text to jsonb.
        migrations.AddField(
            model_name="outboundmessage",
            name="recipient_addresses",
            field=models.JSONField(default=list),
        ),
        migrations.RunPython(split_joined_recipients, join_recipient_lists),
        # A default, so that reversing can add the column back to full rows.
        migrations.AlterField(
            model_name="outboundmessage",
            name="recipients",
            field=models.TextField(default=""),
        ),
        migrations.RemoveField(model_name="outboundmessage", name="recipients"),
        migrations.RenameField(
            model_name="outboundmessage",
            old_name="recipient_addresses",
            new_name="recipients",
        ),
        migrations.AlterField(
            model_name="outboundmessage",
            name="recipients",
            field=models.JSONField(
                default=list,
                help_text="The envelope: To, Cc and Bcc.",
                verbose_name="recipients",
            ),
        ),
    ]
