#!/usr/bin/env python3
"""Write (or with --check, verify) the README's component reference from `pitwall-flow list --markdown`."""
import subprocess
import sys

START, END = "<!-- components:start -->", "<!-- components:end -->"
binary = sys.argv[sys.argv.index("--bin") + 1] if "--bin" in sys.argv else "target/debug/pitwall-flow"
generated = subprocess.run([binary, "list", "--markdown"], check=True, capture_output=True, text=True).stdout
readme = open("README.md", encoding="utf-8").read()
before, rest = readme.split(START, 1)
_, after = rest.split(END, 1)
updated = f"{before}{START}\n{generated}{END}{after}"
if "--check" in sys.argv:
    if updated != readme:
        sys.exit("README.md's component reference is stale: run scripts/readme-components.py")
else:
    open("README.md", "w", encoding="utf-8").write(updated)
