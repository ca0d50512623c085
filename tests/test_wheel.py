"""Installed the normal way: the wheel, built from a copy of the source tree and installed (not
editable) into a fresh virtual environment outside it, runs the demo in Vietnamese.

The slowest module of the suite (about half a minute: the dependencies are installed from pip's
cache); it guards what no in-tree test sees, files the wheel leaves behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("HEALTHBOOK_", "PYTHON", "VIRTUAL_ENV"))
}
# A message key as the bot would show it if a catalogue were missing: ``consent.text``
RAW_KEY = re.compile(r"\b(?:start|consent|button|ask|error|help)\.[a-z_]+\b")
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "*.db", "*.db-*", "config.toml", "keys",
)


def _run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs  # type: ignore[call-overload]
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built as ``pip wheel .`` would on a clean checkout (a copy: no build files
    left in the working tree, nothing of another build reused)."""
    source = tmp_path_factory.mktemp("source") / "healthbook-bot"
    shutil.copytree(ROOT, source, ignore=SKIP)
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source, env=ENV)
    (built,) = out.glob("healthbook_bot-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel and its dependencies installed."""
    home = tmp_path_factory.mktemp("venv") / "v"
    _run(sys.executable, "-m", "venv", "--without-pip", home, env=ENV)
    python = home / "bin" / "python"
    # this pip installs into the new environment: no ensurepip, dependencies from pip's cache
    _run(
        sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile", wheel,
        env=ENV,
    )
    return home


def _files(folder: Path) -> set[str]:
    return {
        p.relative_to(ROOT).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_the_wheel_carries_what_the_bot_reads_and_nothing_else(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = (
        _files(ROOT / "locales")
        | _files(ROOT / "bot" / "migrations")
        | _files(ROOT / "models" / "data")
        | _files(ROOT / "bot" / "standin")  # the shipped demo talks to it
    )
    assert "bot/migrations/script.py.mako" in needed
    assert any(n.endswith(".po") for n in needed)
    assert not needed - names, sorted(needed - names)
    packages = {n.split("/")[0] for n in names if not n.startswith("healthbook_bot-")}
    assert packages == {"bot", "handlers", "models", "locales"}, packages
    assert not [n for n in names if n.endswith("alembic.ini")]


def test_installed_demo_speaks_vietnamese(venv: Path, tmp_path: Path) -> None:
    """``healthbook demo`` from another directory: real text, never a message key."""
    where = _run(
        venv / "bin" / "python", "-c", "import bot, locales; print(bot.__file__)",
        cwd=tmp_path, env=ENV,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # not the source tree
    result = subprocess.run(
        [venv / "bin" / "healthbook", "demo"],
        input="/start\n1\n/quit\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Trước khi bắt đầu" in out  # the consent text
    assert "[1] ✅ Tôi đồng ý" in out
    assert "họ và tên đầy đủ" in out  # the first question, after agreeing
    assert not RAW_KEY.findall(out), RAW_KEY.findall(out)
    assert (tmp_path / "healthbook-demo.db").exists()


@pytest.fixture
def without_english(venv: Path) -> Iterator[Path]:
    """The installed catalogues with English gone (put back afterwards)."""
    (locales,) = venv.glob("lib/python*/site-packages/locales")
    english, hidden = locales / "en", locales / "en.hidden"
    english.rename(hidden)
    try:
        yield locales
    finally:
        hidden.rename(english)


def test_installed_without_a_catalogue_refuses_to_start(
    without_english: Path, venv: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        [venv / "bin" / "healthbook", "demo"],
        input="/start\n/quit\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=ENV,
    )
    assert result.returncode == 2
    assert "translations for 'en' not found" in result.stderr
    assert str(without_english / "en") in result.stderr
    assert "Traceback" not in result.stderr and "🤖" not in result.stdout
