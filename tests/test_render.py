"""Rendering: languages, the sandbox, escaping, and the MIME bytes."""

from __future__ import annotations

import email
import email.policy
from datetime import date
from pathlib import Path

import pytest

from campaign.errors import LetterError, RenderError
from campaign.models import Contact, Recipient, Sender
from campaign.outbox import Target, render_one
from campaign.registry import load_letters, load_registry
from campaign.render import Renderer, build_message, markdown_to_text, md_escape, message_bytes
from tests.conftest import DATA, ROOT

TAJIK = "ғӣқӯҳҷ"
SENDER = Sender(name="Civic Platform", email="letters@campaign.example")


@pytest.fixture(scope="module")
def letters() -> dict:
    return load_letters(ROOT / "letters")


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return load_registry(DATA / "workspace" / "recipients.yaml")


def parse(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def body_text(msg: email.message.EmailMessage, subtype: str = "plain") -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content())


@pytest.mark.parametrize(("rid", "lang"), [("ohchr", "en"), ("mid", "ru"), ("tj-embassy", "tg")])
def test_letters_render_per_institution_language(letters: dict, registry, rid: str, lang: str) -> None:  # type: ignore[no-untyped-def]
    recipient = registry.get(rid)
    target = Target(recipient, recipient.contacts[0])
    raw, used, subject, warnings = render_one(
        Renderer(ROOT / "letters"),
        letters["peace-agreement"],
        target,
        SENDER,
        message_id="<abc@campaign.example>",
        lang=None,
        today=date(2026, 11, 28),
    )
    assert used == lang and not warnings
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert all(byte < 128 for byte in raw), "message bytes must be 7-bit"
    msg = parse(raw)
    assert msg["Content-Language"] == lang
    assert msg["Subject"] == subject
    assert msg["To"].addresses[0].addr_spec == recipient.contacts[0].email
    assert "Date" not in msg  # added at send time
    text = body_text(msg)
    if lang == "tg":
        for ch in TAJIK:
            assert ch in text, f"{ch} lost in the Tajik letter"
        assert all(ch in body_text(msg, "html") for ch in TAJIK)
    if lang == "ru":
        assert "Уважаемые дамы и господа!" in text


def test_salutation_from_registry_and_default(letters: dict, registry) -> None:  # type: ignore[no-untyped-def]
    renderer = Renderer(ROOT / "letters")
    ohchr = registry.get("ohchr")
    en = renderer.render(letters["peace-agreement"], ohchr, ohchr.contacts[0], SENDER)
    assert en.text.startswith("Dear High Commissioner,")
    ru = renderer.render(letters["peace-agreement"], ohchr, ohchr.contacts[0], SENDER, lang="ru")
    assert ru.text.startswith("Уважаемый Верховный комиссар!")
    default = renderer.render(letters["peace-agreement"], ohchr, ohchr.contacts[1], SENDER)
    assert default.text.startswith("Dear Sir or Madam,")


def test_language_fallback_to_english_with_warning(letters: dict) -> None:
    recipient = Recipient(
        id="bundestag", name="Bundestag", languages=["de"], contacts=[Contact(email="a@bundestag.example")]
    )
    rendered = Renderer(ROOT / "letters").render(letters["peace-agreement"], recipient, recipient.contacts[0], SENDER)
    assert rendered.lang == "en"
    assert "none of de" in rendered.warnings[0]


def make_letter(tmp_path: Path, body: str, subject: str = "Hello {{ recipient.name }}") -> tuple[Renderer, dict]:
    folder = tmp_path / "letters" / "t"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "en.md.j2").write_text(f'---\nsubject: "{subject}"\n---\n{body}')
    return Renderer(tmp_path / "letters"), load_letters(tmp_path / "letters")


RECIPIENT = Recipient(id="x", name="X", languages=["en"], contacts=[Contact(email="a@x.example")])


