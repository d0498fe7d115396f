"""Content lint: what the regulations say an announcement in a school chat should not look like.

The regional recommendations for official school chats (seeds: the Kaluga ministry letter of 31.01.2024 and the
school regulations built on it) ask for working information only: no stickers, greetings or "Спасибо/Принято"
posts (item 6), nothing about a child's personal matters in the common chat (items 11, 14), no CAPS (item 15),
no homework — it belongs in «Моя школа» / the electronic journal (item 19) — and no foreign messengers. "One
message rather than many" (item 18) is not a lint rule: the planner merges, and the adapters split only above
the chats' hard limits.

`lint(title, text)` returns at most one `Finding` per `Rule`, in the order the rules are declared. Every finding
is a warning unless the school lists its rule in `LintSettings.blocking` (by default none blocks, as issue 5 asks;
`gateway.policy` refuses banned channels in the configuration as well). An excerpt is always a slice of the
title or of the text as given (possibly empty), so a caller can highlight it.

The checks are heuristics over plain Russian text: regular expressions and word lists, no morphology, no
dictionary. They are tuned to miss rather than to nag, because a warning that fires on ordinary announcements is
soon ignored. What each one catches and misses:

CAPS — letters of words are counted, skipping one-letter words (initials, «В»), known abbreviations (МБОУ, СОШ,
ОГЭ, ЕГЭ, ВПР, ГИА, МЧС, ГИБДД, ОРВИ, РФ, ИКТ, ФИО, … see `ABBREVIATIONS`), Roman numerals and class letters
(«7Б», «10-А»). Flags when at least half of at least 20 counted letters are capitals, or when two words of five
or more letters are entirely in capitals.
  catches: «ВНИМАНИЕ! ЗАВТРА ЗАНЯТИЯ ОТМЕНЯЮТСЯ», «Внимание, СРОЧНО: собрание ПЕРЕНОСИТСЯ».
  lets through: one emphasised word («ВНИМАНИЕ! Завтра…», which the recommendation itself allows «чтобы
  привлечь внимание»), short shouts under 20 letters («ВСЕ НА СУББОТНИК!» with no title), an unknown
  abbreviation counted as a word. False alarm: two surnames in official capitals («ИВАНОВА Мария, ПЕТРОВА
  Анна») or an event name in capitals («РАЗГОВОРЫ О ВАЖНОМ»).

HOMEWORK — two kinds of pattern. A concrete task always flags: «упр. 125», «упражнение № 3», «стр. 45»,
«страница 12», «§ 12», «параграф 5», «решить номера 125, 126», «выполнить № 45», «номера 3 и 4», «выучить
стихотворение/правило/наизусть», «прочитать главу/рассказ/§», «задали на завтра», «к следующему уроку», «в
рабочей тетради», «подготовить доклад/реферат/пересказ». A mere mention («домашнее задание», «домашка», «д/з»,
«ДЗ») flags unless the same sentence points to the journal («…смотрите в электронном дневнике», «…в «Моя
школа»») or says there is none («домашние задания не задаются»); for a mention in the title, the title or any
sentence of the text may do so.
  catches: «Д/з по русскому: упр. 234, выучить правило на стр. 56», «Домашнее задание на завтра — решить задачи».
  misses: homework without any of these words («Математика: 12 примеров из учебника, письменно»).
  False alarm: «стр. 3» or «§ 2» meaning a page or section of a document.

GREETING_ONLY — every word of title and text is from the greeting, congratulation, thanks and acknowledgement
vocabulary (`GREETING_WORDS`: «Доброе утро», «С праздником», «Поздравляем», «Спасибо», «Принято», «Уважаемые
родители», month names, …), a common first name, or a generic label («Объявление»); numbers, emoji and
punctuation carry no information. An empty title and text are left to `policy.check_request`.
  catches: «Доброе утро!», «С праздником!!! 🌷🌷», «👍», «С днём рождения, Маша! 🎂», «Спасибо, принято».
  lets through, rightly: a congratulation that carries news («Поздравляем 9Б с победой в олимпиаде по химии!»).
  misses: a greeting with any word outside the list («Поздравляем с Днём учителя в этот осенний день!»: «этот»
  and «осенний» count as information). A bare date or time («25.11, 18:00») counts as no information.

TOO_LONG — `len(title) + len(text) > max_length` (default 2000, see `LintSettings`). Excerpt is empty.

PERSONAL (group chats only) — within one sentence, a reference to a child next to a personal matter
(`_MATTER`: «опоздал», «двойк», «оценк», «поведени», «замечани», «долг», «не сдал», «забыл», «болеет»,
«диагноз», «справк», «драк», «к директору», «на учёт», «ОВЗ», «аллерги», …). A child is:
  * «ваш сын», «вашей дочери», «вашего ребёнка» — unless the sentence is generic («если», «в случае», «когда»,
    «чтобы», «ли»): «Если ваш ребёнок болеет, оставьте его дома» is an instruction to everyone;
  * a common first name («Маша», «Петю», «Артёма») not followed by a patronymic («Мария Ивановна» is an adult);
  * a capitalised surname-looking word (-ов/-ев/-ин/-ын and their case forms, -енко, -ук/-юк) inside a
    sentence; at the start of a sentence, or with the adjective-like endings -ский/-цкий and their case forms
    or -их/-ых («Российской Федерации», «Черных»), only together with a first name or initials;
  * a surname with initials («Иванов И.»).
A reference preceded within three words by a staff title («кл. руководитель», «учитель», «директор»,
«медсестра», «педагог-психолог», …) is staff, not a child; a surname after «ул.», «им.», «г.» or an opening
quote is a place or an organisation.
  catches: «Иванов Петя опять опоздал на первый урок», «Не сдали зачёт: Иванов, Петрова, Сидоров»,
  «Ваша дочь сегодня получила двойку», «У Маши Петровой долг по математике».
  lets through: «Кл. руководитель Петрова А. С. расскажет об итогах четверти и оценках», «Справки сдавать
  медсестре Ивановой Н. П.», «Собрание проведёт Мария Ивановна».
  misses: a surname alone at the start of a sentence («Иванов опять не сдал тетрадь»), lowercase or
  misspelt names, uncommon first names, matters outside the list («Петя плакал весь урок»), a name and its
  matter in two different sentences («Иванов Петя! Опять опоздание»). False alarm: a teacher named without a
  title next to a matter word («Петрова А. С. болеет, уроки английского заменены»).

BANNED_LINK — `gateway.policy.banned_links` on each whitespace-separated token (t.me/…, chat.whatsapp.com/…,
invite.viber.com/…, discord.gg/…); a messenger merely named in words is not a link and is not flagged here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateway.policy import BANNED_RULE, banned_links


class Rule(StrEnum):
    """What an announcement's content may break. Values are the names used in the school's configuration."""

    CAPS = "caps"
    HOMEWORK = "homework"
    GREETING_ONLY = "greeting_only"
    TOO_LONG = "too_long"
    PERSONAL = "personal"
    BANNED_LINK = "banned_link"

    @property
    def label(self) -> str:
        return _RULE_LABELS[self]


_RULE_LABELS = {
    Rule.CAPS: "заглавные буквы",
    Rule.HOMEWORK: "домашнее задание",
    Rule.GREETING_ONLY: "только приветствие или смайлики",
    Rule.TOO_LONG: "слишком длинное объявление",
    Rule.PERSONAL: "личные сведения о ребёнке",
    Rule.BANNED_LINK: "ссылка на запрещённый мессенджер",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem with an announcement: the rule, a Russian explanation with what to do, and where it is."""

    rule: Rule
    message: str
    blocking: bool
    excerpt: str


