"""``python -m benchmarks`` (``make bench``): runs every benchmark module in this folder, one process each.

A benchmark module is a module here with a ``__main__`` block; ``*_settings`` and ``*_urls`` modules (the
servers' configuration) are not benchmarks. Extra arguments are not passed on: run a module on its own
(``python -m benchmarks.webhooks --seconds 30``) to give it options.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def benchmark_modules() -> list[str]:
    names = []
    for path in sorted(FOLDER.glob("*.py")):
        if path.stem.startswith("_") or path.stem.endswith(("_settings", "_urls")):
            continue
        if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8"):
            names.append(f"benchmarks.{path.stem}")
    return names


def main() -> int:
    failed = []
    for module in benchmark_modules():
        print(f"== {module}", flush=True)
        result = subprocess.run([sys.executable, "-m", module], cwd=FOLDER.parent, check=False)  # noqa: S603
        if result.returncode != 0:
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
