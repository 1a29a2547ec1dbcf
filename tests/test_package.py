"""The package's metadata, checked statically (fast): the license file and its declaration,
the project URLs, classifiers that agree with ``requires-python``, extras the test set-up
covers, the changelog's current version, and the clear failure on an unsupported platform.
The full check (build the sdist and wheel, install the wheel in a fresh venv, run C, Python
and JavaScript guests from it) is ``./tasks.sh package`` (scripts/check_package.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import wasm_sandbox

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
REPOSITORY = "https://github.com/wasm-sandbox/wasm-sandbox"


def test_the_license_file_is_the_declared_apache_license() -> None:
    """LICENSE holds the Apache 2.0 text that ``license`` declares, and ``license-files``
    puts it in the sdist and the wheel."""
    text = (ROOT / "LICENSE").read_text()
    assert PROJECT["license"] == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert PROJECT["license-files"] == ["LICENSE"]


def test_project_urls_point_at_one_repository() -> None:
    """Homepage, Documentation, Source, Issues and Changelog, all in the same repository."""
    urls = PROJECT["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
    assert all(url.startswith(REPOSITORY) for url in urls.values()), urls
    assert urls["Changelog"].endswith("/CHANGELOG.md")


def test_classifiers_agree_with_requires_python_and_the_platform() -> None:
    """Each Python 3.x classifier is at or above ``requires-python``; Linux only, typed,
    and the license is not repeated as a classifier (PEP 639 forbids it beside ``license``)."""
    classifiers = PROJECT["classifiers"]
    assert PROJECT["requires-python"] == ">=3.11"
    versions = [c.rsplit(" ", 1)[1] for c in classifiers if c.startswith("Programming Language :: Python :: 3.")]  # fmt: skip
    assert versions == ["3.11", "3.12", "3.13"]
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert "Typing :: Typed" in classifiers
    assert (Path(wasm_sandbox.__file__).parent / "py.typed").is_file()
    assert not [c for c in classifiers if c.startswith("License ::")]


def test_the_test_extra_installs_every_other_extra() -> None:
    """``.[test]`` brings every optional dependency, with the same pins, so the test suite
    exercises each extra (the C toolchain's ziglang included); ``[docs]`` (the site's tools,
    which ``./tasks.sh docs`` installs) is the one no test needs."""
    extras = PROJECT["optional-dependencies"]
    test = set(extras["test"])
    for name, requirements in extras.items():
        assert name == "docs" or set(requirements) <= test, f"[{name}] is not all in [test]"
    assert extras["c"] == ["ziglang>=0.17,<0.18"]


def test_the_changelog_has_the_current_version() -> None:
    """CHANGELOG.md (Keep a Changelog) has an Unreleased section and one for the version."""
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text
    assert f"## [{PROJECT['version']}]" in text


@pytest.mark.parametrize(
    ("simulation", "message"),
    [
        ("sys.modules['fcntl'] = None", "has no fcntl module"),
        ("sys.modules['resource'] = None", "has no resource module"),
        ("sys.platform = 'darwin'", r"needs Linux \(.*\); this is darwin"),
        ("sys.platform = 'win32'; sys.modules['fcntl'] = None", r"\(win32\) has no fcntl"),
    ],
    ids=["no-fcntl", "no-resource", "macos", "windows"],
)
def test_an_unsupported_platform_fails_the_import_clearly(simulation: str, message: str) -> None:
    """Without a POSIX module the package needs, or off Linux, ``import wasm_sandbox`` raises
    one ImportError naming what is missing, not a ModuleNotFoundError from deep inside."""
    code = (
        f"import sys; {simulation}\n"
        "try:\n    import wasm_sandbox\n"
        "except ImportError as e:\n    print(type(e).__name__, e, sep=': ')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.startswith("UnsupportedPlatform: wasm-sandbox needs Linux"), done.stdout
    assert re.search(message, done.stdout), done.stdout
