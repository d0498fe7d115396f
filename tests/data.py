"""Shared test data: a small school's configuration files and a roster."""

from __future__ import annotations

import textwrap
from pathlib import Path

SCHOOL_YAML = """\
id: s1
name: Школа № 1
timezone: Asia/Yekaterinburg
max: {token: max-token-s1}
vk: {token: vk-token-s1}
staff:
  - {id: dir, name: Директорова Анна, role: director, email: dir@s1.test}
  - {id: dep, name: Завучева Ольга, role: deputy}
  - {id: kt5a, name: Классова Вера, role: class_teacher, email: kt5a@s1.test}
  - {id: kt7b, name: Учителев Пётр, role: class_teacher}
  - {id: it, name: Админов Иван, role: admin}
teachers_chat: {channel: max, chat_id: -100}
classes:
  - name: 5А
    teacher: kt5a
    chats:
      parents: {channel: max, chat_id: -501}
      students: {channel: max, chat_id: -502}
  - name: 5Б
    chats:
      parents: {channel: vk, peer_id: 2000000001}
  - name: 7Б
    teacher: kt7b
    window: 09:00-18:00
"""

ZVONOK_YAML = """\
email: {host: 127.0.0.1, port: 2525, from: noreply@s1.test}
dispatch: {retry_base_seconds: 10, retry_cap_seconds: 60, lease_seconds: 30, max_attempts: 4}
"""

ROSTER_CSV = """\
Класс;Ученик;Представитель;E-mail;Телефон;В чате
5А;Иванов Петя;Иванова Мария;maria@mail.test;+7 900 000-00-01;да
5А;Петров Коля;Петрова Анна;anna@mail.test;;нет
5А;Сидоров Ваня;Сидоров Олег;;+7 900 000-00-03;нет
5Б;Иванова Катя;Иванова Мария;maria@mail.test;+7 900 000-00-01;нет
5Б;Кузнецов Дима;Кузнецова Ольга;olga@mail.test;;да
7Б;Смирнов Лёва;Смирнова Ирина;irina@mail.test;;да
"""


def write_config(root: Path, school: str = SCHOOL_YAML, settings: str = ZVONOK_YAML, roster: str | None = None) -> Path:
    (root / "schools").mkdir(parents=True, exist_ok=True)
    (root / "schools" / "s1.yaml").write_text(textwrap.dedent(school), encoding="utf-8")
    (root / "zvonok.yaml").write_text(settings, encoding="utf-8")
    if roster is not None:
        (root / "rosters").mkdir(exist_ok=True)
        (root / "rosters" / "s1.csv").write_text(roster, encoding="utf-8")
    return root
