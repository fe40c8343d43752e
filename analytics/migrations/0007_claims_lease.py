from datetime import timedelta

import django.utils.timezone
from django.db import migrations, models


def leases_of_running_claims(apps, schema_editor):
    """A claim running while this migrates keeps the 30 minutes of silence it was given before
    leases (its worker, of the previous release, does not renew one)."""
    snapshot = apps.get_model("analytics", "Snapshot")
    for claim in snapshot.objects.filter(status="running"):
        snapshot.objects.filter(pk=claim.pk).update(
            lease_expires_at=claim.heartbeat_at + timedelta(minutes=30)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0006_archive_failures"),
    ]

    operations = [
        migrations.AddField(
            model_name="snapshot",
            name="lease_expires_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now, verbose_name="lease expires"
            ),
        ),
        migrations.RunPython(leases_of_running_claims, migrations.RunPython.noop),
    ]
