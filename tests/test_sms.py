"""SMS counting (content/sms.py) and its twin in the editor (content/static/content/sms-counter.js)."""

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st

from content.sms import (
    GSM7_BASIC_TABLE,
    GSM7_EXTENSION_TABLE,
    SMS_PART_WARNING,
    SmsInfo,
    sms_encoding,
    sms_info,
    sms_length,
    sms_parts,
    sms_warning,
)

SMS_COUNTER_JS = Path(__file__).resolve().parent.parent / "content" / "static" / "content" / "sms-counter.js"

EXTENSION = "^{}\\[~]|€\f"
EMOJI = "😀"  # U+1F600, outside the BMP: a surrogate pair in UTF-16
# What word processors put in a text, none of them in GSM-7; named because they look like ' " -
LSQUO, RSQUO = "\N{LEFT SINGLE QUOTATION MARK}", "\N{RIGHT SINGLE QUOTATION MARK}"
LDQUO, RDQUO = "\N{LEFT DOUBLE QUOTATION MARK}", "\N{RIGHT DOUBLE QUOTATION MARK}"
EN_DASH, ELLIPSIS = "\N{EN DASH}", "\N{HORIZONTAL ELLIPSIS}"
TYPOGRAPHIC = [LSQUO, RSQUO, LDQUO, RDQUO, EN_DASH, ELLIPSIS]
WORD_PROCESSED = f"{LSQUO}Ideeën{RSQUO} {EN_DASH} één {LDQUO}dag{RDQUO} ë{ELLIPSIS}"


@pytest.mark.parametrize(
    ("text", "encoding", "length", "parts"),
    [
        ("", "GSM-7", 0, 0),
        ("a", "GSM-7", 1, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        # Extension characters take two septets.
        ("€", "GSM-7", 2, 1),
        (EXTENSION, "GSM-7", 20, 1),
        ("a" * 80 + "€" * 40, "GSM-7", 160, 1),
        ("a" * 159 + "€", "GSM-7", 161, 2),
        # Escape + character straddling the 153 boundary move whole to the next part:
        # 152 + [€] | 2 + 151 | 1, so three parts where 306 / 153 would say two.
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),
        ("a" * 151 + "€" + "a" * 153, "GSM-7", 306, 2),
        # Dutch: é is in the default alphabet, ë is not.
        ("Café open tot tien", "GSM-7", 18, 1),
        ("Ideeën voor de zomer", "UCS-2", 20, 1),
        # UCS-2: 70 units in one part, then 67 per part.
        ("ë" * 70, "UCS-2", 70, 1),
        ("ë" * 71, "UCS-2", 71, 2),
        ("ë" * 134, "UCS-2", 134, 2),
        ("ë" * 135, "UCS-2", 135, 3),
        # Emoji: two UTF-16 units, never split: 66 + [😀] | 2 + 65 | 1.
        (EMOJI, "UCS-2", 2, 1),
        ("a" * 68 + EMOJI, "UCS-2", 70, 1),
        ("a" * 69 + EMOJI, "UCS-2", 71, 2),
        ("a" * 66 + EMOJI + "a" * 66, "UCS-2", 134, 3),
        ("a" * 65 + EMOJI + "a" * 67, "UCS-2", 134, 2),
        # In UCS-2 an extension character is one unit like any other.
        ("ë€", "UCS-2", 2, 1),
    ],
)
def test_encoding_length_and_parts(text, encoding, length, parts):
    assert sms_encoding(text) == encoding
    assert sms_length(text) == length
    assert sms_parts(text) == parts


@pytest.mark.parametrize(
    ("text", "per_part"),
    [("", 160), ("a" * 160, 160), ("a" * 161, 153), ("ë", 70), ("ë" * 71, 67)],
)
def test_per_part(text, per_part):
    assert sms_info(text).per_part == per_part


@pytest.mark.parametrize("character", list("éèüöñäÄÖÑÜàùìòÇÉÅåØøÆæß¡¿§£¥¤@$_ΔΩ\n\r"))
def test_characters_in_the_default_alphabet(character):
    assert sms_encoding("Hallo " + character) == "GSM-7"
    assert sms_length(character) == 1


@pytest.mark.parametrize("character", [*"ëïôáíóúç", *TYPOGRAPHIC, EMOJI, "\t", "\x1b"])
def test_characters_outside_gsm7_force_ucs2(character):
    info = sms_info("Hallo " + character)
    assert info.encoding == "UCS-2"
    assert info.non_gsm_characters == [character]


def test_non_gsm_characters_are_unique_and_in_order():
    info = sms_info(WORD_PROCESSED + " 😀ë")
    assert info == SmsInfo(
        encoding="UCS-2",
        length=27,  # 25 BMP characters + the emoji as a surrogate pair
        parts=1,
        per_part=70,
        non_gsm_characters=[LSQUO, "ë", RSQUO, EN_DASH, LDQUO, RDQUO, ELLIPSIS, EMOJI],
    )
    assert sms_info("Café {open} €5").non_gsm_characters == []


@pytest.mark.parametrize(
    ("text", "max_parts", "expected"),
    [
        ("", SMS_PART_WARNING, None),
        ("a" * 153 * 3, SMS_PART_WARNING, None),
        ("a" * (153 * 3 + 1), SMS_PART_WARNING, "This SMS takes 4 parts (each one is charged); keep it to 3 or fewer."),
        ("a" * 161, 1, "This SMS takes 2 parts (each one is charged); keep it to 1 or fewer."),
        ("ë" * (67 * 3 + 1), 3, "This SMS takes 4 parts (each one is charged); keep it to 3 or fewer."),
    ],
)
def test_warning_past_the_part_limit(text, max_parts, expected):
    with translation.override("en"):
        assert sms_warning(text, max_parts=max_parts) == expected