def test_no_english_and_no_shared_language_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "letters" / "t"
    folder.mkdir(parents=True)
    (folder / "ru.md.j2").write_text("---\nsubject: s\n---\nbody\n")
    renderer, letters = Renderer(tmp_path / "letters"), load_letters(tmp_path / "letters")
    with pytest.raises(RenderError, match="x: letter t exists in ru, none of which x reads"):
        renderer.render(letters["t"], RECIPIENT, RECIPIENT.contacts[0], SENDER)


def test_undefined_variable_names_template_line_and_institution(tmp_path: Path) -> None:
    renderer, letters = make_letter(tmp_path, "Line one\n\n{{ recipient.nmae }}\n")
    with pytest.raises(RenderError) as info:
        renderer.render(letters["t"], RECIPIENT, RECIPIENT.contacts[0], SENDER)
    assert info.value.message.startswith("letters/t/en.md.j2:6: undefined:")
    assert "nmae" in info.value.message and "for x" in info.value.message


def test_syntax_error_names_line(tmp_path: Path) -> None:
    renderer, letters = make_letter(tmp_path, "ok\n{% if %}\n")
    with pytest.raises(LetterError, match=r"letters/t/en.md.j2:5: template syntax error"):
        renderer.render(letters["t"], RECIPIENT, RECIPIENT.contacts[0], SENDER)


@pytest.mark.parametrize(
    "expr",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ recipient.__class__.__init__.__globals__ }}",
        "{{ lang.__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ recipient.model_config }}{{ ''.format.__globals__ }}",
    ],
)
def test_sandbox_blocks_python_internals(tmp_path: Path, expr: str) -> None:
    renderer, letters = make_letter(tmp_path, expr + "\n")
    with pytest.raises(RenderError):
        renderer.render(letters["t"], RECIPIENT, RECIPIENT.contacts[0], SENDER)


def test_registry_values_cannot_inject_markup(tmp_path: Path) -> None:
    evil = Recipient(
        id="x",
        name="[click](https://evil.example) <img src=x onerror=alert(1)> **bold** # heading",
        languages=["en"],
        contacts=[Contact(email="a@x.example")],
    )
    renderer, letters = make_letter(tmp_path, "To {{ recipient.name }}.\n\n{{ recipient.name }}\n", subject="s")
    rendered = renderer.render(letters["t"], evil, evil.contacts[0], SENDER)
    assert "<a " not in rendered.html and "<img" not in rendered.html and "<strong>" not in rendered.html
    assert "<h1>" not in rendered.html
    assert "&lt;img" in rendered.html
    assert "[click](https://evil.example) <img src=x onerror=alert(1)> **bold**" in rendered.text


def test_escape_roundtrip() -> None:
    for value in ["a*b_c", "1. not a list", "C:\\path\\", "x\\\ny", "# no heading", "Tom & Jerry <3"]:
        assert markdown_to_text(md_escape(value)) == value.replace("\\\n", "\n") or "\n" in value


def test_subject_on_two_lines_is_refused(tmp_path: Path) -> None:
    renderer, letters = make_letter(tmp_path, "body\n", subject="{{ recipient.postal_address }}")
    recipient = Recipient(
        id="x", name="X", languages=["en"], postal_address="a\nb", contacts=[Contact(email="a@x.example")]
    )
    with pytest.raises(RenderError, match="subject renders to more than one line"):
        renderer.render(letters["t"], recipient, recipient.contacts[0], SENDER)


def test_printing_none_is_an_error(tmp_path: Path) -> None:
    renderer, letters = make_letter(tmp_path, "{{ recipient.website }}\n")
    with pytest.raises(RenderError, match="empty \\(None\\)"):
        renderer.render(letters["t"], RECIPIENT, RECIPIENT.contacts[0], SENDER)


