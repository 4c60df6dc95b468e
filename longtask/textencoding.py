"""Telling the text encoding of an uploaded file, and saying so when it cannot be told.

A file that is valid UTF-8 from its first byte to its last is UTF-8. A UTF-16 or UTF-32
byte-order mark, or UTF-16's pattern of zero bytes in a file without one, names a wide
encoding the store transcodes to UTF-8. Any other file was written in a legacy code page,
and which one cannot be read from the bytes: it is told from what each candidate makes of
the text. The candidates are the code pages spreadsheets write, Excel's "CSV" in each
locale's ANSI code page (:data:`CODE_PAGES`); charset-normalizer's guesses range over every
code page Python knows and, on a short file, often pick one no spreadsheet writes (a
three-line German cp1252 file read as the Baltic DOS cp775: ``Köln`` became ``K÷ln``).

How a reading is scored (:func:`_score`): only the lines holding a non-ASCII byte carry
evidence, so those are sampled (the first MiB of them). Each candidate that decodes the
whole sample without error gives a reading; candidates that read it identically are one
reading (German is the same text in cp1252 and cp1250). A reading holding a control,
unassigned or private-use character is no reading. Each reading is charged, in bits (a
point halves its odds), for what real text in one of its code page's languages would not
hold:

- :data:`SEVERE`: a word mixing scripts (``Kцln``), a symbol between two letters or a
  numeric sign inside a word (``K÷ln``, ``Wroc³aw``), a combining mark on a letter of
  another script (``Kِln``), a capital inside a word (``TÈlÈfono``, ``ódŸ``), a
  direction mark inside a Latin word;
- letters, in the page's language that fits them best (:func:`_language_charge`):
  :data:`FOREIGN` for a letter none of its languages writes, :data:`OUTSIDE` for one
  outside that language's alphabet, :data:`MILD` for one rare in it (:data:`RARE`) or
  where it never stands (:data:`_MISPLACED`: Italian accents only on final vowels); a
  second language costs :data:`SECOND_LANGUAGE` and a quarter point per letter only it
  explains (``Imiê`` and ``Gdañsk`` are French and Spanish, Polish read as cp1252);
- :data:`MILD`: a symbol stuck to a letter (not quotes, ``°``, ``m²``, ...) or between two
  digits, :data:`OUTSIDE` a capital letter standing alone (``12,50 Ђ``);
- CJK readings (:func:`_cjk_charge`): a Han character off its standard's common level
  (:data:`LEVEL_2`), kana or hangul where the language does not write them, the
  fingerprints of one encoding read as another (:data:`FINGERPRINT`), and
  charset-normalizer's mess ratio times the non-ASCII characters (:data:`MESS`).

Each code page also has a prior (:attr:`CodePage.prior`, bits below Windows-1252). The
reading of least ``charge + prior`` wins (ties: the order of :data:`CODE_PAGES`). Its
confidence is ``1 / (1 + sum(2 ** (cost - other's cost)))`` over the other readings (its
share of the odds), times ``n / (n + charge)`` with ``n`` its non-ASCII characters (a
winner that pays too, as text in a code page no candidate is would, is doubted in
proportion). A guess below :data:`CONFIDENCE_THRESHOLD` is refused
(:class:`EncodingUncertain`) with what the likeliest readings make of the text; the
uploader can then save the file as "CSV UTF-8" or name its encoding.
``bench/encoding_bench.py`` measures the rule on generated spreadsheets (no wrong reading
above the threshold in its 1,736 files; a fifth of the 100-byte ones refused).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from typing import Literal

from charset_normalizer.md import mess_ratio

from longtask.errors import FileUnreadable

CONFIDENCE_THRESHOLD = 0.9
"""A detected encoding below this confidence is refused (see the module docstring)."""
SAMPLE_BYTES = 1 << 20
"""Bytes of the lines holding non-ASCII bytes kept for detection: every candidate must
decode all of them."""
SCORE_CHARS = 16_384
"""Characters of each reading (from the start of the sample) that are scored."""
SAMPLE_LINES = 5
"""Decoded lines shown with a decision or a refusal."""
SAMPLE_LINE_CHARS = 80
_LINE_CAP = 1 << 16  # bytes of one line kept for the sample; the rest is not sampled

# Charges, in bits (see the module docstring); set by bench/encoding_bench.py's figures.
SEVERE = 3.0  # what no text of the page's languages holds
MILD = 1.0  # a rare letter, or one out of place; a symbol stuck to a letter
OUTSIDE = 2.0  # a letter outside the chosen language's alphabet
FOREIGN = 3.0  # a letter none of the page's languages writes
SECOND_LANGUAGE = 2.0  # a file in two of the page's languages
MESS = 1.0  # per non-ASCII character, times charset-normalizer's mess ratio (CJK)
LEVEL_2 = 1.0  # a Han character off its standard's first level
FINGERPRINT = 0.7  # per Han character: about log2(1 / 0.6), the chance a real text's
# character falls among those the fingerprint found none of

SAVE_AS_UTF8 = ("save it as 'CSV UTF-8' (in Excel: File > Save As > 'CSV UTF-8 (Comma "
                "delimited)') and upload it again")


@dataclass(frozen=True)
class CodePage:
    """A candidate encoding: Python ``codec`` name, the ``label`` users know, languages."""

    codec: str
    label: str
    languages: tuple[str, ...]
    prior: float


CODE_PAGES = (
    CodePage("cp1252", "Windows-1252 (Western European)",
             ("de", "fr", "es", "pt", "it", "nl", "sv", "da", "no", "fi", "ca", "sq"), 0.0),
    CodePage("cp1250", "Windows-1250 (Central European)",
             ("pl", "cs", "sk", "hu", "sl", "hr", "ro", "de", "sq"), 1.5),
    CodePage("cp1251", "Windows-1251 (Cyrillic)", ("ru", "uk", "be", "bg", "sr", "mk"), 1.5),
    CodePage("cp1254", "Windows-1254 (Turkish)", ("tr",), 2.0),
    CodePage("cp1256", "Windows-1256 (Arabic)", ("ar", "fa", "ur", "fr"), 2.0),
    CodePage("cp932", "Shift_JIS (Windows-31J, Japanese)", ("ja",), 2.0),
    CodePage("gb18030", "GB18030 (Chinese, GBK)", ("zh",), 2.0),
    CodePage("cp949", "Windows-949 (Korean, EUC-KR)", ("ko",), 2.5),
    CodePage("cp950", "Big5 (Windows-950, Traditional Chinese)", ("zh-hant",), 2.5),
    CodePage("mac_roman", "Mac OS Roman (Excel for Mac \"CSV\")",
             ("de", "fr", "es", "pt", "it", "nl", "sv", "da", "no", "fi", "ca", "sq"), 2.5),
    CodePage("cp1253", "Windows-1253 (Greek)", ("el",), 5.0),
    CodePage("cp1257", "Windows-1257 (Baltic)", ("et", "lv", "lt"), 5.0),
    CodePage("cp1255", "Windows-1255 (Hebrew)", ("he",), 5.0),
)
"""The code pages spreadsheets write, most used first: Excel saves "CSV" in the ANSI code
page of the system's locale (Windows "Language for non-Unicode programs")."""

