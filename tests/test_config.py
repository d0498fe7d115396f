"""Configuration loading: every bad input is one clear Russian problem with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.domain import ChatKind, Role
from gateway.errors import InvalidInput
from gateway.policy import banned_links, banned_messenger
from tests.data import SCHOOL_YAML, ZVONOK_YAML, write_config


def test_valid_config_loads(config_dir: Path) -> None:
    config = load_config(config_dir)
    school = config.schools["s1"]
    assert school.name == "Школа № 1"
    assert str(school.zone) == "Asia/Yekaterinburg"
    assert list(school.classes) == ["5А", "5Б", "7Б"]
    assert school.classes["5А"].chats[ChatKind.PARENTS].address == "-501"
    assert school.classes["5Б"].chats[ChatKind.PARENTS].channel == "vk"
    assert str(school.classes["7Б"].window) == "09:00–18:00"
    assert school.staff["dep"].role is Role.DEPUTY
    assert config.tokens["max"]["s1"] == "max-token-s1"
    assert config.settings.dispatch.max_attempts == 4
    assert config.rosters["s1"].name == "s1.csv"


def _replace(old: str, new: str) -> str:
    assert old in SCHOOL_YAML, old
    return SCHOOL_YAML.replace(old, new)


# (case id, school yaml, expected message fragment, expected line, expected field)
BAD_SCHOOLS = [
    (
        "telegram channel",
        _replace("parents: {channel: max, chat_id: -501}", "parents: {channel: telegram, chat_id: -501}"),
        "канал «Telegram» запрещён: иностранные мессенджеры запрещены",
        17,
        "classes[1].chats.parents.channel",
    ),
    (
        "whatsapp spelled in Russian",
        _replace("parents: {channel: vk, peer_id: 2000000001}", "parents: {channel: Ватсап, peer_id: 1}"),
        "канал «WhatsApp» запрещён",
        21,
        "classes[2].chats.parents.channel",
    ),
    (
        "viber invite link",
        _replace(
            "teachers_chat: {channel: max, chat_id: -100}",
            'teachers_chat: {channel: max, chat_id: -100, link: "https://invite.viber.com/?g=abc"}',
        ),
        "ссылка на Viber запрещена",
        12,
        "teachers_chat.link",
    ),
    (
        "unknown zone",
        _replace("Asia/Yekaterinburg", "Asia/Atlantis"),
        "часовой пояс «Asia/Atlantis» не найден",
        3,
        "timezone",
    ),
    ("missing name", _replace("name: Школа № 1\n", ""), "обязательное поле не заполнено", None, "name"),
    ("bad class name", _replace("name: 5Б", "name: пятый"), "«пятый» не похоже на класс", 19, "classes[2].name"),
    ("duplicate class", _replace("name: 5Б", "name: 5а"), "класс «5А» описан дважды", 19, "classes[2].name"),
    (
        "unknown teacher",
        _replace("teacher: kt7b", "teacher: nobody"),
        "сотрудник «nobody» не описан",
        23,
        "classes[3].teacher",
    ),
    ("unknown role", _replace("role: admin", "role: janitor"), "роль «janitor» неизвестна", 11, "staff[5].role"),
    (
        "bad staff e-mail",
        _replace("dir@s1.test", "dir at s1"),
        "«dir at s1» — не адрес электронной почты",
        7,
        "staff[1].email",
    ),
    (
        "window outside regulation",
        _replace("window: 09:00-18:00", "window: 07:00-18:00"),
        "выходит за пределы 08:00–19:00",
        24,
        "classes[3].window",
    ),
    (
        "window reversed",
        _replace("window: 09:00-18:00", "window: 18:00-09:00"),
        "начало должно быть раньше конца",
        24,
        "classes[3].window",
    ),
    (
        "window garbage",
        _replace("window: 09:00-18:00", "window: утром"),
        "не в формате ЧЧ:ММ-ЧЧ:ММ",
        24,
        "classes[3].window",
    ),
    (
        "vk peer not a chat",
        _replace("peer_id: 2000000001", "peer_id: 12345"),
        "больше 2000000000",
        21,
        "classes[2].chats.parents.peer_id",
    ),
    (
        "max chat id text",
        _replace("chat_id: -502", "chat_id: abc"),
        "ожидается целое число",
        18,
        "classes[1].chats.students.chat_id",
    ),
    (
        "unknown channel",
        _replace("channel: vk, peer_id", "channel: icq, peer_id"),
        "канал «icq» неизвестен",
        21,
        "classes[2].chats.parents.channel",
    ),
    ("unknown field", _replace("timezone:", "timezon: x\ntimezone:"), "неизвестное поле", 3, "timezon"),
    (
        "missing token",
        _replace("max: {token: max-token-s1}\n", ""),
        "есть чаты MAX, но не задан токен бота",
        None,
        "max",
    ),
    (
        "token env unset",
        _replace("{token: vk-token-s1}", "{token_env: ZVONOK_TEST_UNSET_VAR}"),
        "переменная окружения ZVONOK_TEST_UNSET_VAR не задана",
        5,
        "vk.token_env",
    ),
    ("yaml syntax", "id: s1\nname: [unclosed\n", "это не YAML", 3, ""),
    ("bad slug", _replace("id: s1", "id: Школа 1"), "только латинские строчные буквы", 1, "id"),
]


@pytest.mark.parametrize(
    ("school", "fragment", "line", "field"), [c[1:] for c in BAD_SCHOOLS], ids=[c[0] for c in BAD_SCHOOLS]
)
def test_bad_school_config_is_one_clear_problem(
    tmp_path: Path, school: str, fragment: str, line: int | None, field: str
) -> None:
    root = write_config(tmp_path / "c", school=school)
    with pytest.raises(InvalidInput) as caught:
        load_config(root)
    assert len(caught.value.problems) == 1, [str(p) for p in caught.value.problems]
    matching = [p for p in caught.value.problems if fragment in p.message]
    assert matching, [str(p) for p in caught.value.problems]
    problem = matching[0]
    assert problem.source.endswith("s1.yaml")
    if line is not None:
        assert problem.line == line, str(problem)
    assert problem.field == field, str(problem)
    assert fragment in str(caught.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    school = _replace("Asia/Yekaterinburg", "Nowhere/Land").replace("role: admin", "role: x")
    root = write_config(tmp_path / "c", school=school, settings="email: {port: -1, from: nope}\n")
    with pytest.raises(InvalidInput) as caught:
        load_config(root)
    messages = " | ".join(str(p) for p in caught.value.problems)
    for fragment in ("Nowhere/Land", "роль «x»", "ожидается положительное число", "«nope» — не адрес"):
        assert fragment in messages


def test_no_school_files(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    with pytest.raises(InvalidInput, match="нет ни одного файла школы"):
        load_config(tmp_path / "c")


def test_token_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZVONOK_TEST_VK", "secret-from-env")
    root = write_config(tmp_path / "c", school=_replace("{token: vk-token-s1}", "{token_env: ZVONOK_TEST_VK}"))
    assert load_config(root).tokens["vk"]["s1"] == "secret-from-env"


def test_defaults_without_settings_file(tmp_path: Path) -> None:
    root = write_config(tmp_path / "c", settings=ZVONOK_YAML)
    (root / "zvonok.yaml").unlink()
    config = load_config(root)
    assert config.settings.max.base_url == "https://platform-api2.max.ru"
    assert config.settings.vk.base_url == "https://api.vk.ru"
    # MAX allows 30 requests/s per token: one process runs at 28; processes sharing the token keep more headroom.
    assert (config.settings.max.rate, config.settings.max.shared_rate) == (28, 26)
    assert (config.settings.vk.rate, config.settings.vk.shared_rate) == (18, 18)


def test_a_configured_rate_holds_for_one_process_and_for_several(tmp_path: Path) -> None:
    root = write_config(tmp_path / "c", settings=ZVONOK_YAML + "max: {rate: 25}\nvk: {rate: 0}\n")
    with pytest.raises(InvalidInput, match=r"«vk\.rate»: ожидается положительное число"):
        load_config(root)
    root = write_config(tmp_path / "d", settings=ZVONOK_YAML + "max: {rate: 25}\n")
    config = load_config(root)
    assert (config.settings.max.rate, config.settings.max.shared_rate) == (25, 25)
    assert (config.settings.vk.rate, config.settings.vk.shared_rate) == (18, 18)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("telegram", "Telegram"), ("TG", "Telegram"), ("Телеграм", "Telegram"), ("WhatsApp", "WhatsApp"),
     ("microsoft-teams", "Microsoft Teams"), ("Skype for Business", "Skype for Business"), ("WeChat", "WeChat"),
     ("max", None), ("vk", None), ("email", None)],
)  # fmt: skip
def test_banned_messenger_names(name: str, expected: str | None) -> None:
    assert banned_messenger(name) == expected


def test_banned_links_in_text() -> None:
    text = "Вступайте: https://t.me/school1 и chat.whatsapp.com/AbC, а также max.ru/join/x"
    assert banned_links(text) == ["Telegram", "WhatsApp"]
    assert banned_links("Сайт школы: https://school1.gosuslugi.ru") == []


REPO = Path(__file__).resolve().parents[1]


def test_shipped_configs_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    demo = load_config(REPO / "config" / "demo")
    assert set(demo.rosters) == set(demo.schools)
    for name in (
        "ZVONOK_SMTP_PASSWORD",
        "ZVONOK_MAX_TOKEN_SCHOOL1",
        "ZVONOK_VK_TOKEN_SCHOOL1",
        "ZVONOK_MAX_WEBHOOK_SECRET_SCHOOL1",
        "ZVONOK_LINK_SECRET",
    ):
        monkeypatch.setenv(name, f"secret-{name}")
    example = load_config(REPO / "config" / "example")
    assert example.settings.email.starttls
    assert example.settings.secret == "secret-ZVONOK_LINK_SECRET" and demo.settings.secret
    assert example.tokens["max"]["school-1"] == "secret-ZVONOK_MAX_TOKEN_SCHOOL1"


def test_trusted_proxies_are_addresses_or_networks(tmp_path: Path) -> None:
    settings = "trusted_proxies: [127.0.0.1, 10.0.0.0/8, '::1']\nlogin_lists_schools: true\n"
    config = load_config(write_config(tmp_path / "ok", settings=settings))
    assert config.settings.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8", "::1/128")
    assert config.settings.login_lists_schools
    assert load_config(write_config(tmp_path / "none", settings="")).settings.trusted_proxies == ()
    with pytest.raises(InvalidInput) as caught:
        load_config(write_config(tmp_path / "bad", settings="trusted_proxies: [127.0.0.1, nginx.local]\n"))
    [problem] = caught.value.problems
    assert problem.field == "trusted_proxies[2]" and "«nginx.local» — не IP-адрес и не сеть" in problem.message
