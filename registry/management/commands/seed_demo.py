"""`seed_demo [--patients N] [--seed S]` (INTERFACES.md section 2): the synthetic demo cohort.

Without --patients: the 21 + 80 patients calibrated to STUDY.md at site AHP, written through
registry.services. With it: N patients of the same shape over five sites, by bulk insert. The
generator is registry.demo; this command only parses, times and prints. It refuses to run under
production settings (config.settings.production): demo users with printed passwords and synthetic
patients have no place in a hospital's registry.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry import demo


class Command(BaseCommand):
    help = (
        "Load the synthetic demo cohort calibrated to the study (21 blinatumomab + 80 CAR-T at "
        "AHP), or with --patients N that many synthetic patients for scale tests; create the "
        "demo users and print their passwords. The same --seed gives the same data."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--patients",
            type=int,
            default=None,
            help="Load N synthetic patients by bulk insert instead of the calibrated cohort.",
        )
        parser.add_argument(
            "--seed", type=int, default=demo.DEFAULT_SEED, help="Random seed (default 2024)."
        )

    def handle(self, *args, patients: int | None, seed: int, **options) -> None:
        if settings.IMMUNOREG_PRODUCTION:
            raise CommandError(
                "seed_demo refuses to run under production settings: it adds synthetic patients "
                "and demo users whose passwords it prints. Use it on a demo or test database."
            )
        if patients is not None and patients < 1:
            raise CommandError("--patients must be at least 1.")
        started = time.perf_counter()
        try:
            if patients is None:
                seeded = demo.seed_calibrated(seed=seed)
            else:
                seeded = demo.seed_scaled(patients, seed=seed)
        except demo.AlreadySeeded as error:
            raise CommandError(str(error)) from error
        elapsed = time.perf_counter() - started
        arms = ", ".join(f"{n} {arm}" for arm, n in seeded.patients.items())
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {sum(seeded.patients.values())} synthetic patients ({arms}) at "
                f"{', '.join(seeded.sites)} with seed {seed} in {elapsed:.1f} s."
            )
        )
        if patients is None and str(settings.IMMUNOREG_TODAY or "") != demo.CUTOFF.isoformat():
            self.stdout.write(
                f"The cohort's data cut-off is {demo.CUTOFF}; with IMMUNOREG_TODAY="
                f"{demo.CUTOFF} follow-up and lost-to-follow-up queries are judged on that day."
            )
        self._print_users(seeded.users)

    def _print_users(self, users: list[demo.DemoUser]) -> None:
        rows = [("username", "role", "site", "password")] + [
            (u.username, u.role, u.site, u.password or "(existing user, unchanged)") for u in users
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        self.stdout.write("Demo users:")
        for number, row in enumerate(rows):
            self.stdout.write(
                "  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))
            )
            if number == 0:
                self.stdout.write("  " + "  ".join("-" * w for w in widths))