_ALPHABETS_LOWER = {
    "de": "äöüß", "fr": "àâæçéèêëîïôœùûüÿ", "es": "áéíóúñü", "pt": "áâãàçéêíóôõú",
    "it": "àèéìíîòóùú", "nl": "áéèëïóöüíú", "sv": "åäöé", "da": "æøåé", "no": "æøåéòóô",
    "fi": "äöåšž", "ca": "àçèéíïòóúü", "sq": "çë",
    "pl": "ąćęłńóśźż", "cs": "áčďéěíňóřšťúůýž", "sk": "áäčďéíĺľňóôŕšťúýž",
    "hu": "áéíóöőúüű", "sl": "čšžćđ", "hr": "čćđšž", "ro": "ăâîşţșț",
    "tr": "çğıöşüâîû", "et": "äöõüšž", "lv": "āčēģīķļņšūž", "lt": "ąčęėįšųūž",
    "ru": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
    "uk": "абвгґдеєжзиіїйклмнопрстуфхцчшщьюя",
    "be": "абвгдеёжзійклмнопрстуўфхцчшыьэюя",
    "bg": "абвгдежзийклмнопрстуфхцчшщъьюя",
    "sr": "абвгдђежзијклљмнњопрстћуфхцчџш",
    "mk": "абвгдѓежзѕијклљмнњопрстќуфхцчџш",
    "el": "αβγδεζηθικλμνξοπρστυφχψωάέήίόύώϊϋΐΰς",
    "he": "אבגדהוזחטיכךלמםנןסעפףצץקרשת",
    "ar": "ءآأؤإئابةتثجحخدذرزسشصضطظعغفقكلمنهوىيـ",
    "fa": "ءآأؤئابتثجحخدذرزسشصضطظعغفقلمنهوپچژگکیة",
    "ur": "ءآأؤئابتثجحخدذرزسشصضطظعغفقلمنوپچژگکیٹڈڑںےہھة",
}


