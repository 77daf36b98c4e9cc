"""`make audit` (tools/audit_dependencies.py): which pip-audit findings fail the build.

The network call itself runs in `make audit`; here its verdict is checked on pip-audit's own JSON
report shape, so a change that lets a fixable vulnerability through fails here, offline.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit", ROOT / "tools/audit_dependencies.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_vulnerabilities_with_a_fix_fail_and_unaudited_pins_are_named() -> None:
    report = {
        "dependencies": [
            {"name": "clean", "version": "1.0", "vulns": []},
            {
                "name": "urllib3",
                "version": "1.26.0",
                "vulns": [
                    {"id": "GHSA-fixed", "fix_versions": ["1.26.5", "2.0.0"]},
                    {"id": "PYSEC-unfixed", "fix_versions": []},
                ],
            },
            {"name": "private-pkg", "skip_reason": "Dependency not found on PyPI"},
        ],
        "fixes": [],
    }
    fixable, unfixable, skipped = load_tool().verdict(report)
    assert fixable == ["urllib3==1.26.0: GHSA-fixed fixed in 1.26.5, 2.0.0"]
    assert unfixable == ["urllib3==1.26.0: PYSEC-unfixed"]
    assert skipped == ["private-pkg: Dependency not found on PyPI"]


def test_unaudited_pins_fail_only_where_the_audit_must_be_complete(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = {
        "dependencies": [
            {"name": "clean", "version": "1.0", "vulns": []},
            {"name": "numpy", "version": "2.3.0", "skip_reason": "Dependency not found on PyPI"},
        ]
    }
    tool = load_tool()
    assert tool.judge(report, require_complete=False) == 0
    assert "audit: 1 of 2 pinned packages audited" in capsys.readouterr().out
    assert tool.judge(report, require_complete=True) == 1
    assert tool.judge({"dependencies": report["dependencies"][:1]}, require_complete=True) == 0
    workflow = (ROOT / ".github/workflows/ci.yml").read_text()
    assert 'AUDIT_REQUIRE_COMPLETE: "1"' in workflow


def test_make_test_runs_the_audit() -> None:
    makefile = (ROOT / "Makefile").read_text()
    test_rule = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert "audit" in test_rule.split()
    assert "tools/audit_dependencies.py" in makefile
