"""A case as the document a body asks for: Word (DOCX), HTML for the PDF stack, plain text
for e-mails, and a field-by-field sheet for web forms.

Contract:
- :func:`build_submission` turns a case, the body's profile and the day into a
  :class:`Submission`: titled sections of labelled rows (the person, the events, the
  detention, steps taken at home, grounds, the source, consent, attachments). Every
  element the profile requires appears, filled in or marked ``[missing: …]``; other
  fields appear when the case has them. Names are withheld when the body publishes
  submissions and consent does not allow the name.
- :func:`docx_bytes` writes A4 Word files in Times New Roman 12 pt with numbered pages.
  The bytes depend only on the submission (fixed zip times and document properties),
  so a queued submission keeps its identity when prepared again.
- :func:`html_fragment` is the same content for ``campaign.pdf`` (the signed PDF and the
  page estimate); :func:`sheet_text` and :func:`sheet_html` are the copy sheet.
- Every value is NFC-normalised; HTML is escaped. Nothing here prints or writes files.

This module is the only home of python-docx.
"""

from __future__ import annotations

import html
import io
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from campaign.cases import CaseFile, missing_elements
from campaign.models import CASE_ELEMENTS, Recipient, Sender, nfc
from campaign.render import country_name, format_date

# ---------------------------------------------------------------------------
# Words


LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Submission to the {body}",
        "form": "{form}",
        "concerning": "Concerning a case in {country}",
        "date": "Date",
        "from": "Submitted by",
        "person": "1. The person concerned",
        "names": "Name",
        "other_names": "Other names and spellings",
        "gender": "Gender",
        "date_of_birth": "Date of birth",
        "place_of_birth": "Place of birth",
        "nationality": "Nationality",
        "identity_document": "Identity document",
        "photo": "Photograph",
        "occupation": "Occupation",
        "address": "Address",
        "affiliation": "Affiliation",
        "event": "2. What happened",
        "type": "Kind of event",
        "event_date": "Date",
        "place": "Place (of arrest, abduction or last sighting)",
        "circumstances": "Circumstances",
        "perpetrators": "Persons or authorities believed responsible",
        "witnesses": "Witnesses",
        "state": "State concerned",
        "detention": "3. Detention",
        "authority": "Authority that ordered it",
        "legal_basis": "Legal basis invoked",
        "detention_place": "Place of detention",
        "charges": "Charges",
        "sentence": "Sentence",
        "conditions": "Conditions, access to a lawyer and family",
        "whereabouts": "Whereabouts",
        "remedies": "4. Steps taken at home (domestic remedies)",
        "remedy": "Step",
        "grounds_section": "5. Why this violates the person's rights",
        "grounds": "Grounds",
        "remedy_sought": "What the body is asked to do",
        "evidence": "Evidence",
        "source": "6. The source (confidential)",
        "source_name": "Name",
        "organisation": "Organisation",
        "relationship": "Relationship to the person",
        "source_address": "Postal address",
        "email": "E-mail",
        "phone": "Telephone",
        "confidential_source": "The source asks that its identity be kept confidential.",
        "consent": "7. Consent",
        "consent_line": "Consent given by the {who} on {date} for this submission.",
        "publish_yes": "The person's name may be published.",
        "publish_no": "The person's name must not be published.",
        "confidential": "Information to be kept confidential",
        "attachments": "8. Attachments",
        "authorisation": "Authorisation by the person concerned",
        "signature": "Signature",
        "signature_line": "Signed: ______________________________   Date: ______________",
        "missing": "[missing: {what}]",
        "withheld": "[name withheld: consent does not allow publication]",
        "victim": "person concerned",
        "relative": "person's relative",
        "representative": "person's representative",
        "page": "Page",
        "fictional": "FICTIONAL EXAMPLE: this person, these events and this organisation do not exist. "
        "Do not submit it.",
    },
    "ru": {
        "title": "Сообщение — {body}",
        "form": "{form}",
        "concerning": "О деле в государстве: {country}",
        "date": "Дата",
        "from": "Представлено",
        "person": "1. Лицо, о котором идёт речь",
        "names": "Имя",
        "other_names": "Другие имена и написания",
        "gender": "Пол",
        "date_of_birth": "Дата рождения",
        "place_of_birth": "Место рождения",
        "nationality": "Гражданство",
        "identity_document": "Документ, удостоверяющий личность",
        "photo": "Фотография",
        "occupation": "Род занятий",
        "address": "Адрес",
        "affiliation": "Принадлежность",
        "event": "2. Что произошло",
        "type": "Вид события",
        "event_date": "Дата",
        "place": "Место (задержания, похищения или где видели в последний раз)",
        "circumstances": "Обстоятельства",
        "perpetrators": "Предполагаемые ответственные лица или органы",
        "witnesses": "Свидетели",
        "state": "Государство",
        "detention": "3. Содержание под стражей",
        "authority": "Орган, принявший решение",
        "legal_basis": "Правовое основание",
        "detention_place": "Место содержания",
        "charges": "Обвинения",
        "sentence": "Приговор",
        "conditions": "Условия, доступ к адвокату и семье",
        "whereabouts": "Местонахождение",
        "remedies": "4. Внутренние средства защиты",
        "remedy": "Шаг",
        "grounds_section": "5. Почему это нарушает права",
        "grounds": "Основания",
        "remedy_sought": "О чём просят",
        "evidence": "Доказательства",
        "source": "6. Источник (конфиденциально)",
        "source_name": "Имя",
        "organisation": "Организация",
        "relationship": "Отношение к лицу",
        "source_address": "Почтовый адрес",
        "email": "Электронная почта",
        "phone": "Телефон",
        "confidential_source": "Источник просит сохранить его личность в тайне.",
        "consent": "7. Согласие",
        "consent_line": "Согласие дано ({who}) {date} для этого сообщения.",
        "publish_yes": "Имя лица может быть опубликовано.",
        "publish_no": "Имя лица не должно публиковаться.",
        "confidential": "Конфиденциальная информация",
        "attachments": "8. Приложения",
        "authorisation": "Доверенность лица, о котором идёт речь",
        "signature": "Подпись",
        "signature_line": "Подпись: ______________________________   Дата: ______________",
        "missing": "[не указано: {what}]",
        "withheld": "[имя не указано: согласие не разрешает публикацию]",
        "victim": "само лицо",
        "relative": "родственник",
        "representative": "представитель",
        "page": "Страница",
        "fictional": "ВЫМЫШЛЕННЫЙ ПРИМЕР: этого человека, этих событий и этой организации не существует. "
        "Не отправляйте его.",
    },
}


def words(lang: str) -> dict[str, str]:
    """The labels for a language (English where there are none)."""
    return LABELS.get(lang, LABELS["en"])


# ---------------------------------------------------------------------------
# The document model


@dataclass(frozen=True)
class Row:
    label: str
    value: str
    missing: bool = False


@dataclass(frozen=True)
class Section:
    heading: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # paragraphs after the rows


@dataclass(frozen=True)
class Submission:
    """One case prepared for one body."""

    case: str
    body: str
    lang: str
    title: str
    subtitle: str | None
    to: str
    date_text: str
    sender: str
    sections: list[Section]
    signature: bool
    withheld: bool
    missing: list[str]  # element names
    fictional: bool = False  # the example case: every format says so at the top

    def text_values(self) -> list[str]:
        return [row.value for section in self.sections for row in section.rows]


def _v(value: object) -> str | None:
    """A value as text; prose wrapped by hand in the case file is joined into paragraphs."""
    if value is None:
        return None
    text = nfc(str(value)).strip()
    return prose(text) or None


