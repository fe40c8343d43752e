"""gunicorn's command line as production runs it: the one of docker/web.sh, read by running the
script with a stand-in `gunicorn` that writes its arguments down, so the bench and the
deployment tests serve the app exactly as the container does (its GUNICORN_* variables
included), on the address they choose."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB_SH = ROOT / "docker" / "web.sh"
STAND_IN = '#!/bin/sh\nfor argument in "$@"; do printf "%s\\0" "$argument"; done\n'


def web_command(
    bind: str, env: dict[str, str] | None = None, *, program: str | None = None
) -> list[str]:
    """docker/web.sh's gunicorn command, with this environment, listening on `bind`; `program`:
    the gunicorn to run (by default the one beside this Python)."""
    with tempfile.TemporaryDirectory(prefix="immunoreg-web-sh-") as folder:
        stand_in = Path(folder) / "gunicorn"
        stand_in.write_text(STAND_IN)
        stand_in.chmod(0o755)
        environment = dict(os.environ if env is None else env)
        environment["PATH"] = f"{folder}{os.pathsep}{environment.get('PATH', '')}"
        written = subprocess.run(
            ["sh", str(WEB_SH)], env=environment, capture_output=True, check=True
        ).stdout
    arguments = written.decode().split("\0")[:-1]
    bound = arguments.index("--bind") + 1
    arguments[bound] = bind
    return [program or str(Path(sys.executable).parent / "gunicorn"), *arguments]
