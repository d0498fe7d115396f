"""The README's demo, run as a user runs it: `zvonok demo --once` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_once_delivers_everything_and_checks_itself(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--once", "--data-dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    assert "Доставка: [##############################] 20/20" in out
    assert "Доставки: завершено 14 из 14 (чаты 6/6, письма 8/8)" in out
    assert "чат родителей VK: доставлено" in out  # the legacy VK class
    assert "Жуков Максим Олегович  +79120000504 (ученик: Жукова Дарья) — нет в чате родителей; нет e-mail" in out
    assert "пришло на SMTP-сервер 12 — совпадает: каждому вне чата ровно одно письмо на объявление." in out
    assert "пришло 8 — совпадает, без дублей." in out
    assert (tmp_path / "demo" / "zvonok.db").exists()