@dataclass(frozen=True, slots=True)
class LintSettings:
    """Which rules refuse an announcement outright (the rest warn), and the readable length.

    `max_length` defaults to 2000 characters of title and text: half of MAX's 4000-character message limit
    (VK's is 4096), so an announcement that passes goes out as one chat message — the regulations ask for one
    message rather than many — with room for the header, the footer and a class teacher's note when it is
    forwarded. It is also about three phone screens (some 250–300 words, a minute or two of reading); past that,
    parents stop reading, and the details belong in an attachment or on the school's site.
    """

    blocking: frozenset[Rule] = frozenset()
    max_length: int = 2000

    def __post_init__(self) -> None:
        if self.max_length <= 0:
            raise ValueError(f"lint.max_length должно быть положительным числом, а не {self.max_length}")

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> LintSettings:
        """Settings from a YAML section such as `{blocking: [caps, homework], max_length: 1500}`.

        Missing keys keep their defaults; an empty `blocking` list makes every rule a warning. Raises ValueError
        with a Russian message for an unknown key, an unknown rule name or a bad length.
        """
        known = {"blocking", "max_length"}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"неизвестные поля в разделе lint: {', '.join(unknown)}; допустимы: blocking, max_length")
        defaults = cls()
        blocking = defaults.blocking
        if "blocking" in data:
            raw = data["blocking"]
            if raw is None:
                raw = []
            if isinstance(raw, str) or not isinstance(raw, list | tuple | set | frozenset):
                raise ValueError("lint.blocking должно быть списком правил, например [caps, homework]")
            rules: set[Rule] = set()
            for item in raw:
                name = str(item).strip().casefold().replace("-", "_")
                try:
                    rules.add(Rule(name))
                except ValueError:
                    allowed = ", ".join(r.value for r in Rule)
                    raise ValueError(
                        f"неизвестное правило «{item}» в lint.blocking; допустимые правила: {allowed}"
                    ) from None
            blocking = frozenset(rules)
        max_length = defaults.max_length
        if "max_length" in data:
            value = data["max_length"]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"lint.max_length должно быть целым положительным числом, а не «{value}»")
            max_length = value
        return cls(blocking=blocking, max_length=max_length)


