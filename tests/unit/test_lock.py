"""requirements/lock.txt pins everything pyproject.toml asks for, within its ranges."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "lock.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def read_lock(text: str) -> dict[str, str]:
    """Each pinned package's canonical name and version."""
    return {canonicalize_name(name): version for name, version in _PIN.findall(text)}


def declared(pyproject: dict) -> list[Requirement]:
    """What pyproject.toml asks for: the build backend, the dependencies, every extra."""
    texts = [
        *pyproject["build-system"]["requires"],
        *pyproject["project"]["dependencies"],
        *(req for extra in pyproject["project"]["optional-dependencies"].values() for req in extra),
    ]
    return [Requirement(text) for text in texts]


def lock_problems(requirements: list[Requirement], pins: dict[str, str]) -> list[str]:
    """One line per requirement the lock leaves out or pins outside its range."""
    problems = []
    for req in requirements:
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"requirements/lock.txt: {req.name} is not pinned")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(
                f"requirements/lock.txt: {req.name}=={version} is outside {req.specifier}"
            )
    return problems


def test_lock_pins_every_declared_dependency_within_its_range():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = read_lock(LOCK.read_text())
    assert lock_problems(declared(pyproject), pins) == []


def test_every_pin_carries_a_hash():
    blocks = re.split(r"\n(?=\S)", LOCK.read_text())
    unhashed = [b.split()[0] for b in blocks if _PIN.match(b) and "--hash=sha256:" not in b]
    assert unhashed == []


def test_a_missing_or_out_of_range_dependency_is_named():
    requirements = [Requirement("pyzmq>=25"), Requirement("pyyaml>=6"), Requirement("attrs")]
    pins = read_lock("pyzmq==24.0.1 \\\n    --hash=sha256:00\nPyYAML==6.0.4 \\\n")
    assert lock_problems(requirements, pins) == [
        "requirements/lock.txt: pyzmq==24.0.1 is outside >=25",
        "requirements/lock.txt: attrs is not pinned",
    ]


@pytest.mark.skipif(
    not Path(sys.prefix, ".nowcastkit-installed").exists(),
    reason="runs only in a virtualenv made by bin/install",
)
def test_bin_install_gave_exactly_the_locked_versions():
    pins = read_lock(LOCK.read_text())
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()
    }
    installed.pop("nowcastkit")
    installed.pop("pip", None)
    assert installed == pins
