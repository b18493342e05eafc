"""Peak memory of reading a decompression bomb: ours (refused from the header) vs a plain nibabel load.

A 1 MB ``.nii.gz`` whose header promises 1 GiB of int16 zeros (and whose stream really
inflates to that) is given to ``neuroreview info`` / ``mask`` / ``cmb detect`` and, as the
peer, to ``nibabel.load(path).get_fdata()`` (what a reader without a bound does). Each
runs in a fresh interpreter; the figure is the kernel's high-water mark of that process
minus the same interpreter's after its imports (VmHWM), in MiB.

Run: ``.venv/bin/python benchmarks/bombs.py`` (about a minute; the peer needs ~5 GiB).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import print_run_header, table  # noqa: E402
from test_bad_input import _nifti_bomb  # noqa: E402  (the bomb the tests use: one builder)

CHILD = """
import sys
def hwm():
    with open('/proc/self/status') as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith('VmHWM:')) / 1024
import nibabel, numpy, napari_neuroreview.cli as cli
base = hwm()
kind, path = sys.argv[1], sys.argv[2]
rc = 0
if kind == 'nibabel':
    try:
        nibabel.load(path).get_fdata(dtype=numpy.float32)
    except MemoryError:
        rc = 'MemoryError'
else:
    rc = cli.main(kind.split() + [path] + (['--out', sys.argv[3]] if len(sys.argv) > 3 else []))
print(f"{hwm() - base:.0f} {rc}")
"""


def measure(kind: str, bomb: Path, out: Path | None = None) -> tuple[str, str]:
    """(peak MiB above imports, exit code) of one command in a fresh interpreter."""
    argv = [sys.executable, "-c", CHILD, kind, str(bomb)] + ([str(out)] if out is not None else [])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    last = (done.stdout.strip().splitlines() or ["? ?"])[-1].split()
    return last[0], last[1] if len(last) > 1 else str(done.returncode)


def main() -> None:
    print_run_header("nibabel, numpy")
    with tempfile.TemporaryDirectory() as tmp:
        bomb = _nifti_bomb(Path(tmp) / "bomb.nii.gz")
        print(f"bomb: {bomb.stat().st_size / 2**20:.1f} MiB on disk, header promises 1024 x 1024 x 512 int16 (1 GiB)")
        rows = []
        peer_mib, peer_rc = measure("nibabel", bomb)
        for kind, out in (("info", None), ("mask", Path(tmp) / "m.nii.gz"), ("cmb detect", Path(tmp) / "d.json")):
            mib, rc = measure(kind, bomb, out)
            ratio = f"{float(mib) / float(peer_mib):.4f}" if peer_mib not in ("?", "0") else "n/a"
            rows.append((f"neuroreview {kind}", mib, rc, peer_mib, ratio))
        print(table(rows, ("command", "peak MiB (ours)", "exit", "peak MiB (nibabel get_fdata)", "ours / peer")))


if __name__ == "__main__":
    main()