DEFAULT_SETTINGS = LintSettings()

_MESSAGES = {
    Rule.CAPS: (
        "Много текста ЗАГЛАВНЫМИ буквами: в чате это читается как крик. Правила ведения школьных чатов просят "
        "избегать Caps — наберите текст обычными буквами, а главное выделите одним словом."
    ),
    Rule.HOMEWORK: (
        "Похоже на домашнее задание. Домашние задания в чаты не выкладывают: разместите его в электронном "
        "дневнике («Моя школа» / электронный журнал), а в чате при необходимости напомните, где его смотреть."
    ),
    Rule.GREETING_ONLY: (
        "В сообщении только приветствие, поздравление, благодарность или смайлики — информации для родителей в "
        "нём нет. Правила ведения чатов просят не отправлять стикеры, поздравления и сообщения вроде «Спасибо», "
        "«Принято»: добавьте суть объявления или не отправляйте его."
    ),
    Rule.PERSONAL: (
        "Похоже, речь о конкретном ребёнке и его личных делах (успеваемость, поведение, здоровье, долги). В общем "
        "чате такое не обсуждают: напишите родителям личным сообщением или позвоните им."
    ),
}

_EXCERPT = 80


def lint(title: str, text: str, settings: LintSettings = DEFAULT_SETTINGS, *, group_chat: bool = True) -> list[Finding]:
    """The content problems of an announcement, at most one per rule, in `Rule` order.

    `group_chat` is False for a message to one family (e-mail to a guardian, a private chat); PERSONAL is
    checked only for group chats. Never raises on any text.
    """
    parts = (title, text)
    found: dict[Rule, tuple[str, str]] = {}

    caps = _caps(parts)
    if caps is not None:
        found[Rule.CAPS] = (_MESSAGES[Rule.CAPS], caps)
    homework = _homework(title, text)
    if homework is not None:
        found[Rule.HOMEWORK] = (_MESSAGES[Rule.HOMEWORK], homework)
    greeting = _greeting_only(parts)
    if greeting is not None:
        found[Rule.GREETING_ONLY] = (_MESSAGES[Rule.GREETING_ONLY], greeting)
    length = len(title) + len(text)
    if length > settings.max_length:
        found[Rule.TOO_LONG] = (
            f"Объявление длиной {length} символов, рекомендуется не больше {settings.max_length}: на телефоне "
            "длинный текст дочитают немногие. Сократите его, а подробности вынесите во вложение или на сайт школы.",
            "",
        )
    if group_chat:
        personal = _first(_personal, parts)
        if personal is not None:
            found[Rule.PERSONAL] = (_MESSAGES[Rule.PERSONAL], personal)
    link = _banned_link(parts)
    if link is not None:
        names = ", ".join(banned_links(f"{title}\n{text}")) or "иностранный мессенджер"
        found[Rule.BANNED_LINK] = (f"В объявлении ссылка на {names}: {BANNED_RULE}.", link)

    findings: list[Finding] = []
    for rule in Rule:
        if rule in found:
            message, excerpt = found[rule]
            findings.append(Finding(rule, message, rule in settings.blocking, excerpt))
    return findings