_RARE_LOWER = {
    "fr": "æÿù", "es": "ü", "pt": "à", "it": "íîóú", "nl": "áèíóú", "sv": "é", "da": "é",
    "no": "éóòô", "fi": "šžå", "cs": "óďť", "sk": "ŕĺä", "sl": "ćđ", "tr": "âîû",
    "ru": "ъ", "uk": "ґ", "sr": "ђџ", "mk": "ѓќѕ", "et": "šž",
}
"""Letters of each alphabet that are rare in the language's text: each costs half a mild
charge, so a reading that leans on them (Italian ``Città`` as cp1250 ``Cittŕ``, Slovak)
pays as the file grows."""


def label_of(codec: str) -> str:
    """What users call ``codec``: a candidate code page's label, else the codec's name."""
    name = codecs.lookup(codec).name
    for page in CODE_PAGES:
        if codecs.lookup(page.codec).name == name:
            return page.label
    return "UTF-8" if name == "utf-8" else name


_L = r"[^\W\d_]"  # a letter, to the regular expressions below
_MISPLACED = {
    "it": re.compile(r"[àèéìíòóùúÀÈÉÌÍÒÓÙÚ](?=" + _L + ")"),  # accents on final vowels only
    "fr": re.compile(r"[œŒ](?![uieUIE])"),  # œu, œil, œdème
    "es": re.compile(r"[ñÑ](?![aeiouáéíóúüAEIOUÁÉÍÓÚÜ])"),  # ñ before a vowel only
    "pt": re.compile(r"[õÕ](?![eE])|[ãÃ](?=" + _L + r")(?![oeisOEIS])"),  # -ões, -ão, -ães
    "de": re.compile(r"(?<!" + _L + r")ß"),  # no word begins with ß
    "pl": re.compile(r"(?<!" + _L + r")[ąęĄĘ]|[ńŃ](?=[aeiouyąęóAEIOUYĄĘÓ])"),
    "cs": re.compile(r"(?<!" + _L + r")[ůěŮĚ]"),  # no word begins with ů or ě
    "tr": re.compile(r"(?<!" + _L + r")[ğĞ]"),  # nor with ğ
    "el": re.compile(r"ς(?=" + _L + r")|σ(?!" + _L + ")"),  # final sigma at the end only
    "he": re.compile(r"[ךםןףץ](?=[\u05d0-\u05ea])"),  # final forms at the end only
}
"""Letters a language writes only in some places: each one found elsewhere counts as a
letter outside that language's alphabet (``Zdeněk`` read as cp1252 is ``Zdenìk``, and
Italian puts its accents on final vowels only)."""


def _both_cases(letters: str) -> frozenset[str]:
    upper = {c.upper() for c in letters if len(c.upper()) == 1}
    return frozenset(letters) | frozenset(upper)


ALPHABETS = {lang: _both_cases(s) for lang, s in _ALPHABETS_LOWER.items()}
RARE = {lang: _both_cases(s) for lang, s in _RARE_LOWER.items()}
ALPHABETS["tr"] |= {"İ"}
ALPHABETS["de"] |= {"ẞ"}

_CJK_FAMILY = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HALFWIDTH", "FULLWIDTH",
                         "IDEOGRAPHIC", "HANGUL"})
_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARABIC", "HEBREW"}) | _CJK_FAMILY
# Symbols a word may begin or end with: quotes, ordinals, degrees, trademarks, squares.
_OK_BEFORE = frozenset("«„“”‚‘’¿¡•·–—(")
_OK_AFTER = frozenset("»“”’‘…™®©°•·–—)%‰")
_OK_AFTER_M = frozenset("²³")  # m², cm³
_OK_BETWEEN = frozenset("’‘‐‑–—´`ʼ")
_OK_BETWEEN_DIGITS = frozenset("×·–—½¼¾")


@dataclass(frozen=True)
class _Char:
    """What the scoring needs to know about one non-ASCII character."""

    kind: str  # letter, mark, symbol, space, bad
    script: str  # LATIN, CYRILLIC, ..., CJK for the CJK family, "" for symbols
    upper: bool
    lower: bool


@lru_cache(maxsize=65_536)
def _char(c: str) -> _Char:
    category = unicodedata.category(c)
    if category in ("Cc", "Cn", "Co", "Cs") and c not in "\t\r\n":
        return _Char("bad", "", False, False)
    name = unicodedata.name(c, "")
    word = name.split(" ", 1)[0]
    script = "CJK" if word in _CJK_FAMILY else word if word in _SCRIPTS else ""
    if category.startswith("L") and script:
        return _Char("letter", script, category == "Lu", category == "Ll")
    if category.startswith("M"):
        return _Char("mark", script, False, False)
    if category.startswith("Z") or category == "Cf":
        return _Char("space", "", False, False)
    return _Char("symbol", script if script in _CJK_FAMILY or script == "CJK" else "",
                 False, False)


_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_LETTER_RUN = re.compile(r"[^\W\d_]+")