def test_header_injection_is_refused(tmp_path: Path) -> None:
    renderer, letters = make_letter(tmp_path, "body\n", subject="s")
    rendered = renderer.render(letters["t"], RECIPIENT, RECIPIENT.contacts[0], SENDER)
    with pytest.raises(RenderError, match="contains a line break"):
        build_message(
            rendered, sender=SENDER, to_name="A\r\nBcc: victim@x.example", to_address="a@x.example", message_id="<m@x>"
        )


def test_idn_and_utf8_addresses(tmp_path: Path) -> None:
    renderer, letters = make_letter(tmp_path, "Ҳурмат ғ ӣ қ ӯ ҳ ҷ\n", subject="Салом ҷаҳон")
    rendered = renderer.render(letters["t"], RECIPIENT, RECIPIENT.contacts[0], SENDER)
    raw = message_bytes(
        build_message(
            rendered, sender=SENDER, to_name="Бюро", to_address="info@bücher.example", message_id="<m@campaign.example>"
        )
    )
    assert b"xn--bcher-kva.example" in raw
    msg = parse(raw)
    assert msg["Subject"] == "Салом ҷаҳон"
    assert body_text(msg).strip() == "Ҳурмат ғ ӣ қ ӯ ҳ ҷ"
    utf8 = message_bytes(
        build_message(
            rendered, sender=SENDER, to_name="Бюро", to_address="почта@мид.example", message_id="<m@campaign.example>"
        )
    )
    assert "почта@мид.example".encode() in utf8


def test_decomposed_text_is_normalised(tmp_path: Path) -> None:
    decomposed = "и\u0304"  # и + combining macron: NFC is ӣ
    renderer, letters = make_letter(tmp_path, f"{decomposed}\n", subject="s")
    rendered = renderer.render(letters["t"], RECIPIENT, RECIPIENT.contacts[0], SENDER)
    assert "ӣ" in rendered.text and "\u0304" not in rendered.text


def test_date_is_formatted_per_language(tmp_path: Path) -> None:
    renderer, letters = make_letter(tmp_path, "{{ today }}\n", subject="s")
    folder = tmp_path / "letters" / "t"
    (folder / "ru.md.j2").write_text("---\nsubject: s\n---\n{{ today }}\n")
    letters = load_letters(tmp_path / "letters")
    ru = renderer.render(letters["t"], RECIPIENT, None, SENDER, lang="ru", today=date(2026, 11, 28))
    assert ru.text.strip().replace("\u202f", " ") == "28 ноября 2026 г."
    en = renderer.render(letters["t"], RECIPIENT, None, SENDER, lang="en", today=date(2026, 11, 28))
    assert en.text.strip() == "28 November 2026"


def test_one_renderer_converts_each_distinct_body_once_and_keeps_them_apart(tmp_path: Path) -> None:
    # Markdown is converted once per distinct text: a shared body costs once; a body of its
    # own (another salutation, another subject) is its own, warnings included.
    renderer, letters = make_letter(
        tmp_path, "{{ salutation }}\n\n![logo](https://tracker.example/p.gif)\n\n**{{ recipient.name }}**\n"
    )
    a = Recipient(id="a", name="Alpha", languages=["en"], contacts=[Contact(email="a@a.example")])
    b = Recipient(id="b", name="Beta", languages=["en"], contacts=[Contact(email="b@b.example", salutation="Hi B,")])
    first = renderer.render(letters["t"], a, a.contacts[0], SENDER)
    again = renderer.render(letters["t"], a, a.contacts[0], SENDER)
    other = renderer.render(letters["t"], b, b.contacts[0], SENDER)
    assert again == first and len(renderer._bodies) == 2
    assert "<strong>Beta</strong>" in other.html and "Alpha" not in other.html and "Hi B," in other.text
    assert "<strong>Alpha</strong>" in first.html and "Beta" not in first.text
    for rendered in (first, again, other):
        assert any("dropped" in w for w in rendered.warnings)
        assert "<title>Hello " in rendered.html and "tracker.example" not in rendered.html
