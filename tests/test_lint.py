"""Content lint: each rule on realistic school texts, clean announcements that must pass, settings and config."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.lint import DEFAULT_SETTINGS, Finding, LintSettings, Rule, lint

CAPS, HOMEWORK, GREETING, LONG, PERSONAL, LINK = (
    Rule.CAPS,
    Rule.HOMEWORK,
    Rule.GREETING_ONLY,
    Rule.TOO_LONG,
    Rule.PERSONAL,
    Rule.BANNED_LINK,
)

# (title, text, the rules it must break — exactly these, excerpt expected for the first listed rule or None)
CASES = [
    # --- clean announcements: no finding at all ---
    pytest.param(
        "Родительское собрание",
        "Уважаемые родители! 25 ноября в 18:00 родительское собрание 5-х классов в актовом зале.",
        set(),
        None,
        id="clean-meeting",
    ),
    pytest.param(
        "Расписание ОГЭ",
        "Расписание ОГЭ-2026: 19 мая — история, физика; 22 мая — ОБЗР, литература, информатика (ИКТ). "
        "Начало в 10:00, ППЭ на базе МБОУ СОШ № 5. При себе иметь паспорт и чёрную гелевую ручку.",
        set(),
        None,
        id="clean-oge-schedule",
    ),
    pytest.param(
        "ЕГЭ",
        "Выпускники 11А и 11Б! ЕГЭ по русскому языку — 26 мая, по математике (профиль) — 29 мая. Явка в ППЭ "
        "к 9:00. ГИА-11 проводится по расписанию Рособрнадзора.",
        set(),
        None,
        id="clean-ege-notice",
    ),
    pytest.param(
        "Собрание 7Б",
        "Уважаемые родители 7Б! 28 ноября в 18:30 собрание в каб. 24. Повестка: итоги 1 четверти, поведение на "
        "переменах, питание. Кл. руководитель Петрова А. С.",
        set(),
        None,
        id="clean-class-teacher-signature",
    ),
    pytest.param(
        "Итоги четверти",
        "Кл. руководитель Петрова А. С. расскажет об итогах четверти и оценках на собрании в четверг.",
        set(),
        None,
        id="clean-teacher-name-near-matter-word",
    ),
    pytest.param(
        "Актированный день",
        "Завтра актированный день, занятия отменены.",
        set(),
        None,
        id="clean-aktirovanny-den",
    ),
    pytest.param(
        "Изменение расписания",
        "Уважаемые родители учащихся 5А, 5Б! В связи с болезнью учителя Кузнецовой Т. И. уроки английского языка "
        "26–28 ноября заменены на уроки математики. Расписание — в электронном дневнике.",
        set(),
        None,
        id="clean-teacher-ill-with-title",
    ),
    pytest.param(
        "Профилактика ОРВИ",
        "Уважаемые родители! В школе зарегистрированы случаи ОРВИ. Если ваш ребёнок заболел, оставьте его дома "
        "и вызовите врача. После болезни нужна справка от педиатра.",
        set(),
        None,
        id="clean-generic-your-child-ill",
    ),
    pytest.param(
        "Справки",
        "Справки после болезни сдавать медсестре Ивановой Н. П. до пятницы, кабинет 104.",
        set(),
        None,
        id="clean-nurse-name",
    ),
    pytest.param(
        "Экскурсия",
        "Экскурсия 6-х классов в музей на ул. Гагарина переносится из-за болезни экскурсовода на 3 декабря.",
        set(),
        None,
        id="clean-street-named-after-person",
    ),
    pytest.param(
        "Питание",
        "Оплата питания за декабрь — до 25 ноября. Задолженность можно проверить в личном кабинете. "
        "Ответственный — социальный педагог Орлова Н. В.",
        set(),
        None,
        id="clean-meal-payment",
    ),
    pytest.param(
        "Собрание",
        "Собрание проведёт Мария Ивановна, просьба не опаздывать.",
        set(),
        None,
        id="clean-name-with-patronymic",
    ),
    pytest.param(
        "Замена",
        "Замена уроков 3 декабря: 7Б, 8А, 10В, 11А — физкультура в спортзале, XXI век, II четверть.",
        set(),
        None,
        id="clean-class-names-and-roman-numerals",
    ),
    pytest.param(
        "Отключение воды",
        "ВНИМАНИЕ! Завтра в школе отключат воду, уроки сокращённые по 30 минут, столовая не работает.",
        set(),
        None,
        id="clean-one-emphasised-word",
    ),
    pytest.param(
        "Домашние задания",
        "На время карантина домашние задания смотрите в электронном дневнике «Моя школа».",
        set(),
        None,
        id="clean-homework-is-in-journal",
    ),
    pytest.param(
        "Актированный день",
        "В актированный день домашнее задание не задаётся, уроки переносятся.",
        set(),
        None,
        id="clean-no-homework-today",
    ),
    pytest.param(
        "Документы",
        "Приказ № 45 от 01.09.2025 размещён на сайте школы в разделе «Документы», кабинет № 12 — приёмная.",
        set(),
        None,
        id="clean-order-number",
    ),
    pytest.param(
        "Доброе утро",
        "Доброе утро! Сегодня уроки по расписанию, столовая работает в обычном режиме.",
        set(),
        None,
        id="clean-greeting-with-information",
    ),
    pytest.param(
        "Олимпиада",
        "Поздравляем учеников 9Б с победой в муниципальной олимпиаде по химии!",
        set(),
        None,
        id="clean-congratulation-with-information",
    ),
    pytest.param(
        "Официальный чат",
        "Все объявления — только в официальном чате MAX (Сферум): https://max.ru/join/abc и на sferum.ru.",
        set(),
        None,
        id="clean-official-chat-link",
    ),
    # --- CAPS ---
    pytest.param(
        "Отмена занятий",
        "ВНИМАНИЕ! ЗАВТРА 5 ДЕКАБРЯ ЗАНЯТИЯ В 1 СМЕНУ ОТМЕНЯЮТСЯ ИЗ-ЗА МОРОЗА",
        {CAPS},
        "ВНИМАНИЕ! ЗАВТРА 5 ДЕКАБРЯ ЗАНЯТИЯ",
        id="caps-whole-text",
    ),
    pytest.param(
        "Собрание",
        "Внимание, СРОЧНО: родительское собрание ПЕРЕНОСИТСЯ на четверг.",
        {CAPS},
        "ПЕРЕНОСИТСЯ",
        id="caps-two-long-words",
    ),
    pytest.param(
        "ВНИМАНИЕ РОДИТЕЛЯМ 9-Х КЛАССОВ",
        "Пробный ОГЭ по математике пройдёт 12 декабря в 9:00, кабинеты 21–24.",
        {CAPS},
        "ВНИМАНИЕ РОДИТЕЛЯМ",
        id="caps-title",
    ),
    pytest.param(
        "Субботник",
        "ВСЕ НА СУББОТНИК В СУББОТУ В 10:00, БЕРЁМ ПЕРЧАТКИ",
        {CAPS},
        "ВСЕ НА СУББОТНИК В СУББОТУ В 10:00, БЕРЁМ ПЕРЧАТКИ",
        id="caps-share",
    ),
    # --- HOMEWORK ---
    pytest.param(
        "Русский язык, 6А",
        "Д/з по русскому: упр. 234, выучить правило на стр. 56.",
        {HOMEWORK},
        "упр. 234",
        id="homework-exercise-and-page",
    ),
    pytest.param(
        "Математика",
        "Домашнее задание по математике на завтра — решить задачи из учебника.",
        {HOMEWORK},
        "Домашнее задание",
        id="homework-mention",
    ),
    pytest.param(
        "Литература",
        "Ребята, к следующему уроку прочитать рассказ «Муму» и ответить на вопросы.",
        {HOMEWORK},
        "к следующему уроку",
        id="homework-next-lesson",
    ),
    pytest.param(
        "Математика 5Б",
        "Решить номера 125, 126 и 130 письменно, тетради сдать в пятницу.",
        {HOMEWORK},
        "Решить номера 125",
        id="homework-numbers",
    ),
    pytest.param(
        "История",
        "Повторить § 14, выполнить задания в рабочей тетради.",
        {HOMEWORK},
        "§ 14",
        id="homework-paragraph",
    ),
    pytest.param(
        "Английский",
        "Что задано на понедельник: выучить слова по теме Weather.",
        {HOMEWORK},
        "задано на понедельник",
        id="homework-zadano",
    ),
    pytest.param(
        "Каникулы",
        "ДЗ на каникулы: прочитать главы 1–5 «Капитанской дочки».",
        {HOMEWORK},
        "прочитать глав",
        id="homework-dz-holidays",
    ),
    pytest.param(
        "Биология",
        "Упражнение № 7 и параграф 12 — к контрольной в среду.",
        {HOMEWORK},
        "Упражнение № 7",
        id="homework-exercise-number",
    ),
    # --- GREETING_ONLY ---
    pytest.param(
        "Доброе утро", "Доброе утро, уважаемые родители! ☀️", {GREETING}, "Доброе утро", id="greeting-good-morning"
    ),
    pytest.param(
        "8 Марта",
        "Дорогие мамы! Поздравляем вас с 8 Марта! Желаем счастья, здоровья и весеннего настроения! 🌷🌷🌷",
        {GREETING},
        "Дорогие мамы!",
        id="greeting-march-8",
    ),
    pytest.param("Праздник", "С праздником!!! 🌷🌷", {GREETING}, "С праздником!!! 🌷🌷", id="greeting-holiday"),
    pytest.param("", "👍", {GREETING}, "👍", id="greeting-sticker"),
    pytest.param(
        "С Днём учителя", "С Днём учителя, 5 октября! 💐", {GREETING}, "С Днём учителя", id="greeting-with-date"
    ),
    pytest.param("Спасибо", "Спасибо, принято!", {GREETING}, "Спасибо, принято!", id="greeting-thanks"),
    pytest.param("Поздравление", "С днём рождения, Маша! 🎂🎉", {GREETING}, "С днём рождения", id="greeting-birthday"),
    # --- PERSONAL ---
    pytest.param(
        "Опоздания",
        "Иванов Петя опять опоздал на первый урок, прошу родителей принять меры.",
        {PERSONAL},
        "Иванов Петя опять опоздал",
        id="personal-late",
    ),
    pytest.param(
        "Зачёт",
        "Не сдали зачёт по физике: Иванов, Петрова, Сидоров.",
        {PERSONAL},
        "Не сдали зачёт по физике: Иванов",
        id="personal-debtors-list",
    ),
    pytest.param(
        "Оценки",
        "Ваша дочь сегодня получила двойку по математике.",
        {PERSONAL},
        "Ваша дочь сегодня получила двойку",
        id="personal-your-daughter",
    ),
    pytest.param(
        "Литература",
        "У Маши Петровой долг по литературе за четверть.",
        {PERSONAL},
        "Маши Петровой долг",
        id="personal-debt",
    ),
    pytest.param(
        "Поведение",
        "Родителей Сидорова Артёма просим зайти к директору по поводу поведения сына.",
        {PERSONAL},
        "Сидорова Артёма просим зайти к директору",
        id="personal-behaviour",
    ),
    pytest.param(
        "Сменка",
        "Кузнецова Даша забыла сменную обувь, заберите из раздевалки.",
        {PERSONAL},
        "Кузнецова Даша забыла",
        id="personal-forgot",
    ),
    pytest.param(
        "Справка",
        "Петя Смирнов болеет, справку принести до понедельника.",
        {PERSONAL},
        "Петя Смирнов болеет",
        id="personal-ill",
    ),
    pytest.param(
        "Перемена",
        "Сегодня Морозов подрался на перемене с учеником 6Б.",
        {PERSONAL},
        "Морозов подрался",
        id="personal-surname-alone",
    ),
    # --- BANNED_LINK ---
    pytest.param(
        "Родительский чат",
        "Вступайте в родительский чат: https://t.me/+abcDEF123",
        {LINK},
        "https://t.me/+abcDEF123",
        id="link-telegram",
    ),
    pytest.param(
        "Кружок",
        "Запись в кружок робототехники через chat.whatsapp.com/Invite123.",
        {LINK},
        "chat.whatsapp.com/Invite123",
        id="link-whatsapp",
    ),
    # --- several at once, in Rule order ---
    pytest.param(
        "ДОМАШНЕЕ ЗАДАНИЕ",
        "СРОЧНО! Упр. 45 прислать в https://t.me/class5a, Иванов опять не сдал тетрадь.",
        {CAPS, HOMEWORK, PERSONAL, LINK},
        "ДОМАШНЕЕ ЗАДАНИЕ",
        id="several-rules",
    ),
    # --- documented limits (see the module docstring): pinned so the docstring stays true ---
    pytest.param("Тетради", "Иванов опять не сдал тетрадь.", set(), None, id="limit-miss-surname-at-sentence-start"),
    pytest.param(
        "Замена",
        "Петрова А. С. болеет, уроки английского заменены.",
        {PERSONAL},
        "Петрова А. С. болеет",
        id="limit-false-alarm-teacher-without-title",
    ),
    pytest.param("", "ВСЕ НА СУББОТНИК!", set(), None, id="limit-miss-short-shout"),
    pytest.param("Субботник", "ВСЕ НА СУББОТНИК!", {CAPS}, "ВСЕ НА СУББОТНИК", id="caps-short-shout-with-title"),
    pytest.param(
        "Приём в 1 класс",
        "Порядок приёма описан в положении, стр. 3.",
        {HOMEWORK},
        "стр. 3",
        id="limit-false-alarm-document-page",
    ),
    pytest.param(
        "Праздник",
        "Поздравляем с Днём учителя в этот осенний день!",
        set(),
        None,
        id="limit-miss-greeting-with-other-words",
    ),
    pytest.param(
        "Разговоры о важном",
        "Напоминаем: в понедельник первым уроком «РАЗГОВОРЫ О ВАЖНОМ», форма парадная.",
        {CAPS},
        "РАЗГОВОРЫ О ВАЖНОМ",
        id="limit-false-alarm-event-name-in-caps",
    ),
    pytest.param(
        "Опоздания",
        "Иванов Петя! Опять опоздание на первый урок.",
        set(),
        None,
        id="limit-miss-name-and-matter-in-two-sentences",
    ),
    pytest.param(
        "Математика",
        "Математика: 12 примеров из учебника, письменно.",
        set(),
        None,
        id="limit-miss-homework-without-keywords",
    ),
]


@pytest.mark.parametrize(("title", "text", "rules", "excerpt"), CASES)
def test_rules_on_school_texts(title: str, text: str, rules: set[Rule], excerpt: str | None) -> None:
    findings = lint(title, text)
    assert {f.rule for f in findings} == rules, findings
    if excerpt is not None:
        first = next(f for f in findings if f.rule is min(rules, key=list(Rule).index))
        assert first.excerpt.startswith(excerpt)
    for f in findings:
        assert f.excerpt == "" or f.excerpt in title or f.excerpt in text
        assert re.search(r"[а-яё]", f.message), f.message


def test_findings_come_in_rule_order_one_per_rule() -> None:
    findings = lint("ДОМАШНЕЕ ЗАДАНИЕ", "СРОЧНО! Упр. 45 и стр. 12 прислать в https://t.me/x и wa.me/79990000000")
    assert [f.rule for f in findings] == [CAPS, HOMEWORK, LINK]


def test_homework_message_points_to_the_journal() -> None:
    (finding,) = lint("Математика", "Д/з: упр. 125")
    assert "Моя школа" in finding.message
    assert "электронн" in finding.message


def test_banned_link_message_names_the_messenger() -> None:
    (finding,) = lint("Чат", "Наш чат: https://t.me/+abc и chat.whatsapp.com/xyz")
    assert "Telegram, WhatsApp" in finding.message
    assert "MAX" in finding.message


def test_personal_only_in_group_chats() -> None:
    text = "Ваш сын сегодня опоздал на первый урок и получил замечание."
    assert [f.rule for f in lint("Опоздание", text)] == [PERSONAL]
    assert lint("Опоздание", text, group_chat=False) == []


def test_too_long_over_the_limit_only() -> None:
    sentence = "Уважаемые родители! Напоминаем о собрании 25 ноября в 18:00 в актовом зале. "
    title = "Собрание"
    text = (sentence * 40)[: 2000 - len(title)]
    assert lint(title, text) == []
    (finding,) = lint(title, text + "!")
    assert finding == Finding(Rule.TOO_LONG, finding.message, False, "")
    assert "2001" in finding.message
    assert "2000" in finding.message
    short = LintSettings(max_length=500)
    assert [f.rule for f in lint(title, text, short)] == [LONG]
    assert "500" in lint(title, text, short)[0].message


def test_by_default_every_rule_only_warns() -> None:
    assert LintSettings() == DEFAULT_SETTINGS
    findings = lint("ВНИМАНИЕ РОДИТЕЛЯМ", "СРОЧНО вступайте: https://t.me/+abc")
    assert {f.rule: f.blocking for f in findings} == {CAPS: False, LINK: False}
    refusing = LintSettings(blocking=frozenset({LINK}))
    assert {f.rule: f.blocking for f in lint("Чат", "https://t.me/+abc", refusing)} == {LINK: True}


def test_blocking_follows_settings() -> None:
    strict = LintSettings(blocking=frozenset({CAPS, HOMEWORK}))
    findings = lint("ВНИМАНИЕ РОДИТЕЛЯМ", "СРОЧНО: упр. 5 и https://t.me/+abc", strict)
    assert {f.rule: f.blocking for f in findings} == {CAPS: True, HOMEWORK: True, LINK: False}
    relaxed = LintSettings(blocking=frozenset())
    assert not any(f.blocking for f in lint("Чат", "https://t.me/+abc", relaxed))


def test_from_config_reads_the_section() -> None:
    loaded = LintSettings.from_config({"blocking": ["caps", "homework"], "max_length": 1500})
    assert loaded == LintSettings(blocking=frozenset({CAPS, HOMEWORK}), max_length=1500)
    assert LintSettings.from_config({}) == LintSettings()
    assert LintSettings.from_config({"blocking": []}).blocking == frozenset()
    assert LintSettings.from_config({"blocking": None}).blocking == frozenset()
    assert LintSettings.from_config({"blocking": ["CAPS", "greeting-only", " personal "]}).blocking == {
        CAPS,
        GREETING,
        PERSONAL,
    }


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param({"blocking": ["caps", "many_messages"]}, "«many_messages»", id="unknown-rule"),
        pytest.param({"blocking": ["капс"]}, "«капс»", id="unknown-rule-russian"),
        pytest.param({"blocking": "caps"}, "списком", id="blocking-not-a-list"),
        pytest.param({"max_length": 0}, "max_length", id="zero-length"),
        pytest.param({"max_length": -100}, "max_length", id="negative-length"),
        pytest.param({"max_length": "2000"}, "max_length", id="length-as-string"),
        pytest.param({"max_length": True}, "max_length", id="length-as-bool"),
        pytest.param({"maxlength": 1500}, "maxlength", id="unknown-key"),
    ],
)
def test_from_config_rejects(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)) as raised:
        LintSettings.from_config(data)
    assert re.search(r"[а-яё]", str(raised.value))


def test_unknown_rule_error_lists_the_allowed_rules() -> None:
    with pytest.raises(ValueError, match="неизвестное правило «links»") as raised:
        LintSettings.from_config({"blocking": ["links"]})
    for rule in Rule:
        assert rule.value in str(raised.value)


def test_settings_reject_non_positive_length() -> None:
    with pytest.raises(ValueError, match="max_length"):
        LintSettings(max_length=0)


def test_every_rule_has_a_russian_label() -> None:
    for rule in Rule:
        assert re.search(r"[а-яё]", rule.label)


FRAGMENTS = [
    "Уважаемые родители!",
    "Иванов Петя опять опоздал на урок.",
    "Домашнее задание: упр. 125, стр. 45, § 14.",
    "ВНИМАНИЕ",
    "ЗАВТРА УРОКОВ НЕТ",
    "https://t.me/school1",
    "chat.whatsapp.com/AbC",
    "Доброе утро! 🌷🌷",
    "кл. руководитель Петрова А. С.",
    "Приказ № 45",
    "ваш сын не сдал справку",
    "\n\n",
    "  ",
]
SCHOOL_TEXT = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=40)), max_size=12).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(
    title=SCHOOL_TEXT,
    text=SCHOOL_TEXT,
    group_chat=st.booleans(),
    blocking=st.frozensets(st.sampled_from(list(Rule))),
    max_length=st.integers(min_value=1, max_value=3000),
)
def test_lint_never_raises_and_excerpts_come_from_the_input(
    title: str, text: str, group_chat: bool, blocking: frozenset[Rule], max_length: int
) -> None:
    findings = lint(title, text, LintSettings(blocking=blocking, max_length=max_length), group_chat=group_chat)
    rules = [f.rule for f in findings]
    assert rules == sorted(set(rules), key=list(Rule).index)
    for f in findings:
        assert f.excerpt == "" or f.excerpt in title or f.excerpt in text
        assert len(f.excerpt) <= 80
        assert f.blocking == (f.rule in blocking)
        assert f.message
    assert (Rule.TOO_LONG in rules) == (len(title) + len(text) > max_length)
    if not group_chat:
        assert Rule.PERSONAL not in rules
