#!/usr/bin/env python3
"""Vendor one release of ``vietnam-provinces`` as ``models/data/admin_units/<version>.csv``, or
compare two vendored releases.

The bot never imports the package: its codes follow the release pinned in
``models.reference.ADMIN_UNITS_VERSION``. To move to a new release:

1. Write its list, with any Python the release installs on (2026.9.0 needs 3.12 or newer)::

       python3.12 -m venv /tmp/vp && /tmp/vp/bin/pip install vietnam-provinces==X
       /tmp/vp/bin/python scripts/vendor_admin_units.py write

   (or ``PYTHONPATH=<unpacked wheel> python3.12 scripts/vendor_admin_units.py write``).
2. See what changes for stored codes: ``python scripts/vendor_admin_units.py compare OLD X``.
3. Bump ``ADMIN_UNITS_VERSION``, fix codes in ``models/data/*.csv``, and add a migration that calls
   ``models.reference_codes.remap(connection, "OLD", "X", ...)`` (see migration 0004).
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "models" / "data" / "admin_units"
HEADER = ("kind", "code", "name", "province_code")


def write(out_dir: Path) -> Path:
    """Write the installed/importable release, in the package's own order, through its API (the
    API is what callers of the package saw; its bundled JSON lags behind it in some releases)."""
    from vietnam_provinces import Province, Ward

    version = importlib.metadata.version("vietnam-provinces")
    path = out_dir / f"{version}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(HEADER)
        for p in Province.iter_all():
            out.writerow(("province", int(p.code), p.name, ""))
        for p in Province.iter_all():
            for w in Ward.iter_by_province(p.code):
                out.writerow(("ward", int(w.code), w.name, int(w.province_code)))
    return path


def compare(old: str, new: str) -> int:
    """Print how stored codes of ``old`` map onto ``new``; exit status 1 if any cannot map."""
    sys.path.insert(0, str(ROOT))
    from models.reference import admin_units, code_mapping

    m = code_mapping(old, new)
    before = admin_units(old)
    print(f"{old} -> {new}")
    for kind, moved, lost, names in (
        ("province", m.provinces, m.unmapped_provinces, before.provinces),
        ("ward", m.wards, m.unmapped_wards, {c: n for c, (n, _) in before.wards.items()}),
    ):
        changed = {o: n for o, n in moved.items() if o != n}
        print(f"{kind}s: {len(changed)} codes change, {len(lost)} cannot be mapped")
        for o, n in sorted(changed.items()):
            print(f"  {o} -> {n}  {names[o]}")
        for o in sorted(lost):
            print(f"  {o} -> ?  {names[o]}")
    return 1 if m.unmapped_provinces or m.unmapped_wards else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="vendor the importable vietnam-provinces release")
    w.add_argument("--out", type=Path, default=OUT_DIR)
    c = sub.add_parser("compare", help="how codes of one vendored release map onto another")
    c.add_argument("old")
    c.add_argument("new")
    args = parser.parse_args()
    if args.command == "write":
        print(write(args.out))
        return 0
    return compare(args.old, args.new)


if __name__ == "__main__":
    raise SystemExit(main())
