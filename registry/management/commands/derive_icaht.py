from django.core.management.base import BaseCommand

from registry import services


class Command(BaseCommand):
    help = (
        "Derive every treatment's early and late ICAHT grade again from its laboratory series "
        "(after a change of the grading rules, or laboratory values loaded in bulk); the "
        "changed treatments are saved with an audit row carrying the reason."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--reason",
            default="ICAHT derived again from the laboratory values (derive_icaht)",
            help="The reason kept in the audit trail of every changed treatment.",
        )

    def handle(self, *args, reason: str, **options) -> None:
        read, changed = services.icaht_derive_all(user=None, reason=reason)
        self.stdout.write(f"ICAHT derived again for {read} treatments; {changed} changed.")
