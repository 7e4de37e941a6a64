#!/usr/bin/env python3
"""Completes an npm lock so that `npm ci` accepts it on this project's machines.

The npm registry these machines install from does not serve some optional platform packages
of rivetkit's dependencies (macOS, Windows and musl builds, and a few versions of others).
`npm install` leaves whatever it could not fetch out of the lock it writes, and `npm ci`
then refuses that lock as out of sync with the optional dependencies. This adds an entry for
each such package: its pinned version, marked optional, with the platform its name says
(`os`/`cpu`/`libc`), so `npm ci` skips it on other platforms and, as `npm install` did, skips
it when it cannot be fetched.

    python3 tests/compat/complete-lock.py tests/compat/package-lock.json
"""

import json
import re
import sys

PLATFORM = re.compile(
    r"(darwin|linux|win32|freebsd|android|openbsd|netbsd|sunos|aix)"
    r"-(x64|arm64|arm|ia32|riscv64|ppc64|s390x|loong64|mips64el)(?:-(gnu|musl|msvc))?$"
)


def main(path):
    with open(path) as f:
        lock = json.load(f)
    packages = lock["packages"]
    added = []
    for where, meta in list(packages.items()):
        for name, version in (meta.get("optionalDependencies") or {}).items():
            nested = f"{where}/node_modules/{name}" if where else f"node_modules/{name}"
            top = f"node_modules/{name}"
            if nested in packages or top in packages:
                continue
            entry = {"version": version, "optional": True}
            m = PLATFORM.search(name.rsplit("/", 1)[-1])
            if m:
                entry["os"] = [m.group(1)]
                entry["cpu"] = [m.group(2)]
                if m.group(3) in ("gnu", "musl"):
                    entry["libc"] = ["glibc" if m.group(3) == "gnu" else "musl"]
            packages[top] = entry
            added.append(top)
    with open(path, "w") as f:
        json.dump(lock, f, indent=2)
        f.write("\n")
    for name in added:
        print(f"[complete-lock] added {name}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
