"""Write requirements.lock from a `pip install --dry-run --report` of the package (make lock)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADER = """\
# The runtime dependencies of mlcycle, pinned: local development installs with them as
# constraints and the pipeline image installs exactly these. Regenerate with `make lock`;
# tests/infra/test_lock.py checks every pin resolves for the Lambda platform.
"""


def main(report: Path, lock: Path) -> None:
    installs = json.loads(report.read_text())["install"]
    pins = sorted(
        (item["metadata"]["name"].lower().replace("_", "-"), item["metadata"]["version"])
        for item in installs
        if item["metadata"]["name"] != "mlcycle"
    )
    lock.write_text(HEADER + "".join(f"{name}=={version}\n" for name, version in pins))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
