"""The command line: settings errors, the no-token hint, migrations, and the terminal demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import ConfigError, load_settings

ENV = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHBOOK_")}


def healthbook(
    *args: str, cwd: Path, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real ``healthbook`` command (as ``python -m bot``)."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**ENV, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )


def test_settings_error_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text('[database]\nurl = "mysql://x"\n[bot]\ndefault_locale = "fr"\ncolour = 1\n')
    with pytest.raises(ConfigError) as err:
        load_settings(bad)
    text = str(err.value)
    assert "database.url" in text and "bot.default_locale" in text and "bot.colour" in text


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[bot]\ndefault_province = 1\n[telegram]\ntoken = "1:A"\n')
    monkeypatch.setenv("HEALTHBOOK_BOT__DEFAULT_PROVINCE", "15")
    settings = load_settings(config)
    assert settings.bot.default_province == 15
    assert settings.telegram.token is not None and "1:A" not in repr(settings)


def test_run_without_token_explains_how_to_get_one(tmp_path: Path) -> None:
    result = healthbook("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "@BotFather" in result.stderr and "healthbook demo" in result.stderr


def test_bad_config_file_exits_with_the_key(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[telegram]\nbase_url = "ftp://x"\n')
    result = healthbook("run", "--config", "config.toml", cwd=tmp_path)
    assert result.returncode == 2 and "telegram.base_url" in result.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    result = healthbook("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "healthbook.db").exists()


def test_demo_in_the_terminal(tmp_path: Path) -> None:
    """No token, no network: the demo chats through stdin and stdout."""
    result = healthbook("demo", cwd=tmp_path, stdin="/start\n1\nlò văn a\n99/99/99\n/quit\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[1] ✅ Tôi đồng ý" in out
    assert "Họ và tên đầy đủ của bạn là gì?" in out
    assert "Ngày sinh của bạn?" in out
    assert out.count("Ngày sinh của bạn?") == 2  # asked again after the bad date
    assert "bye" in out


def test_start_without_token_runs_the_demo(tmp_path: Path) -> None:
    result = healthbook("start", cwd=tmp_path, stdin="/help\n/quit\n")
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stderr and "/mydata" in result.stdout
