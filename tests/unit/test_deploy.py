"""Issue 13: the image recipe installs the lock, the lock matches pyproject, prices are pinned."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]


def _locked() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text("utf-8")
    return {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.MULTILINE)
    }


def test_every_dependency_is_locked_with_hashes_inside_its_range() -> None:
    locked = _locked()
    text = (ROOT / "requirements.lock").read_text("utf-8")
    pins = re.findall(r"^[A-Za-z0-9_.-]+==", text, re.MULTILINE)
    assert len(pins) == len(locked) and text.count("--hash=sha256:") >= len(locked)
    for spec in PROJECT["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in locked, f"{name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(locked[name]), f"{name}=={locked[name]} not in {spec}"


def test_dependencies_have_upper_bounds_and_prices_are_pinned() -> None:
    for spec in PROJECT["dependencies"]:
        req = Requirement(spec)
        assert any(s.operator in ("<", "==") for s in req.specifier), f"{spec}: no upper bound"
    prices = [Requirement(s) for s in PROJECT["dependencies"] if s.startswith("genai-prices")]
    assert [str(s.operator) for r in prices for s in r.specifier] == ["=="]


def test_image_installs_the_lock_and_copies_only_what_exists() -> None:
    lines = (ROOT / "Dockerfile").read_text("utf-8").splitlines()
    runs = " ".join(line for line in lines if line.startswith("RUN"))
    assert "pip install --require-hashes -r requirements.lock" in runs
    assert "pip install --no-deps ." in runs
    for line in lines:
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert not (ROOT / "templates").exists()  # package data now: pipeline/templates