def prose(text: str) -> str:
    """Lines joined into paragraphs (a blank line separates paragraphs)."""
    paragraphs = [" ".join(line.strip() for line in block.splitlines()) for block in text.split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def _lines(value: object) -> str | None:
    """A value whose line breaks matter (a postal address)."""
    text = nfc(str(value)).strip() if value is not None else ""
    return text or None


def build_submission(
    cf: CaseFile, recipient: Recipient, *, lang: str, sender: Sender, today: date, withhold_name: bool = False
) -> Submission:
    """The submission of ``cf`` to ``recipient`` (which must have a profile), in ``lang``."""
    profile = recipient.submission
    assert profile is not None
    w = words(lang)
    case = cf.case
    required = {m.element: m for m in missing_elements(cf, profile)}
    missing = list(required)

    def placeholder(element: str) -> Row | None:
        if element in required:
            return Row(
                w.get(_ELEMENT_LABEL.get(element, element), element),
                w["missing"].format(what=CASE_ELEMENTS[element][1]),
                True,
            )
        return None

    sections: list[Section] = []

    # 1. The person
    person = case.person
    rows: list[Row] = []
    if withhold_name:
        rows.append(Row(w["names"], w["withheld"]))
    else:
        for key, name in person.names.items():
            if name:
                rows.append(Row(f"{w['names']} ({key})", nfc(name)))
        if person.other_names and any(person.other_names):
            rows.append(Row(w["other_names"], "; ".join(n for n in person.other_names if n)))
    if not rows and (ph := placeholder("name")):
        rows.append(ph)
    for key, value in (
        ("gender", person.gender),
        ("date_of_birth", person.date_of_birth),
        ("place_of_birth", person.place_of_birth),
        ("nationality", person.nationality),
        ("identity_document", None if withhold_name else person.identity_document),
        ("photo", person.photo),
        ("occupation", person.occupation),
        ("affiliation", person.affiliation),
    ):
        if _v(value):
            rows.append(Row(w[key], _v(value) or ""))
    if not withhold_name and _lines(person.address):
        rows.append(Row(w["address"], _lines(person.address) or ""))
    for element in ("identifying_data", "date_of_birth", "nationality"):
        if ph := placeholder(element):
            rows.append(ph)
    sections.append(Section(w["person"], rows))

    # 2. The events
    event = case.event
    rows = []
    if case.country:
        rows.append(Row(w["state"], f"{country_name(case.country, lang)} ({case.country})"))
    elif ph := placeholder("state"):
        rows.append(ph)
    event_rows: tuple[tuple[str, str | None, str | None], ...] = (
        ("type", event.type, None),
        ("event_date", event.date, "date"),
        ("place", event.place, "place"),
        ("circumstances", event.circumstances, "circumstances"),
        ("perpetrators", event.perpetrators, "perpetrators"),
        ("witnesses", event.witnesses, None),
    )
    for ev_label, ev_value, ev_element in event_rows:
        if _v(ev_value):
            rows.append(Row(w[ev_label], _v(ev_value) or ""))
        elif ev_element and (ph := placeholder(ev_element)):
            rows.append(ph)
    if _v(case.whereabouts):
        rows.append(Row(w["whereabouts"], _v(case.whereabouts) or ""))
    elif ph := placeholder("whereabouts"):
        rows.append(ph)
    sections.append(Section(w["event"], rows))

    # 3. Detention
    d = case.detention
    rows = [
        Row(w[label], _v(value) or "")
        for label, value in (
            ("authority", d.authority),
            ("legal_basis", d.legal_basis),
            ("detention_place", d.place),
            ("charges", d.charges),
            ("sentence", d.sentence),
            ("conditions", d.conditions),
        )
        if _v(value)
    ]
    if not d.authority and (ph := placeholder("detention")):
        rows.insert(0, ph)
    if rows:
        sections.append(Section(w["detention"], rows))

    # 4. Domestic remedies
    rows = []
    for remedy in case.remedies:
        parts = [p for p in (_v(remedy.date), _v(remedy.action), _v(remedy.result)) if p]
        if parts:
            rows.append(Row(f"{w['remedy']} {len(rows) + 1}", " — ".join(parts)))
    if not rows and (ph := placeholder("remedies")):
        rows.append(ph)
    if rows:
        sections.append(Section(w["remedies"], rows))

    # 5. Grounds, what is asked, evidence
    rows = []
    for label, value, element in (
        ("grounds", case.grounds, "grounds"),
        ("remedy_sought", case.remedy_sought, "remedy_sought"),
    ):
        if _v(value):
            rows.append(Row(w[label], _v(value) or ""))
        elif ph := placeholder(element):
            rows.append(ph)
    for item in case.evidence:
        rows.append(Row(w["evidence"], f"{item.kind}: {_v(item.description) or ''}".rstrip(": ")))
    if rows:
        sections.append(Section(w["grounds_section"], rows))

    # 6. The source
    s = case.source
    rows = [
        Row(w[label], (value if label == "source_address" else _v(value)) or "")
        for label, value in (
            ("source_name", s.name),
            ("organisation", s.organisation if s.organisation != s.name else None),
            ("relationship", s.relationship),
            ("source_address", _lines(s.address)),
            ("email", s.email),
            ("phone", s.phone),
        )
        if _v(value)
    ]
    for element in ("source", "author"):
        if ph := placeholder(element):
            rows.append(ph)
    if _v(case.confidential):  # what the body must keep confidential goes with the source
        rows.append(Row(w["confidential"], _v(case.confidential) or ""))
    notes = [w["confidential_source"]] if s.confidential else []
    sections.append(Section(w["source"], rows, notes))

    # 7. Consent
    covering = [
        c
        for c in case.consent
        if c.withdrawn is None and any(b == recipient.id or b in recipient.tags for b in c.bodies)
    ]
    notes = []
    for consent in covering:
        notes.append(
            w["consent_line"].format(who=w.get(consent.given_by, consent.given_by), date=consent.date.isoformat())
        )
        notes.append(w["publish_yes"] if consent.publish_name and not withhold_name else w["publish_no"])
    sections.append(Section(w["consent"], [], notes))

    # 8. Attachments
    rows = [
        Row(
            attachment.kind,
            f"{attachment.path.rsplit('/', 1)[-1]}"
            + (f" — {attachment.description}" if attachment.description else ""),
        )
        for attachment in case.attachments
    ]
    if "authorisation" in required and (ph := placeholder("authorisation")):
        rows.append(ph)
    if rows:
        sections.append(Section(w["attachments"], rows))

    body_name = recipient.name_in(lang)
    title = w["title"].format(body=body_name)
    subtitle = profile.form
    if case.country:
        concerning = w["concerning"].format(country=country_name(case.country, lang))
        subtitle = f"{subtitle} · {concerning}" if subtitle else concerning
    return Submission(
        case=cf.id,
        body=recipient.id,
        lang=lang,
        title=title,
        subtitle=subtitle,
        to=recipient.name_in(lang),
        date_text=format_date(today, lang),
        sender=sender.name,
        sections=sections,
        signature=profile.signature,
        withheld=withhold_name,
        missing=missing,
        fictional=case.fictional,
    )


_ELEMENT_LABEL = {
    "name": "names",
    "identifying_data": "identity_document",
    "date": "event_date",
    "detention": "authority",
    "source": "source_name",
    "author": "source_address",
    "state": "state",
    "authorisation": "authorisation",
}


# ---------------------------------------------------------------------------
# Word


_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def docx_bytes(sub: Submission) -> bytes:
    """The submission as a Word file (A4, Times New Roman 12 pt, numbered pages)."""
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Mm, Pt, RGBColor

    doc = Document()
    section = doc.sections[0]
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.left_margin = section.right_margin = section.top_margin = section.bottom_margin = Mm(25)

    for style_name, size, bold in (
        ("Normal", 12, False),
        ("Title", 16, True),
        ("Subtitle", 12, False),
        ("Heading 1", 14, True),
        ("Heading 2", 12, True),
    ):
        style = doc.styles[style_name]
        style.font.name = "Times New Roman"
        style.font.size = Pt(size)
        style.font.bold = bold
        style.font.color.rgb = RGBColor(0, 0, 0)
        fonts = style.element.get_or_add_rPr().get_or_add_rFonts()
        for attr in ("w:ascii", "w:hAnsi", "w:cs", "w:eastAsia"):
            fonts.set(qn(attr), "Times New Roman")
        for attr in ("w:asciiTheme", "w:hAnsiTheme", "w:cstheme", "w:eastAsiaTheme"):
            if fonts.get(qn(attr)) is not None:
                del fonts.attrib[qn(attr)]
    lang_el = doc.styles["Normal"].element.get_or_add_rPr()
    lang_tag = OxmlElement("w:lang")
    lang_tag.set(qn("w:val"), sub.lang)
    lang_el.append(lang_tag)

    w = words(sub.lang)
    if sub.fictional:
        banner = doc.add_paragraph()
        banner.alignment = WD_ALIGN_PARAGRAPH.CENTER
        run = banner.add_run(w["fictional"])
        run.bold = True
        run.font.color.rgb = RGBColor(0xB0, 0, 0)
    doc.add_paragraph(sub.title, style="Title")
    if sub.subtitle:
        doc.add_paragraph(sub.subtitle, style="Subtitle")
    meta = doc.add_paragraph()
    meta.add_run(f"{w['from']}: ").bold = True
    meta.add_run(sub.sender)
    meta.add_run("\n")
    meta.add_run(f"{w['date']}: ").bold = True
    meta.add_run(sub.date_text)

    widths = (Mm(55), Mm(105))
    for part in sub.sections:
        doc.add_heading(part.heading, level=2)
        if part.rows:
            table = doc.add_table(rows=0, cols=2)
            table.style = doc.styles["Table Grid"]
            table.autofit = False
            for column, width in zip(table.columns, widths, strict=True):
                column.width = width
            for row in part.rows:
                cells = table.add_row().cells
                for cell, width in zip(cells, widths, strict=True):
                    cell.width = width
                label = cells[0].paragraphs[0].add_run(row.label)
                label.bold = True
                lines = [line for line in row.value.split("\n") if line.strip()] or [""]
                first = cells[1].paragraphs[0]
                run = first.add_run(lines[0])
                if row.missing:
                    run.italic = True
                    run.font.color.rgb = RGBColor(0xB0, 0, 0)
                for line in lines[1:]:
                    cells[1].add_paragraph(line)
        for index, note in enumerate(part.notes):
            paragraph = doc.add_paragraph(note)
            if index == 0 and part.rows:
                paragraph.paragraph_format.space_before = Pt(6)
    if sub.signature:
        doc.add_heading(w["signature"], level=2)
        doc.add_paragraph(w["signature_line"])

    # Numbered pages: a PAGE field in the footer (python-docx has no API for fields).
    footer = section.footer.paragraphs[0]
    footer.alignment = WD_ALIGN_PARAGRAPH.CENTER
    footer.add_run(f"{w['page']} ")
    field_el = OxmlElement("w:fldSimple")
    field_el.set(qn("w:instr"), "PAGE")
    field_run = OxmlElement("w:r")
    text = OxmlElement("w:t")
    text.text = "1"
    field_run.append(text)
    field_el.append(field_run)
    footer._p.append(field_el)

    moment = datetime(2000, 1, 1, tzinfo=UTC)
    props = doc.core_properties
    props.title = sub.title
    props.author = sub.sender
    props.last_modified_by = sub.sender
    props.language = sub.lang
    props.created = props.modified = props.last_printed = moment
    props.revision = 1
    props.comments = ""
    props.keywords = ""
    props.subject = ""
    buffer = io.BytesIO()
    doc.save(buffer)
    return _fixed_zip(buffer.getvalue())


def _fixed_zip(data: bytes) -> bytes:
    """The same zip with fixed entry times: equal documents are equal bytes."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=_FIXED_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o600 << 16
            target.writestr(fixed, source.read(info.filename))
    return out.getvalue()


def docx_text(data: bytes) -> str:
    """All text of a Word file, paragraphs and table cells in order (for checks)."""
    from docx import Document

    doc = Document(io.BytesIO(data))
    parts: list[str] = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        for row in table.rows:
            parts.extend(cell.text for cell in row.cells)
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# HTML (for the PDF stack) and text


def _esc(text: str) -> str:
    return html.escape(nfc(text), quote=True).replace("\n", "<br>")


def html_fragment(sub: Submission, *, title: bool = True) -> str:
    """The submission as an HTML fragment (headings, tables of fields, notes); without the
    title when the page layout prints it as the subject."""
    w = words(sub.lang)
    out = [f'<p class="fictional"><strong>{_esc(w["fictional"])}</strong></p>'] if sub.fictional else []
    if title:
        out.append(f'<p class="sub-title"><strong>{_esc(sub.title)}</strong></p>')
    if sub.subtitle:
        out.append(f'<p class="sub-subtitle">{_esc(sub.subtitle)}</p>')
    out.append(f"<p><strong>{_esc(w['from'])}:</strong> {_esc(sub.sender)}</p>")
    for part in sub.sections:
        out.append(f"<h2>{_esc(part.heading)}</h2>")
        if part.rows:
            out.append('<table class="fields">')
            for row in part.rows:
                cls = ' class="missing"' if row.missing else ""
                out.append(f"<tr><th>{_esc(row.label)}</th><td{cls}>{_esc(row.value)}</td></tr>")
            out.append("</table>")
        out.extend(f"<p>{_esc(note)}</p>" for note in part.notes)
    if sub.signature and title:  # in a PDF letter the layout draws the signature block
        out.append(f"<h2>{_esc(w['signature'])}</h2><p>{_esc(w['signature_line'])}</p>")
    return "\n".join(out) + "\n"


def sheet_text(sub: Submission, *, letter_text: str | None = None) -> str:
    """Field by field, to copy into a web form."""
    lines = [words(sub.lang)["fictional"], ""] if sub.fictional else []
    lines += [sub.title, *([sub.subtitle] if sub.subtitle else []), ""]
    for part in sub.sections:
        lines.append(part.heading)
        lines.append("-" * len(part.heading))
        for row in part.rows:
            value = row.value.replace("\n", "\n    ")
            lines.append(f"{row.label}:\n    {value}")
        lines.extend(part.notes)
        lines.append("")
    if letter_text:
        lines.extend(["Letter", "------", letter_text.strip(), ""])
    return "\n".join(lines)


def sheet_html(sub: Submission, *, letter_text: str | None = None) -> str:
    """The copy sheet as a standalone HTML page (no scripts, no external resources)."""
    extra = ""
    if letter_text:
        paragraphs = "".join(f"<p>{_esc(p)}</p>" for p in letter_text.strip().split("\n\n"))
        extra = f"<h2>Letter</h2>{paragraphs}"
    return (
        f'<!DOCTYPE html>\n<html lang="{_esc(sub.lang)}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_esc(sub.title)}</title>\n<style>\n"
        "body{font:15px/1.45 sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#111}"
        "table{border-collapse:collapse;width:100%}th,td{border:1px solid #999;padding:.4em;vertical-align:top;"
        "text-align:left}th{width:30%;background:#f3f3f3}td{white-space:pre-wrap}.missing{color:#a00;font-style:italic}"
        ".fictional{color:#a00;border:2px solid #a00;padding:.4em;text-align:center}"
        "\n</style>\n</head>\n<body>\n" + html_fragment(sub) + extra + "\n</body>\n</html>\n"
    )
