"""`make audit`: pip-audit over requirements.lock, failing only on vulnerabilities with a fix.

pip-audit fails on every known vulnerability; a pin with no fixed release yet cannot be acted on
and would only train people to ignore a red build, so those are listed, not fatal. pip-audit uses
PyPI's vulnerability data (per-release JSON); a dependency it could not look up is reported as not
audited, so a network without that service shows up as such instead of as a clean bill. Where that
data must be reachable (GitHub's CI), `AUDIT_REQUIRE_COMPLETE=1` makes any unaudited pin a failure;
a machine whose only way out is a package mirror (no per-release JSON, no OSV) cannot audit at
all and says so on every run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_pip_audit(lock: Path) -> dict[str, Any]:
    command = [
        str(Path(sys.executable).with_name("pip-audit")),
        "--requirement", str(lock),
        "--no-deps",  # the lock pins every package: nothing to resolve
        "--disable-pip",
        "--format", "json",
        "--progress-spinner", "off",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if not done.stdout.strip():
        raise SystemExit(f"pip-audit produced no report (exit {done.returncode}): {done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def verdict(report: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(fixable, unfixable, not audited) as one line each."""
    fixable: list[str] = []
    unfixable: list[str] = []
    skipped: list[str] = []
    for dependency in report["dependencies"]:
        name = dependency["name"] + (
            f"=={dependency['version']}" if "version" in dependency else ""
        )
        if "skip_reason" in dependency:
            skipped.append(f"{name}: {dependency['skip_reason']}")
            continue
        for vuln in dependency.get("vulns", []):
            fixes = vuln.get("fix_versions") or []
            line = f"{name}: {vuln['id']}" + (f" fixed in {', '.join(fixes)}" if fixes else "")
            (fixable if fixes else unfixable).append(line)
    return fixable, unfixable, skipped


def main() -> int:
    lock = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "requirements.lock"
    report = run_pip_audit(lock)
    return judge(report, require_complete=os.environ.get("AUDIT_REQUIRE_COMPLETE") == "1")


def judge(report: dict[str, Any], require_complete: bool) -> int:
    """Print the verdict; the exit status: 1 on a fixable vulnerability, or on an unaudited pin
    when the audit must be complete."""
    fixable, unfixable, skipped = verdict(report)
    audited = len(report["dependencies"]) - len(skipped)
    print(f"audit: {audited} of {len(report['dependencies'])} pinned packages audited")
    for line in unfixable:
        print(f"  known vulnerability without a fix yet: {line}")
    if skipped:
        print(f"  NOT AUDITED: {len(skipped)} (vulnerability data unreachable?), e.g. {skipped[0]}")
    for line in fixable:
        print(f"  FIX AVAILABLE: {line}")
    return 1 if fixable or (skipped and require_complete) else 0


if __name__ == "__main__":
    sys.exit(main())