@dataclass
class _Charges:
    """What a reading is charged whatever its language, and its letters, counted for the
    language's charge."""

    severe: float = 0.0
    mild: float = 0.0
    letters: Counter[str] = field(default_factory=Counter)


def _latin(c: str) -> bool:
    return c.isalpha() and (c.isascii() or _char(c).script == "LATIN")


def _is_letter(c: str) -> bool:
    return c.isalpha() and (c.isascii() or _char(c).kind == "letter")


def _scan(text: str) -> tuple[_Charges, int] | None:
    """Charges that do not depend on the language: scripts, symbols, marks, case.

    Returns (charges, non-ASCII characters) or None for text no file holds.
    """
    charges = _Charges()
    count = 0
    size = len(text)
    for match in _NON_ASCII.finditer(text):
        count += 1
        at = match.start()
        c = text[at]
        info = _char(c)
        if info.kind == "bad":
            return None
        before = text[at - 1] if at else " "
        after = text[at + 1] if at + 1 < size else " "
        if info.kind == "letter":
            if info.script == "CJK":
                continue
            charges.letters[c] += 1
            if info.upper and (before.islower() or (before.isalpha() and after.islower())):
                charges.severe += SEVERE  # a capital inside a word: "TÈlÈfono", "CÛdigo"
            elif info.upper and not before.isalpha() and not after.isalpha():
                charges.mild += OUTSIDE  # a capital letter standing alone: "12,50 Ђ"
        elif info.kind == "mark":
            base = _char(before) if not before.isascii() else None
            base_script = base.script if base is not None else (
                "LATIN" if before.isalpha() else "")
            if base_script != info.script and not (info.script == "" and base_script):
                charges.severe += SEVERE
        elif info.kind == "space" and unicodedata.category(c) == "Cf":
            if _latin(before) and _latin(after):
                charges.severe += SEVERE  # a direction mark inside "Aç\u200eklama"
        elif info.kind == "symbol" and info.script != "CJK":
            left, right = _is_letter(before), _is_letter(after)
            if left and right:
                if c not in _OK_BETWEEN and not (c == "·" and before in "lL" and after in "lL"):
                    charges.severe += SEVERE  # "K÷ln"; Catalan writes "l·l"
            elif before.isdigit() and after.isdigit():
                if c not in _OK_BETWEEN_DIGITS:
                    charges.mild += MILD  # "3†128" (a no-break space is a space)
            elif (right and c not in _OK_BEFORE) or (
                    left and c not in _OK_AFTER and not (c in _OK_AFTER_M and before == "m")):
                charges.mild += MILD
    for word in _LETTER_RUN.findall(text):
        if word.isascii():
            continue
        scripts = Counter("LATIN" if ch.isascii() else _char(ch).script or "SYMBOL"
                          for ch in word)
        scripts.pop("SYMBOL", None)
        if len(scripts) > 1:
            main = scripts.most_common(1)[0][0]
            charges.severe += SEVERE * sum(n for s, n in scripts.items() if s != main)
        # Superscripts and other numeric signs are word characters to the regex: one
        # inside a word ("D¹browski") is a letter gone wrong.
        for inner in word[1:-1]:
            if not inner.isascii() and _char(inner).kind == "symbol":
                charges.severe += SEVERE
    return charges, count


def _language_charge(letters: Counter[str], languages: Iterable[str],
                     misplaced: dict[str, int]) -> float:
    """What a reading's letters cost in the language of its code page that fits them best.

    A letter no language of the page writes costs :data:`FOREIGN`; one outside the chosen
    language's alphabet :data:`MILD`, a rare one half that. A second language costs
    :data:`SECOND_LANGUAGE`, and a tenth of :data:`MILD` for each letter only it explains.
    """
    langs = [lang for lang in languages if lang in ALPHABETS]
    if not letters:
        return 0.0
    union = frozenset().union(*(ALPHABETS[lang] for lang in langs))
    foreign = sum(n for c, n in letters.items() if c not in union)
    letters = Counter({c: n for c, n in letters.items() if c in union})
    if not letters:
        return FOREIGN * foreign

    def cost(lang: str, exclude: frozenset[str] = frozenset()) -> float:
        alphabet, rare = ALPHABETS[lang], RARE.get(lang, frozenset())
        total = MILD * misplaced.get(lang, 0)
        for c, n in letters.items():
            if c in exclude:
                continue
            total += n * (OUTSIDE if c not in alphabet else MILD if c in rare else 0.0)
        return total

    best = min(cost(lang) for lang in langs)
    for one, two in combinations(langs, 2):
        if best <= SECOND_LANGUAGE:
            break
        for first, second in ((one, two), (two, one)):
            explained = ALPHABETS[first]
            extra = sum(n for c, n in letters.items()
                        if c not in explained and c in ALPHABETS[second])
            charge = (SECOND_LANGUAGE + extra * MILD / 4 + cost(first, ALPHABETS[second])
                      + cost(second, explained | (frozenset(letters) - ALPHABETS[second])))
            best = min(best, charge)
    return FOREIGN * foreign + best