# --- helpers -------------------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]+")


def _words(listing: str) -> frozenset[str]:
    """A word list written as whitespace-separated text; lowercase entries are normalised like `_norm`."""
    return frozenset(_norm(w) if w.islower() else w for w in listing.split())


def _norm(word: str) -> str:
    return word.casefold().replace("ё", "е")


def _first(check: Callable[[str], tuple[int, int] | None], parts: Iterable[str]) -> str | None:
    """The excerpt of the first part (title, then text) in which `check` finds a span."""
    for s in parts:
        span = check(s)
        if span is not None:
            return _cut(s, *span)
    return None


def _cut(s: str, start: int, end: int, limit: int = _EXCERPT) -> str:
    return s[start : min(end, start + limit)].strip()


def _titlecase(word: str) -> bool:
    return len(word) >= 2 and word[0].isupper() and word[1:].islower()


_NO_SPLIT_BEFORE_DOT = _words(
    "кл рук руков зам дир ул им пр пер пл просп обл стр упр тел каб корп ст св гр см т н др пос мкр"
)
_BOUNDARY = re.compile(r"\n|[!?…]+|\.(?=\s+[«\"A-ZА-ЯЁ])")


def _sentences(s: str) -> list[tuple[int, int]]:
    """Sentence spans of `s`: split at line breaks, !?… and at a full stop before a capital, except after an
    initial («Петрова А. С. расскажет») or a common abbreviation («кл. Руководитель», «ул. Ленина»)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(s):
        if m.group() == ".":
            i = m.start()
            while i > start and s[i - 1].isalpha():
                i -= 1
            before = s[i : m.start()]
            if len(before) == 1 or _norm(before) in _NO_SPLIT_BEFORE_DOT:
                continue
        spans.append((start, m.end()))
        start = m.end()
    spans.append((start, len(s)))
    return [(a, b) for a, b in spans if s[a:b].strip()]


# --- CAPS ----------------------------------------------------------------------------------------------------

ABBREVIATIONS = _words(
    """
    МБОУ МАОУ МКОУ МОУ ГБОУ ГАОУ ГКОУ ЧОУ МБДОУ МАДОУ ДОУ СОШ ООШ НОШ СКОШ ЦО ДДТ ЦДТ ДЮСШ СШ ДШИ ДК ДО
    ОГЭ ЕГЭ ВПР ГИА ГВЭ ППЭ КИМ ВСОШ НИКО ВСОКО PISA TIMSS ФГОС ФОП ФГИС РГИС ИКОП ЦОС МЭШ РЭШ ЭЖ ЭЛЖУР
    МЧС МВД ГИБДД ГАИ ПДД ОВД КДН КДНИЗП ПДН ПМПК ППК ОВЗ ИПР СИПР АООП АОП ИОМ ОРВИ ОРЗ COVID ГРИПП
    ЖКХ МФЦ ЗАГС ТЦ ЦРБ ФАП ГБУЗ ГУЗ ФОК ТЮЗ РФ СССР США ВОВ СВО ЧС ЧП РОНО ГОРОНО УО ОО НОО ООО СОО СПО
    ВУЗ ССУЗ ИКТ ОБЖ ОБЗР ИЗО МХК ЛФК ГТО РДШ РДДМ ЮИД ЮНАРМИЯ ФИО СНИЛС ИНН ОМС ДМС НДФЛ СМС SMS QR PDF
    IT VK MAX URL ID ДЗ КТД ИП ВКС ЛНА ПФДО ДОД ЕАИС ЕСИА ГУ МУ МКУ ЦПКИО ЦСО ГО ЦРТДЮ ЦВР
    """
)
_ROMAN = re.compile(r"[IVXLCDM]+")


def _counted(s: str, m: re.Match[str]) -> bool:
    """Whether a word counts for CAPS: not an initial, an abbreviation, a Roman numeral or a class letter."""
    word = m.group()
    if len(word) < 2 or word.upper() in ABBREVIATIONS or _ROMAN.fullmatch(word):
        return False
    i = m.start()
    return not (i >= 1 and s[i - 1].isdigit()) and not (i >= 2 and s[i - 1] in "-–" and s[i - 2].isdigit())


def _caps(parts: Iterable[str]) -> str | None:
    upper = lower = long_words = 0
    best = ""  # the longest run of words in capitals
    loudest = ""  # the start of the part with the most capitals, for mixed «ВнИмАнИе»
    loudest_count = 0
    for s in parts:
        runs: list[tuple[int, int]] = []
        part_upper = 0
        for m in _WORD.finditer(s):
            if not _counted(s, m):
                continue
            u = sum(1 for c in m.group() if c.isupper())
            low = sum(1 for c in m.group() if c.islower())
            part_upper += u
            lower += low
            if low == 0 and u >= 2:
                long_words += u >= 5
                gap = s[runs[-1][1] : m.start()] if runs else "x" * 9
                if len(gap) <= 12 and not any(c.islower() for c in gap):
                    runs[-1] = (runs[-1][0], m.end())
                else:
                    runs.append(m.span())
        upper += part_upper
        for a, b in runs:
            piece = _cut(s, a, b, 60)
            if len(piece) > len(best):
                best = piece
        if part_upper > loudest_count:
            loudest, loudest_count = _cut(s, 0, len(s), 60), part_upper
    letters = upper + lower
    if (letters >= 20 and upper * 2 >= letters) or long_words >= 2:
        return best or loudest
    return None


# --- HOMEWORK ------------------------------------------------------------------------------------------------

_DAY = r"(?:дом|завтра|понедельник|вторник|среду|четверг|пятницу|субботу|выходные|каникулы)"
_HOMEWORK_TASK = re.compile(
    r"(?<!\w)(?:"
    r"упр(?:ажнени[а-я]*)?\.?\s*(?:№\s*)?\d+"
    r"|стр(?:аниц[а-я]*)?\.?\s*\d+"
    r"|§\s*\d+"
    r"|параграф[а-я]*\s*(?:№\s*)?\d+"
    r"|(?:реш|выполн|сдела)[а-я]*\s+(?:(?:задач|пример|упр)[а-я]*\.?\s+)?(?:номер[а-я]*|№|задач[а-я]*|пример[а-я]*)"
    r"\s*\d+"
    r"|номер(?:а|ов)\s+\d+\s*(?:,|и)\s*\d+"
    r"|выучи(?:ть|те)\s+(?:стих|правил|параграф|наизусть|слов|таблиц|определени|формул|теорем|§|термин)"
    r"|прочита(?:ть|йте)\s+(?:стр|параграф|§|глав|рассказ|сказк|пов[её]ст|произведени|роман|стих)"
    r"|зада(?:ли|но|на|н|ны)\s+на\s+" + _DAY + r"(?!\w)"
    r"|к\s+следующему\s+уроку"
    r"|в\s+рабочей\s+тетради"
    r"|подготовить\s+(?:доклад|реферат|пересказ)"
    r")",
    re.IGNORECASE,
)
_HOMEWORK_MENTION = re.compile(
    r"(?<!\w)(?:домашн[а-яё]*\s+задани[а-яё]*|домашк[а-яё]*|д\s*/\s*з|д\.\s?з\.|дз)(?!\w)", re.IGNORECASE
)
_HOMEWORK_ELSEWHERE = re.compile(
    r"дневник|журнал|мо[ейя]\s+школ|элжур|(?<!\w)эж(?!\w)|(?<!\w)мэш(?!\w)|сетев[а-я]*\s+город|госуслуг"
    r"|не\s+зада|не\s+будет|отмен",
    re.IGNORECASE,
)


def _homework(title: str, text: str) -> str | None:
    """A concrete task anywhere; else a mention of homework in a sentence of the text that does not point to the
    journal, or in the title when neither the title nor the text does («Домашние задания» over «…смотрите в
    электронном дневнике»)."""
    for s in (title, text):
        task = _HOMEWORK_TASK.search(s)
        if task is not None:
            return _cut(s, *task.span())
    mention = _HOMEWORK_MENTION.search(title)
    if mention is not None and not _HOMEWORK_ELSEWHERE.search(title) and not _HOMEWORK_ELSEWHERE.search(text):
        return _cut(title, *mention.span())
    for a, b in _sentences(text):
        sentence = text[a:b]
        mention = _HOMEWORK_MENTION.search(sentence)
        if mention is not None and not _HOMEWORK_ELSEWHERE.search(sentence):
            return _cut(text, a + mention.start(), a + mention.end())
    return None


# --- first names (PERSONAL, GREETING_ONLY) -------------------------------------------------------------------

# Common names of schoolchildren and their everyday short forms. Names that are also ordinary words at the start
# of a sentence (Вера, Надежда, Любовь, Слава, Роза, Лилия) are left out.
_FIRST_NAMES = _words("""
Александр Саша Алексей Лёша Андрей Антон Артём Арсений Артур Богдан Борис Боря Вадим Валерий Василий Вася Виктор
Витя Владимир Вова Владислав Влад Всеволод Глеб Георгий Гоша Григорий Гриша Давид Даниил Данила Даня Демид Денис
Дима Дмитрий Евгений Женя Егор Елисей Захар Иван Ваня Игорь Илья Кирилл Константин Костя Лев Макар Максим Марк
Матвей Мирон Михаил Миша Назар Никита Николай Коля Олег Павел Паша Пётр Петя Платон Прохор Родион Роман Рома
Руслан Савелий Семён Сеня Сергей Серёжа Станислав Стас Степан Стёпа Тимофей Тима Тимур Тихон Фёдор Федя Филипп
Юрий Юра Ян Ярослав Адам Амир Эмиль Эрик Анатолий Толя
Анна Аня Анастасия Настя Алина Алиса Алёна Ангелина Арина Аделина Агата Амелия Валерия Лера Варвара Варя Василиса
Вероника Виктория Вика Дарья Даша Диана Ева Евгения Екатерина Катя Елена Лена Елизавета Лиза Есения Злата Зоя
Ирина Ира Кира Кристина Ксения Ксюша Майя Маргарита Рита Марина Мария Маша Милана Мила Мирослава Мирра Надя Наталья
Наташа Ника Олеся Ольга Оля Полина Поля Софья София Соня Стефания Таисия Тая Татьяна Таня Ульяна Уля Юлия Юля Яна
Ярослава Эвелина Светлана Света Галина Оксана Люба Лиля
""")
_IRREGULAR = _words("Льва Льву Львом Павла Павлу Павлом")


def _name_forms(names: Iterable[str]) -> frozenset[str]:
    """Nominative and the usual case forms (over-generated: a form no one writes costs nothing)."""
    forms: set[str] = set()
    for raw in names:
        name = _norm(raw)
        forms.add(name)
        if name.endswith(("а", "я")):
            forms.update(name[:-1] + e for e in ("ы", "и", "е", "у", "ю", "ой", "ей", "ою", "ею"))
        elif name.endswith(("й", "ь")):
            forms.update(name[:-1] + e for e in ("я", "ю", "ем", "е"))
        else:
            forms.update(name + e for e in ("а", "у", "ом", "е"))
    return frozenset(forms)


FIRST_NAME_FORMS = _name_forms(_FIRST_NAMES) | frozenset(_norm(n) for n in _IRREGULAR)


# --- GREETING_ONLY -------------------------------------------------------------------------------------------

GREETING_WORDS = _words(
    """
    праздник праздники праздничное
    доброе добрый доброго добрым утро утра утречко день дня денек вечер вечера здравствуйте здравствуй привет
    приветик приветствую приветствуем всем всех все всё вам вас вы тебя тебе уважаемые уважаемый уважаемая
    дорогие дорогой дорогая дорогих милые наши наших нашим ваши ваших вашим родители родителей коллеги коллег
    ребята ребят мамы мам мамочки мамочек папы пап бабушки дедушки учителя учителей педагоги девочки мальчики
    девушки женщины мужчины друзья
    с со праздником праздниками праздничком наступающим наступившим прошедшим новым годом год года рождеством
    днем рождения знаний учителя матери отца защитника защитников отечества победы весны весной марта февраля
    международным женским пасхой масленицей выпускным последним звонком окончанием учебного учебным началом
    четверти каникулами января февраля марта апреля мая июня июля августа сентября октября ноября декабря
    поздравляем поздравляю поздравление поздравления поздравляет поздравляют желаем желаю счастья здоровья
    успехов удачи радости любви тепла мира добра благополучия терпения сил вдохновения улыбок солнца весеннего
    хорошего отличного прекрасного замечательного чудесного праздничного настроения выходных отдыха
    и а от всей души душе сердца очень самого самых самые всего вам го
    спасибо спс благодарю благодарим большое огромное принято понятно понял поняла хорошо ок окей ok да ага
    ладно отлично супер ура молодцы браво
    объявление внимание информация важно сообщение
    hello hi thanks thank you good morning
    """
)


def _greeting_only(parts: tuple[str, str]) -> str | None:
    if not any(p.strip() for p in parts):
        return None
    for s in parts:
        for m in _WORD.finditer(s):
            word = _norm(m.group())
            if word not in GREETING_WORDS and word not in FIRST_NAME_FORMS:
                return None
    title, text = parts
    return _cut(text, 0, len(text), 60) if text.strip() else _cut(title, 0, len(title), 60)


# --- PERSONAL ------------------------------------------------------------------------------------------------

_MATTER = re.compile(
    r"(?<!\w)(?:"
    r"опозда[а-я]*|опаздыва[а-я]*|прогул[а-я]*|пропустил[а-я]*|двойк[а-я]*|двоек|неуд(?:ы|а|ов|ом)?(?!\w)"
    r"|оценк[а-я]*|поведени[а-я]*|замечани[а-я]*|долг(?:и|ов|ам|ами|а|у)?(?!\w)|задолженност[а-я]*"
    r"|не\s+(?:сда|сдела|выполн|прин[её]с|принесл|подготов|пришел|пришёл|пришла|явил|аттест|оплат)[а-я]*"
    r"|забыл[а-я]*|забыва[а-я]*|боле(?:ет|ют|л|ла|ли)(?!\w)|заболе[а-я]*|болезн[а-я]*|диагноз[а-я]*|справк[а-я]*"
    r"|отсутствовал[а-я]*|нарушени[а-я]*|нарушил[а-я]*|наруша[а-я]*|драк[а-я]*|подрал[а-я]*|хулига[а-я]*"
    r"|груб[а-я]*|оскорб[а-я]*|курил[а-я]*|курени[а-я]*|списал[а-я]*|списыва[а-я]*|украл[а-я]*|краж[а-я]*"
    r"|сломал[а-я]*|разбил[а-я]*|испортил[а-я]*|ударил[а-я]*|обидел[а-я]*|конфликт[а-я]*"
    r"|к\s+директору|на\s+уч[её]т[а-я]*|кдн(?!\w)|полици[а-я]*|инвалид[а-я]*|овз(?!\w)|аллерги[а-я]*"
    r"|неуспева[а-я]*|н/а(?!\w)|отчисл[а-я]*|педикул[а-я]*|вш(?:и|ей)(?!\w)"
    r")",
    re.IGNORECASE,
)
_YOUR_CHILD = re.compile(
    r"(?<!\w)ваш(?:его|ему|им|ем|а|ей|у)?\s+(?:сын[а-я]*|доч(?:ь|ер[а-я]*)|реб[её]н(?:ок|ка|ку|ком|ке))(?!\w)",
    re.IGNORECASE,
)
_GENERIC = re.compile(r"(?<!\w)(?:если|в\s+случае|когда|чтобы|ли)(?!\w)", re.IGNORECASE)
_SURNAME = re.compile(r"(?:(?:[оеё]в|[иы]н)(?:а|у|ым|ом|е|ой|ых)?|енко|[ую]к)$")
_SURNAME_WEAK = re.compile(r"(?:[сц]к(?:ий|ая|ого|ой|ому|ую|им|ом)|[иы]х)$")
_PATRONYMIC = re.compile(r"(?:ич(?:а|у|ем|е)?|(?:[оеё]вн|ичн)(?:а|ы|е|у|ой))$")
_INITIALS = re.compile(r"\s*[А-ЯЁ]\.\s?(?:[А-ЯЁ]\.)?")
_STAFF = re.compile(
    r"учител|руковод|рук$|^кл$|классн|директор|завуч|заместител|^зам$|педагог|психолог|логопед|дефектолог"
    r"|воспитател|вожат|советник|преподават|тренер|медсестр|медицинск|медработ|врач|фельдшер|библиотекар"
    r"|секретар|бухгалтер|организатор|председател|ответствен|куратор|инспектор|тьютор|сотрудник|специалист"
)
_PLACE_BEFORE = re.compile(
    r"(?<!\w)(?:ул|улиц[аеыу]|пр|просп|проспект[а-я]*|пер|переул[а-я]*|им|имени|г|город[а-я]*|пос|пос[её]л[а-я]*"
    r"|пл|площад[а-я]*|бульвар[а-я]*|б-р|музе[а-я]*|театр[а-я]*|лице[а-я]*|гимнази[а-я]*)\.?\s*$",
    re.IGNORECASE,
)
_QUOTES = "«\"„“'"


def _person_refs(sentence: str) -> list[tuple[int, int]]:
    """Spans of words in `sentence` that look like a child named by first name and/or surname."""
    words = [m for m in _WORD.finditer(sentence) if len(m.group()) > 1]
    refs: list[tuple[int, int]] = []

    def norm(i: int) -> str:
        return _norm(words[i].group()) if 0 <= i < len(words) else ""

    def first_name(i: int) -> bool:
        return 0 <= i < len(words) and _titlecase(words[i].group()) and norm(i) in FIRST_NAME_FORMS

    def initials(i: int) -> bool:
        return _INITIALS.match(sentence, words[i].end()) is not None

    def staff_before(i: int) -> bool:
        return any(_STAFF.search(norm(j)) for j in range(max(0, i - 3), i))

    def patronymic(i: int) -> bool:
        return 0 <= i < len(words) and _PATRONYMIC.search(norm(i)) is not None

    for i, m in enumerate(words):
        if not _titlecase(m.group()) or staff_before(i):
            continue
        if first_name(i):
            if not patronymic(i + 1):  # «Мария Ивановна» is an adult
                refs.append(m.span())
            continue
        key = norm(i)
        strong = len(key) >= 4 and _SURNAME.search(key) is not None
        weak = len(key) >= 4 and _SURNAME_WEAK.search(key) is not None
        if not (strong or weak) or patronymic(i):
            continue
        before = sentence[max(0, m.start() - 16) : m.start()]
        if _PLACE_BEFORE.search(before) or before.endswith(tuple(_QUOTES)):
            continue  # «ул. Гагарина», «лицей им. Пушкина», «ДК «Юбилейный»»
        if patronymic(i - 1) or (first_name(i + 1) and patronymic(i + 2)):
            continue  # «Мария Ивановна Петрова», «Петрова Мария Ивановна»
        if first_name(i - 1) or first_name(i + 1) or initials(i) or (strong and i > 0):
            refs.append(m.span())
    return refs


def _personal(s: str) -> tuple[int, int] | None:
    for a, b in _sentences(s):
        sentence = s[a:b]
        matters = [m.span() for m in _MATTER.finditer(sentence)]
        if not matters:
            continue
        refs = _person_refs(sentence)
        if not _GENERIC.search(sentence):
            refs += [m.span() for m in _YOUR_CHILD.finditer(sentence)]
        if not refs:
            continue
        ref = min(refs)
        matter = min(matters, key=lambda span: abs(span[0] - ref[0]))
        return a + min(ref[0], matter[0]), a + max(ref[1], matter[1])
    return None


# --- BANNED_LINK ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\S+")


def _banned_link(parts: Iterable[str]) -> str | None:
    for s in parts:
        for m in _TOKEN.finditer(s):
            if banned_links(m.group()):
                return _cut(s, *m.span()).strip("()[]<>«»\"',.;:!?")
    return None
