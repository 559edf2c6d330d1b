"""Issue 13: the built wheel alone renders every template (no checkout next to it)."""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "pipeline", "workers", "db", "simulator")

RENDER = """
import json, pathlib, sys
import pipeline
from pipeline.llm.prompts import environment, render
from pipeline.stages.emails import EmailFacts, render_email

env = environment()
names = sorted(env.list_templates())
for name in names:
    env.get_template(name)  # every template compiles from the installed package
lead = {"company": "Acme", "website": "https://acme.example/", "industry": "software",
        "employees": 40, "country": "US", "title": "CTO", "first_name": "Ada",
        "notes": None, "tech_stack": []}
prompt = render("classify", lead=lead)
emails = {}
for name in names:
    if name.startswith("emails/") and name.endswith(".txt.j2") and "/_" not in name:
        facts = EmailFacts(first_name="Ada", company="=Acme", title="CTO", industry="software",
                           pain_point="slow research", product="Reconcile", variant="A",
                           sender_name="Sam", sender_company="leadpipe")
        emails[name] = render_email(name, facts)
print(json.dumps({"file": pipeline.__file__, "names": names, "prompt": prompt.user,
                  "emails": emails}))
"""


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp / "dist").glob("leadpipe-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A new venv with only the wheel installed; dependencies come from this venv's path."""
    venv = tmp / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    # a bare path line: the dependencies, but not this checkout's editable install
    (purelib / "zz_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def test_the_installed_wheel_renders_every_template(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv = _fresh_venv(tmp_path, wheel)
    python, leadpipe = venv / "bin" / "python", venv / "bin" / "leadpipe"
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LEADPIPE_HOME": str(tmp_path / "h")}
    done = subprocess.run(
        [str(python), "-I", "-c", RENDER], cwd=work, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["file"].startswith(str(venv))  # not this checkout
    shipped = sorted(
        str(p.relative_to(ROOT / "pipeline" / "templates"))
        for p in (ROOT / "pipeline" / "templates").rglob("*")
        if p.is_file()
    )
    assert doc["names"] == shipped
    assert "Acme" in doc["prompt"]
    assert len(doc["emails"]) == 22
    assert all(subject and body for subject, body in doc["emails"].values())
    for args in (["db", "upgrade"], ["report", "--html", str(work / "report.html")]):
        ran = subprocess.run(
            [str(leadpipe), *args], cwd=work, env=env, capture_output=True, text=True
        )
        assert ran.returncode == 0, ran.stderr
    page = (work / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
