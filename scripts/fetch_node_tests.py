"""Fetch the ONNX backend node tests (the executor's conformance suite) into .cache/.

They ship inside the onnx wheel pinned in tests/conformance.py; only their folders are
unpacked. Run by scripts/test.sh before pytest; does nothing when they are present.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conformance import CONFORMANCE_WHEEL, NODE_TESTS

MEMBERS = "onnx/backend/test/data/node/"


def main() -> int:
    if NODE_TESTS.is_dir():
        return 0
    target = NODE_TESTS.parents[4]  # .cache/onnx-X/ holds onnx/backend/test/data/node
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", CONFORMANCE_WHEEL, "--no-deps",
             "--only-binary=:all:", "--quiet", "--dest", folder],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(folder).glob("onnx-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            members = [name for name in archive.namelist() if name.startswith(MEMBERS)]
            archive.extractall(target, members)
    count = len({m.split("/")[5] for m in members} - {""})
    print(f"fetched {count} ONNX node tests into {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