def _cjk_charge(text: str, codec: str) -> float:
    """What a CJK reading holds that its language's text seldom does.

    Han characters outside their standard's first (common) level (GB2312, Big5, JIS X 0208
    level 2: :data:`LEVEL_2`) or outside the standard (:data:`MILD`); kana or hangul in
    Chinese, hanja, kana or hangul outside KS X 1001 in Korean, hangul in Japanese. And
    the fingerprint of one encoding read as another: Korean hangul read as GB18030 are
    hanzi of GB2312 rows B0-C8 only, GB2312 text read as Big5 never shows the common
    characters of Big5 rows A4-AF; each Han character then costs :data:`FINGERPRINT`.
    """
    charge = 0.0
    han = telling = 0  # Han characters, and those an encoding's own text shows
    for c in set(_NON_ASCII.findall(text)):
        if _char(c).script != "CJK":
            continue
        n = text.count(c)
        name = unicodedata.name(c, "")
        unified = name.startswith("CJK UNIFIED")
        kana = name.startswith(("HIRAGANA", "KATAKANA", "HALFWIDTH KATAKANA"))
        hangul = name.startswith("HANGUL")
        if codec == "cp949":
            if unified or kana:
                charge += MILD * n
            elif hangul and len(_encoded(c, "euc_kr") or b"") != 2:
                charge += MILD * n  # not among KS X 1001's 2,350 syllables
            continue
        if (kana and codec != "cp932") or hangul:
            charge += MILD * n
            continue
        if not unified:
            continue
        han += n
        standard = {"gb18030": "gb2312", "cp950": "big5", "cp932": "shift_jis"}[codec]
        raw = _encoded(c, standard)
        if raw is None:
            charge += MILD * n  # an extension's character (GBK, NEC and IBM, ...)
            continue
        if codec == "gb18030":
            charge += LEVEL_2 * n if raw[0] >= 0xD8 else 0.0
            telling += n if raw[0] >= 0xC9 else 0
        elif codec == "cp950":
            charge += LEVEL_2 * n if raw[0] >= 0xC9 else 0.0
            telling += n if raw[0] <= 0xAF else 0
        elif (raw[0], raw[1]) >= (0x98, 0x9F):  # JIS X 0208 level 2
            charge += LEVEL_2 * n
    if codec in ("gb18030", "cp950") and han >= 8 and not telling:
        charge += FINGERPRINT * han
    if codec == "cp932":
        # Half-width katakana run on their own; next to kanji or kana they are bytes of
        # another encoding cut into single bytes.
        charge += MILD * len(_HALFWIDTH_BESIDE_WIDE.findall(text))
    return charge


def _encoded(c: str, codec: str) -> bytes | None:
    try:
        return c.encode(codec)
    except UnicodeEncodeError:
        return None


_HALFWIDTH_BESIDE_WIDE = re.compile(
    r"[\uff61-\uff9f](?=[\u3040-\u30ff\u4e00-\u9fff])|(?<=[\u3040-\u30ff\u4e00-\u9fff])"
    r"[\uff61-\uff9f]")


_CJK_PAGES = frozenset({"cp932", "gb18030", "cp949", "cp950"})


@dataclass(frozen=True)
class Reading:
    """What one code page makes of the file: ``charge`` (see the module), ``samples``."""

    codec: str
    label: str
    charge: float
    prior: float
    non_ascii: int
    samples: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """The shape the API shows: encoding, label, samples."""
        return {"encoding": self.codec, "label": self.label, "samples": list(self.samples)}


def _score(text: str, page: CodePage) -> float | None:
    scanned = _scan(text)
    if scanned is None:
        return None
    charges, count = scanned
    misplaced = {lang: len(_MISPLACED[lang].findall(text))
                 for lang in page.languages if lang in _MISPLACED}
    charge = (charges.severe + charges.mild
              + _language_charge(charges.letters, page.languages, misplaced))
    if page.codec in _CJK_PAGES:
        charge += _cjk_charge(text, page.codec)
    if count and page.codec in _CJK_PAGES:
        charge += MESS * mess_ratio(text, maximum_threshold=1.0) * count
    return charge


def _sample_lines(text: str) -> tuple[str, ...]:
    lines = [line.strip() for line in text.split("\n") if not line.isascii()]
    return tuple(line if len(line) <= SAMPLE_LINE_CHARS
                 else line[: SAMPLE_LINE_CHARS - 1] + "…" for line in lines[:SAMPLE_LINES])