def test_warning_default_is_three_parts():
    assert SMS_PART_WARNING == 3
    assert sms_warning("a" * 153 * 3) is None
    assert sms_warning("a" * (153 * 3 + 1)) is not None


# Property tests ---------------------------------------------------------------------------------

GSM_CHARACTERS = [c for c in GSM7_BASIC_TABLE if c is not None] + list(GSM7_EXTENSION_TABLE)
gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARACTERS), max_size=400)
any_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(GSM_CHARACTERS),
        st.sampled_from(["ë", RSQUO, ELLIPSIS, EMOJI, "🇳"]),
        st.characters(),
    ),
    max_size=400,
)


@given(text=any_text, appended=st.one_of(st.sampled_from([*EXTENSION, "a", "ë", EMOJI]), st.characters()))
def test_parts_never_decrease_when_a_character_is_appended(text, appended):
    assert sms_parts(text + appended) >= sms_parts(text)


def gsm7_encode(text: str) -> list[int]:
    """Septet codes by position in the table, the extension ones behind the escape 0x1B."""
    septets = []
    for character in text:
        if character in GSM7_EXTENSION_TABLE:
            septets += [0x1B, GSM7_EXTENSION_TABLE[character]]
        else:
            septets.append(GSM7_BASIC_TABLE.index(character))
    return septets


def gsm7_decode(septets: list[int]) -> str:
    by_code = {code: character for character, code in GSM7_EXTENSION_TABLE.items()}
    decoded, escaped = [], False
    for septet in septets:
        if escaped:
            decoded.append(by_code[septet])
            escaped = False
        elif septet == 0x1B:
            escaped = True
        else:
            decoded.append(GSM7_BASIC_TABLE[septet])
    return "".join(decoded)


@given(text=gsm_text)
def test_gsm_length_is_the_septet_count_of_the_encoding(text):
    septets = gsm7_encode(text)
    assert all(0 <= septet < 128 for septet in septets)
    assert gsm7_decode(septets) == text
    assert sms_encoding(text) == "GSM-7"
    assert sms_length(text) == len(septets)


@pytest.mark.parametrize(
    ("character", "septets"),
    [
        ("@", [0x00]),
        ("£", [0x01]),
        ("é", [0x05]),
        ("Ç", [0x09]),
        ("\n", [0x0A]),
        ("Δ", [0x10]),
        ("É", [0x1F]),
        ("¤", [0x24]),
        ("¡", [0x40]),
        ("§", [0x5F]),
        ("¿", [0x60]),
        ("à", [0x7F]),
        ("\f", [0x1B, 0x0A]),
        ("^", [0x1B, 0x14]),
        ("{", [0x1B, 0x28]),
        ("}", [0x1B, 0x29]),
        ("\\", [0x1B, 0x2F]),
        ("[", [0x1B, 0x3C]),
        ("~", [0x1B, 0x3D]),
        ("]", [0x1B, 0x3E]),
        ("|", [0x1B, 0x40]),
        ("€", [0x1B, 0x65]),
    ],
)
def test_table_positions_follow_3gpp_ts_23_038(character, septets):
    assert len(GSM7_BASIC_TABLE) == 128
    assert gsm7_encode(character) == septets


# Python and JavaScript agree --------------------------------------------------------------------

NODE_SCRIPT = """
const {smsInfo} = require(process.argv[1]);
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  process.stdout.write(JSON.stringify(JSON.parse(input).map((text) => smsInfo(text))));
});
"""


def agreement_samples() -> list[str]:
    fixed = [
        "",
        "Hallo!",
        "a" * 160,
        "a" * 161,
        "a" * 306,
        "a" * 307,
        "a" * 152 + "€" + "a" * 152,
        "a" * 151 + "€" + "a" * 153,
        EXTENSION * 20,
        "Café open tot tien",
        "Ideeën voor de zomer",
        WORD_PROCESSED,
        "ë" * 70,
        "ë" * 71,
        "a" * 66 + EMOJI + "a" * 66,
        EMOJI * 40,
        "🇳🇱 Koningsdag 🎉",
        "Regel 1\r\nRegel 2\fpagina 2",
        "Çç ΔΩ ¡¿ §£¥¤ \t \x1b",
    ]
    rng = random.Random(2338)
    pool = [*GSM_CHARACTERS, "ë", RSQUO, ELLIPSIS, EMOJI, "€", "{"]
    generated = ["".join(rng.choices(pool, k=rng.randint(0, 400))) for _ in range(200)]
    generated += ["".join(rng.choices(GSM_CHARACTERS, k=rng.randint(140, 480))) for _ in range(200)]
    return fixed + generated


def test_javascript_counter_agrees_with_python():
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed to check content/static/content/sms-counter.js against content/sms.py")
    samples = agreement_samples()
    result = subprocess.run(
        [node, "-e", NODE_SCRIPT, str(SMS_COUNTER_JS)],
        input=json.dumps(samples),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=True,
    )
    from_js = json.loads(result.stdout)
    assert len(from_js) == len(samples)
    for text, js in zip(samples, from_js, strict=True):
        info = sms_info(text)
        expected = {
            "encoding": info.encoding,
            "length": info.length,
            "parts": info.parts,
            "perPart": info.per_part,
            "nonGsm": info.non_gsm_characters,
        }
        assert js == expected, f"JS and Python disagree on {text!r}"
