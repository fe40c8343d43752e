from django.db import migrations, models


def count_past_sends(apps, schema_editor):
    """A message already handed to the broker was handed to it once."""
    message = apps.get_model("registry", "OutboxMessage")
    message.objects.filter(sent_at__isnull=False).update(sends=1)


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0009_auth_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboxmessage",
            name="sends",
            field=models.PositiveIntegerField(default=0, verbose_name="times handed to the broker"),
        ),
        migrations.RunPython(count_past_sends, migrations.RunPython.noop),
    ]