def decoded_lines(head: bytes, encoding: str) -> list[str]:
    """Up to :data:`SAMPLE_LINES` lines of ``head`` (a file's first bytes) that hold
    non-ASCII characters, decoded (undecodable bytes shown as U+FFFD) and cut to
    :data:`SAMPLE_LINE_CHARS` characters: what a user checks an encoding by."""
    return list(_sample_lines(head.decode(encoding, errors="replace").replace("\r", "\n")))


@dataclass(frozen=True)
class Detection:
    """The reading chosen from a sample, its ``confidence`` (0 to 1) and the others."""

    best: Reading
    confidence: float
    others: tuple[Reading, ...]


_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x19\x1b-\x1f]")


def detect(sample: bytes) -> Detection | None:
    """Score every candidate code page on ``sample`` (lines holding non-ASCII bytes).

    None when no candidate decodes it into text a file holds (binary data, say: a
    control byte other than tab, line ends, form feed and the old end-of-file mark).
    """
    if _CONTROL.search(sample):
        return None
    # Bytes enough for SCORE_CHARS characters in a double-byte page, cut at a line end
    # (a character boundary in every candidate).
    cut = sample[:SCORE_CHARS * 2]
    cut = cut[: cut.rfind(b"\n") + 1] or cut
    readings: dict[str, Reading] = {}
    for page in CODE_PAGES:
        try:
            sample.decode(page.codec)
            text = cut.decode(page.codec)
        except UnicodeDecodeError:
            continue
        if text in readings:
            continue
        charge = _score(text[:SCORE_CHARS], page)
        if charge is None:
            continue
        readings[text] = Reading(page.codec, page.label, charge, page.prior,
                                 len(_NON_ASCII.findall(text[:SCORE_CHARS])),
                                 _sample_lines(text))
    if not readings:
        return None
    ranked = sorted(readings.values(), key=lambda r: r.charge + r.prior)  # stable
    best = ranked[0]
    cost = best.charge + best.prior
    evidence = 1.0 / (1.0 + sum(2.0 ** (cost - r.charge - r.prior) for r in ranked[1:]))
    n = max(best.non_ascii, 1)
    confidence = evidence * n / (n + best.charge)
    return Detection(best, round(confidence, 4), tuple(ranked[1:]))


class EncodingUncertain(FileUnreadable):
    """The file's encoding cannot be told for sure; ``readings`` are the likeliest ones."""

    def __init__(self, message: str, readings: Iterable[Reading] = ()) -> None:
        super().__init__(message)
        self.readings = tuple(readings)


@dataclass(frozen=True)
class EncodingDecision:
    """How the stored bytes are to be decoded.

    ``encoding`` is the codec of the stored bytes; ``source`` says how it was found
    (``utf-8``: every byte checked; ``byte-order-mark``; ``utf-16-pattern``: zero bytes
    of UTF-16 without a mark; ``detected``; ``named``: given by the uploader);
    ``confidence`` is 1 but for ``detected``; ``source_encoding`` the bytes as uploaded.
    """

    encoding: str
    source: EncodingSource
    confidence: float
    source_encoding: str
    label: str = ""


EncodingSource = Literal["utf-8", "byte-order-mark", "utf-16-pattern", "detected", "named"]
"""How an encoding was found: every byte checked as UTF-8; a UTF-16/32 byte-order mark;
UTF-16's zero bytes without one; detected; named by the uploader."""


@dataclass(frozen=True)
class EncodingFacts:
    """How a stored file's encoding was found (an :class:`EncodingDecision`'s ``source``)
    and how sure the store is: 1 when checked, the detection's confidence, None when the
    uploader named it (or the file was stored before confidences were kept)."""

    source: EncodingSource
    confidence: float | None


_DETECTED = re.compile(r"\(detected, confidence ([0-9.]+)\)$")


def facts_of(source_encoding: str) -> EncodingFacts:
    """Read back what :class:`EncodingDecision` wrote into ``source_encoding``."""
    if (match := _DETECTED.search(source_encoding)) is not None:
        return EncodingFacts("detected", float(match.group(1)))
    if "(named" in source_encoding:
        return EncodingFacts("named", None)
    if "(no byte-order mark" in source_encoding:
        return EncodingFacts("utf-16-pattern", 1.0)
    if "(stored as utf-8)" in source_encoding:
        return EncodingFacts("byte-order-mark", 1.0)
    if source_encoding in ("utf-8", "utf-8-sig"):
        return EncodingFacts("utf-8", 1.0)
    return EncodingFacts("detected", None)


WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _wide_codec(name: str) -> bool:
    return codecs.lookup(name).name.startswith(("utf-16", "utf-32"))


_ASCII_PROBE = bytes(range(128)) + b"\\n\\x41\\u0041+AGE-~{\x1b$B"
"""Every ASCII byte, and the escapes of encodings that give ASCII bytes other meanings
(``unicode_escape``'s backslashes, UTF-7's ``+...-``, HZ's ``~{``, ISO-2022's ``ESC $ B``)."""


def check_named(name: str) -> str:
    """The codec name of an encoding an uploader named; :class:`FileUnreadable` for one
    this store cannot keep (unknown, not a text encoding, or one whose ASCII bytes do not
    mean ASCII: its lines and commas could not be found)."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise FileUnreadable(f"unknown encoding {name!r} (use a name such as 'cp1252', "
                             "'cp1250', 'cp1251', 'shift_jis' or 'gb18030')")
    codec = info.name
    if _wide_codec(codec):
        return codec
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unicode_escape warns of unknown escapes
            ascii_ok = _ASCII_PROBE.decode(codec) == _ASCII_PROBE.decode("ascii")
    except (UnicodeError, ValueError):
        ascii_ok = False
    if not ascii_ok:
        raise FileUnreadable(f"encoding {name!r} cannot be stored: its ASCII bytes do not "
                             "mean ASCII, so its lines and commas cannot be found; "
                             + SAVE_AS_UTF8)
    return codec


class EncodingSniffer:
    """Finds a file's encoding as it streams into the store, in bounded memory.

    Call :meth:`start` with the file's first :attr:`HEAD_BYTES` (or all of it, if
    shorter): it returns the wide encoding to transcode from, or None; then :meth:`feed`
    every stored block (the transcoded ones for a wide encoding) and :meth:`finish`.
    ``named`` is an encoding the uploader gave (checked with :func:`check_named`).
    Raises :class:`FileUnreadable` (:class:`EncodingUncertain` for a guess below
    :data:`CONFIDENCE_THRESHOLD`) naming ``filename`` and, where bytes are at fault,
    their offset and line.
    """

    HEAD_BYTES = 4096

    def __init__(self, filename: str = "file", named: str | None = None) -> None:
        self.filename = filename
        self.named = check_named(named) if named else None
        self._wide: str | None = None
        self._wide_source: EncodingSource = "byte-order-mark"
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._utf8_error: tuple[int, int] | None = None  # (offset, line) of the first bad byte
        self._named = (codecs.getincrementaldecoder(self.named)(errors="strict")
                       if self.named and not _wide_codec(self.named) else None)
        self._offset = 0
        self._lines = 1
        self._carry = b""
        self._skipping = False
        self._sample = bytearray()
        self._utf8_lines = 0
        self._other_lines = 0  # sampled lines that are not UTF-8
        self._non_ascii = False

    def start(self, head: bytes) -> str | None:
        """The wide encoding (``utf-16``, ``utf-16-le``, ...) to transcode from, or None."""
        for bom, name in WIDE_BOMS:
            if head.startswith(bom):
                if self.named and not _wide_codec(self.named):
                    raise FileUnreadable(
                        f"{self.filename} starts with a {name.upper()} byte-order mark, so it "
                        f"is not {self.named}; upload it without naming an encoding")
                self._wide, self._wide_source = name, "byte-order-mark"
                return name
        if self.named and _wide_codec(self.named):
            self._wide, self._wide_source = self.named, "named"
            return self.named
        if self.named is None:
            pattern = _utf16_pattern(head)
            if pattern is not None:
                self._wide, self._wide_source = pattern, "utf-16-pattern"
                return pattern
        return None

    def feed(self, block: bytes) -> None:
        """Look at the next stored block (bytes as stored, in order)."""
        if self._wide is not None:
            return
        if self._utf8_error is None:
            try:
                self._utf8.decode(block)
            except UnicodeDecodeError as exc:
                self._utf8_error = self._where(block, exc.start)
        if self._named is not None:
            try:
                self._named.decode(block)
            except UnicodeDecodeError as exc:
                offset, line = self._where(block, exc.start)
                raise FileUnreadable(
                    f"{self.filename}, line {line} (byte {offset}): the bytes are not valid "
                    f"{self.named}; check the encoding named, or " + SAVE_AS_UTF8) from None
        if not block.isascii():
            self._non_ascii = True
            if len(self._sample) < SAMPLE_BYTES:
                self._collect(block)
        elif self._carry or self._skipping:
            self._collect(block)
        self._lines += block.count(b"\n")
        self._offset += len(block)

    def _where(self, block: bytes, at: int) -> tuple[int, int]:
        return self._offset + at, self._lines + block.count(b"\n", 0, at)

    def _collect(self, block: bytes) -> None:
        """Add the lines of ``block`` that hold non-ASCII bytes to the sample."""
        data = self._carry + block if self._carry else block
        start = 0
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                self._carry = b""
                return
            self._skipping = False
            start = end + 1
        cut = max(data.rfind(b"\n") + 1, start)
        for match in _NON_ASCII_LINE.finditer(data, start, cut):
            if len(self._sample) >= SAMPLE_BYTES:
                break
            self._keep(match.group())
        self._carry = data[cut:]
        if len(self._carry) > _LINE_CAP:
            # A line this long is sampled up to a byte that ends a character in every
            # candidate (a space, comma, semicolon, tab or quote), the rest skipped.
            head = self._carry[:_LINE_CAP]
            safe = max(head.rfind(b) for b in (b" ", b",", b";", b"\t", b'"'))
            if safe > 0 and not head[:safe].isascii():
                self._keep(head[:safe] + b"\n")
            self._carry, self._skipping = b"", True

    def _keep(self, piece: bytes) -> None:
        self._sample += piece if piece.endswith(b"\n") else piece + b"\n"
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            self._other_lines += 1
        else:
            self._utf8_lines += 1

    def finish(self) -> EncodingDecision:
        """The decision, once every block was fed."""
        if self._wide is not None:
            how = {"byte-order-mark": "", "utf-16-pattern": "no byte-order mark, ",
                   "named": "named, "}[self._wide_source]
            return EncodingDecision("utf-8", self._wide_source, 1.0,
                                    f"{self._wide} ({how}stored as utf-8)")
        if self._utf8_error is None:
            try:
                self._utf8.decode(b"", final=True)
            except UnicodeDecodeError:
                self._utf8_error = (self._offset, self._lines)
        if self._carry:
            self._collect(b"\n")
        utf8 = self._utf8_error is None
        if self.named is not None:
            if utf8 and self._non_ascii and codecs.lookup(self.named).name != "utf-8":
                raise FileUnreadable(
                    f"{self.filename} is valid UTF-8 holding non-ASCII text, so it is not "
                    f"{self.named}: upload it without naming an encoding")
            return EncodingDecision(self.named, "named", 1.0, f"{self.named} (named)")
        if utf8:
            return EncodingDecision("utf-8", "utf-8", 1.0, "utf-8")
        return self._detect()

    def _detect(self) -> EncodingDecision:
        assert self._utf8_error is not None
        offset, line = self._utf8_error
        found = detect(bytes(self._sample))
        if found is not None and found.confidence >= CONFIDENCE_THRESHOLD:
            pass  # lines that happen to be valid UTF-8 (GBK's 女 is) are that reading's too
        elif self._utf8_lines >= 2 and self._other_lines:
            raise EncodingUncertain(
                f"{self.filename} mixes encodings: {self._utf8_lines} lines are UTF-8 but "
                f"line {line} (byte {offset}) is not; " + SAVE_AS_UTF8,
                () if found is None else (found.best, *found.others[:2]))
        elif found is None:
            raise EncodingUncertain(
                f"cannot tell the text encoding of {self.filename}: line {line} (byte "
                f"{offset}) is not UTF-8 and no code page a spreadsheet writes reads it as "
                "text; " + SAVE_AS_UTF8)
        else:
            readings = (found.best, *found.others[:2])
            shown = "; ".join(f"as {r.codec} it reads {r.samples[0]!r}" for r in readings
                              if r.samples)
            raise EncodingUncertain(
                f"cannot tell the text encoding of {self.filename} for sure (it is not UTF-8 "
                f"from line {line}; the likeliest reading, {found.best.codec}, has confidence "
                f"{found.confidence:.2f}, below {CONFIDENCE_THRESHOLD}): {shown}. "
                + SAVE_AS_UTF8[0].upper() + SAVE_AS_UTF8[1:]
                + ", or name the encoding (encoding=cp1252, say)", readings)
        best = found.best
        return EncodingDecision(best.codec, "detected", found.confidence,
                                f"{best.codec} (detected, confidence {found.confidence:.2f})",
                                best.label)


_NON_ASCII_LINE = re.compile(rb"[^\n]*[\x80-\xff][^\n]*\n?")


def _utf16_pattern(head: bytes) -> str | None:
    """``utf-16-le``/``-be`` for a file without a byte-order mark whose zero bytes fall on
    one side of each pair, as ASCII-heavy UTF-16 text's do; else None."""
    size = len(head) // 2 * 2
    if size < 8:
        return None
    even, odd = head[0:size:2], head[1:size:2]
    half = size // 2
    if odd.count(0) >= half * 0.3 and even.count(0) <= half * 0.02:
        name = "utf-16-le"
    elif even.count(0) >= half * 0.3 and odd.count(0) <= half * 0.02:
        name = "utf-16-be"
    else:
        return None
    try:
        head[:size].decode(name)
    except UnicodeDecodeError:
        return None
    return name
