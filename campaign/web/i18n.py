# ruff: noqa: E501  (sentences of the page in three languages: one per line reads and diffs better)
"""The supporters' page in English, Russian and Tajik: every word the page says.

Contract: :func:`choose_lang` picks ``?lang=`` when it names a known language, else the
best match in ``Accept-Language`` (q-values honoured), else English. :func:`words`
returns the dictionary for a language; every language has every key (a test checks).
:func:`error_text` words a :class:`~campaign.errors.SubmissionError` code for the page.
No cookie remembers the choice: links and forms carry ``lang``.
"""

from __future__ import annotations

LANGS = ("en", "ru", "tg")
LANG_NAMES = {"en": "English", "ru": "Русский", "tg": "Тоҷикӣ"}

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Sign the letter",
        "language": "Language",
        "lead": "{org} asks you to add your name to this letter to {institutions}.",
        "letter_heading": "The letter, as {institution} will receive it",
        "letter_lang": "Language of the letter: {lang}.",
        "translation_heading": "Translation into {lang}",
        "translation_note": "For reading. You sign the original beside it.",
        "also_to": "The same letter, addressed to each of them, goes to:",
        "text_hash": "SHA-256 of the original text:",
        "form_heading": "Your signature",
        "name_label": "Your full name",
        "name_hint": "As it will appear under the letter.",
        "sign_as": "Sign with",
        "sign_real": "my real name",
        "sign_pseudonym": "a pseudonym",
        "pseudonym_label": "Pseudonym, printed under the letter",
        "pseudonym_hint": "For example: “Resident of Khujand”.",
        "real_name_label": "Your real name (optional)",
        "real_name_hint": (
            "Sealed: only a key the organisers keep offline can read it. It is never printed, "
            "and this server cannot read it."
        ),
        "city_label": "City",
        "title_label": "Title or occupation",
        "optional": "(optional)",
        "how_to_sign": "How to sign",
        "sign_typed": "Type my signature",
        "sign_drawn": "Draw it with finger or mouse",
        "sign_upload": "Upload a picture of it",
        "canvas_label": "Area to draw your signature",
        "clear_drawing": "Clear the drawing",
        "typed_label": "Typed signature",
        "typed_hint": "Shown in a handwriting font. Leave it empty to use your name.",
        "upload_label": "Picture of your signature (PNG or JPEG, at most 1 MB)",
        "passphrase_label": "Meeting passphrase",
        "passphrase_hint": "The organisers announced it at the meeting.",
        "consent": "I agree that my name (or pseudonym) and my signature are added to this letter and sent to: {institutions}.",
        "submit": "Sign and get my letter",
        "privacy_heading": "Your privacy",
        "privacy_1": "This page stores no IP address and no details of your browser or device.",
        "privacy_2": "It sets no cookie except one that protects this form, and loads nothing from other websites.",
        "privacy_3": "You can withdraw your signature with your receipt until the drive closes; your name is then deleted.",
        "proof_heading": "What your receipt proves",
        "proof_1": (
            "After signing you get a receipt code. Once the organisers publish the drive's root, it lets you check "
            "that your own signature was counted and not altered."
        ),
        "proof_2": "It does not prove that every other signature belongs to a real person.",
        "proof_3": (
            "Anyone who finds your receipt can, with the published root, prove that you signed. "
            "Keep it somewhere safe, or do not keep it at all."
        ),
        "tls_heading": "About your browser's warning",
        "tls_text": (
            "Your browser may say that this connection is not private. The organisers made the certificate "
            "themselves for this meeting, so no authority vouches for it. Continue only if the certificate "
            "fingerprint (SHA-256) your browser shows begins with:"
        ),
        "closed": "This drive is closed: signatures are no longer collected.",
        "done_title": "Thank you for signing",
        "done_lead": "Your letter is sealed by {org}. Download it now: it is not kept on this server.",
        "download_pdf": "Download the signed letter (PDF)",
        "receipt_heading": "Your receipt code",
        "receipt_label": "Receipt code",
        "download_receipt": "Download the receipt (text file)",
        "withdraw_link": "Changed your mind? Withdraw your signature",
        "withdraw_title": "Withdraw your signature",
        "withdraw_lead": (
            "Paste your receipt code. Your name and signature are deleted at once. This works until the drive closes."
        ),
        "withdraw_submit": "Withdraw my signature",
        "withdrawn_title": "Your signature was withdrawn",
        "withdrawn_text": "Your name and signature were deleted from this drive.",
        "back": "Back to the letter",
        "error_heading": "Please check",
        "footer": "Signing page of {org}.",
        "not_found_title": "No signing drive here",
        "home_text": "This is a signing page. Open the link the organisers gave you.",
    },
    "ru": {
        "title": "Подписать письмо",
        "language": "Язык",
        "lead": "{org} предлагает вам подписать это письмо в адрес: {institutions}.",
        "letter_heading": "Письмо в том виде, в каком его получит {institution}",
        "letter_lang": "Язык письма: {lang}.",
        "translation_heading": "Перевод: {lang}",
        "translation_note": "Для чтения. Вы подписываете оригинал рядом.",
        "also_to": "Это же письмо, с обращением к каждому адресату, получат:",
        "text_hash": "SHA-256 оригинального текста:",
        "form_heading": "Ваша подпись",
        "name_label": "Ваше полное имя",
        "name_hint": "Так оно будет напечатано под письмом.",
        "sign_as": "Подписать",
        "sign_real": "своим настоящим именем",
        "sign_pseudonym": "псевдонимом",
        "pseudonym_label": "Псевдоним, который будет напечатан под письмом",
        "pseudonym_hint": "Например: «Житель Худжанда».",
        "real_name_label": "Ваше настоящее имя (необязательно)",
        "real_name_hint": (
            "Запечатано: прочитать его можно только ключом, который организаторы хранят вне сети. "
            "Оно нигде не печатается, и этот сервер не может его прочитать."
        ),
        "city_label": "Город",
        "title_label": "Должность или род занятий",
        "optional": "(необязательно)",
        "how_to_sign": "Как подписать",
        "sign_typed": "Напечатать подпись",
        "sign_drawn": "Нарисовать пальцем или мышью",
        "sign_upload": "Загрузить изображение подписи",
        "canvas_label": "Поле для подписи",
        "clear_drawing": "Стереть",
        "typed_label": "Напечатанная подпись",
        "typed_hint": "Показывается рукописным шрифтом. Оставьте пустым, чтобы использовать имя.",
        "upload_label": "Изображение подписи (PNG или JPEG, не больше 1 МБ)",
        "passphrase_label": "Пароль встречи",
        "passphrase_hint": "Организаторы назвали его на встрече.",
        "consent": "Я согласен (согласна), чтобы моё имя (или псевдоним) и подпись были добавлены к этому письму и отправлены: {institutions}.",
        "submit": "Подписать и получить письмо",
        "privacy_heading": "Ваша конфиденциальность",
        "privacy_1": "Эта страница не сохраняет IP-адрес и сведения о вашем браузере или устройстве.",
        "privacy_2": "Она не ставит cookie, кроме одного, защищающего эту форму, и ничего не загружает с других сайтов.",
        "privacy_3": "По квитанции вы можете отозвать подпись, пока сбор не закрыт; тогда ваше имя удаляется.",
        "proof_heading": "Что доказывает квитанция",
        "proof_1": (
            "После подписания вы получите код квитанции. Когда организаторы опубликуют корень сбора, по нему "
            "можно проверить, что ваша подпись учтена и не изменена."
        ),
        "proof_2": "Она не доказывает, что каждая другая подпись принадлежит реальному человеку.",
        "proof_3": (
            "Тот, кто найдёт вашу квитанцию, вместе с опубликованным корнем сможет доказать, что вы подписали. "
            "Храните её в надёжном месте или не храните вовсе."
        ),
        "tls_heading": "О предупреждении браузера",
        "tls_text": (
            "Браузер может сообщить, что подключение не защищено. Организаторы сами создали сертификат для "
            "этой встречи, поэтому за него не ручается удостоверяющий центр. Продолжайте, только если отпечаток "
            "сертификата (SHA-256) в браузере начинается с:"
        ),
        "closed": "Сбор подписей закрыт: подписи больше не принимаются.",
        "done_title": "Спасибо, вы подписали письмо",
        "done_lead": "Ваше письмо заверено печатью: {org}. Скачайте его сейчас: на сервере оно не хранится.",
        "download_pdf": "Скачать подписанное письмо (PDF)",
        "receipt_heading": "Ваш код квитанции",
        "receipt_label": "Код квитанции",
        "download_receipt": "Скачать квитанцию (текстовый файл)",
        "withdraw_link": "Передумали? Отозвать подпись",
        "withdraw_title": "Отозвать подпись",
        "withdraw_lead": (
            "Вставьте код квитанции. Ваше имя и подпись будут сразу удалены. Это возможно, пока сбор не закрыт."
        ),
        "withdraw_submit": "Отозвать мою подпись",
        "withdrawn_title": "Ваша подпись отозвана",
        "withdrawn_text": "Ваше имя и подпись удалены из этого сбора.",
        "back": "Вернуться к письму",
        "error_heading": "Пожалуйста, проверьте",
        "footer": "Страница сбора подписей: {org}.",
        "not_found_title": "Здесь нет сбора подписей",
        "home_text": "Это страница сбора подписей. Откройте ссылку, которую вам дали организаторы.",
    },
    "tg": {
        "title": "Номаро имзо кунед",
        "language": "Забон",
        "lead": "{org} аз шумо хоҳиш мекунад, ки ин номаро ба {institutions} имзо кунед.",
        "letter_heading": "Нома, ҳамон тавре ки {institution} мегирад",
        "letter_lang": "Забони нома: {lang}.",
        "translation_heading": "Тарҷума: {lang}",
        "translation_note": "Барои хондан. Шумо нусхаи аслии паҳлӯро имзо мекунед.",
        "also_to": "Ҳамин нома, бо муроҷиат ба ҳар кадом, ба инҳо фиристода мешавад:",
        "text_hash": "SHA-256-и матни аслӣ:",
        "form_heading": "Имзои шумо",
        "name_label": "Ному насаби пурраи шумо",
        "name_hint": "Ҳамин тавр дар зери нома чоп мешавад.",
        "sign_as": "Имзо бо",
        "sign_real": "номи аслии худ",
        "sign_pseudonym": "тахаллус",
        "pseudonym_label": "Тахаллус, ки дар зери нома чоп мешавад",
        "pseudonym_hint": "Масалан: «Сокини Хуҷанд».",
        "real_name_label": "Номи аслии шумо (ихтиёрӣ)",
        "real_name_hint": (
            "Мӯҳр карда мешавад: онро танҳо бо калиде хондан мумкин аст, ки ташкилкунандагон берун аз шабака "
            "нигоҳ медоранд. Он ҳеҷ ҷо чоп намешавад ва ин сервер онро хонда наметавонад."
        ),
        "city_label": "Шаҳр",
        "title_label": "Вазифа ё касб",
        "optional": "(ихтиёрӣ)",
        "how_to_sign": "Чӣ тавр имзо кардан",
        "sign_typed": "Имзоро чоп кунам",
        "sign_drawn": "Бо ангушт ё муш кашам",
        "sign_upload": "Расми имзоро бор кунам",
        "canvas_label": "Майдон барои кашидани имзо",
        "clear_drawing": "Пок кардан",
        "typed_label": "Имзои чопӣ",
        "typed_hint": "Бо ҳуруфи дастнавис нишон дода мешавад. Агар холӣ монед, номи шумо истифода мешавад.",
        "upload_label": "Расми имзои шумо (PNG ё JPEG, на зиёда аз 1 МБ)",
        "passphrase_label": "Рамзи вохӯрӣ",
        "passphrase_hint": "Ташкилкунандагон онро дар вохӯрӣ эълон карданд.",
        "consent": "Ман розӣ ҳастам, ки номи ман (ё тахаллусам) ва имзоям ба ин нома илова шуда, ба {institutions} фиристода шаванд.",
        "submit": "Имзо кардан ва гирифтани нома",
        "privacy_heading": "Махфияти шумо",
        "privacy_1": "Ин саҳифа суроғаи IP ва маълумот дар бораи браузер ё дастгоҳи шуморо нигоҳ намедорад.",
        "privacy_2": "Ба ҷуз як cookie, ки ин формаро ҳифз мекунад, cookie намегузорад ва аз сайтҳои дигар чизе бор намекунад.",
        "privacy_3": "То баста шудани ҷамъоварӣ шумо метавонед бо квитансия имзоятонро бозпас гиред; он гоҳ номи шумо нест карда мешавад.",
        "proof_heading": "Квитансия чиро исбот мекунад",
        "proof_1": (
            "Пас аз имзо шумо рамзи квитансия мегиред. Вақте ки ташкилкунандагон решаи ҷамъовариро нашр мекунанд, "
            "бо он метавонед санҷед, ки имзои шумо ҳисоб шудааст ва тағйир наёфтааст."
        ),
        "proof_2": "Он исбот намекунад, ки ҳар як имзои дигар ба шахси воқеӣ тааллуқ дорад.",
        "proof_3": (
            "Ҳар кӣ квитансияи шуморо ёбад, бо решаи нашршуда метавонад исбот кунад, ки шумо имзо кардаед. "
            "Онро дар ҷои бехатар нигоҳ доред ё тамоман нигоҳ надоред."
        ),
        "tls_heading": "Дар бораи огоҳии браузер",
        "tls_text": (
            "Браузер метавонад гӯяд, ки ин пайвастшавӣ махфӣ нест. Ташкилкунандагон сертификатро худашон барои "
            "ин вохӯрӣ сохтаанд, бинобар ин ягон мақомот онро кафолат намедиҳад. Танҳо вақте идома диҳед, ки "
            "изи ангушти сертификат (SHA-256) дар браузер чунин оғоз шавад:"
        ),
        "closed": "Ҷамъоварии имзо баста шуд: имзоҳо дигар қабул намешаванд.",
        "done_title": "Ташаккур, шумо имзо кардед",
        "done_lead": "Номаи шумо бо мӯҳри {org} тасдиқ шуд. Онро ҳозир боргирӣ кунед: дар сервер нигоҳ дошта намешавад.",
        "download_pdf": "Боргирии номаи имзошуда (PDF)",
        "receipt_heading": "Рамзи квитансияи шумо",
        "receipt_label": "Рамзи квитансия",
        "download_receipt": "Боргирии квитансия (файли матнӣ)",
        "withdraw_link": "Фикратон дигар шуд? Имзоро бозпас гиред",
        "withdraw_title": "Бозпас гирифтани имзо",
        "withdraw_lead": (
            "Рамзи квитансияро гузоред. Ному имзои шумо фавран нест карда мешаванд. "
            "Ин то баста шудани ҷамъоварӣ имконпазир аст."
        ),
        "withdraw_submit": "Имзои маро бозпас гиред",
        "withdrawn_title": "Имзои шумо бозпас гирифта шуд",
        "withdrawn_text": "Ному имзои шумо аз ин ҷамъоварӣ нест карда шуданд.",
        "back": "Бозгашт ба нома",
        "error_heading": "Лутфан санҷед",
        "footer": "Саҳифаи ҷамъоварии имзои {org}.",
        "not_found_title": "Дар ин ҷо ҷамъоварии имзо нест",
        "home_text": "Ин саҳифаи ҷамъоварии имзо аст. Пайвандеро, ки ташкилкунандагон додаанд, кушоед.",
    },
}

FIELDS: dict[str, dict[str, str]] = {
    "en": {"name": "Name", "pseudonym": "Pseudonym", "real_name": "Real name", "city": "City",
           "title": "Title", "typed_signature": "Typed signature", "passphrase": "Passphrase",
           "receipt": "Receipt code", "signature": "Signature", "consent": "Consent"},
    "ru": {"name": "Имя", "pseudonym": "Псевдоним", "real_name": "Настоящее имя", "city": "Город",
           "title": "Должность", "typed_signature": "Напечатанная подпись", "passphrase": "Пароль",
           "receipt": "Код квитанции", "signature": "Подпись", "consent": "Согласие"},
    "tg": {"name": "Ном", "pseudonym": "Тахаллус", "real_name": "Номи аслӣ", "city": "Шаҳр",
           "title": "Вазифа", "typed_signature": "Имзои чопӣ", "passphrase": "Рамз",
           "receipt": "Рамзи квитансия", "signature": "Имзо", "consent": "Розигӣ"},
}  # fmt: skip

ERRORS: dict[str, dict[str, str]] = {
    "en": {
        "not-found": "This link does not lead to a signing drive. Check that you copied the whole link.",
        "closed": "This drive is closed: signatures are no longer collected. Nothing was stored.",
        "passphrase-wrong": "The meeting passphrase is not right. Nothing was stored.",
        "pseudonyms-not-allowed": "This drive does not accept pseudonyms.",
        "consent-missing": "Please tick the consent box: without it we cannot add your name.",
        "signature-missing": "Please type, draw or upload your signature.",
        "signature-too-large": "The signature picture is too large (at most 1 MB).",
        "signature-not-an-image": "The signature file is not a picture (PNG or JPEG).",
        "signature-too-many-pixels": "The signature picture has too many pixels; please crop it.",
        "empty": "{field}: please fill this in.",
        "too-long": "{field}: too long (at most {limit} characters).",
        "control-characters": "{field}: contains invisible control characters; please type it again.",
        "markup": "{field}: the characters < and > are not allowed.",
        "busy": "Many people are signing right now. Please wait a minute and try again. Nothing was stored.",
        "form-forged": "This form did not come from this page. Please reload the page and sign again.",
        "form-expired": "This form is too old. Please reload the page and sign again.",
        "form-replayed": "This form was already sent. Reload the page to sign again.",
        "too-big": "What you sent is too large. Nothing was stored.",
        "bad-request": "The form could not be read. Please reload the page. Nothing was stored.",
        "receipt-invalid": "This is not a receipt code. Copy the whole code, which starts with campaign-sign-v1.",
        "receipt-other-drive": "This receipt belongs to another signing drive.",
        "receipt-unknown": "No signature has this receipt: it was withdrawn already, or the code was changed.",
        "server-error": "Something went wrong on our side; nothing was stored. Please try again.",
    },
    "ru": {
        "not-found": "По этой ссылке нет сбора подписей. Проверьте, что ссылка скопирована целиком.",
        "closed": "Сбор закрыт: подписи больше не принимаются. Ничего не сохранено.",
        "passphrase-wrong": "Неверный пароль встречи. Ничего не сохранено.",
        "pseudonyms-not-allowed": "В этом сборе нельзя подписываться псевдонимом.",
        "consent-missing": "Отметьте согласие: без него мы не можем добавить ваше имя.",
        "signature-missing": "Напечатайте, нарисуйте или загрузите подпись.",
        "signature-too-large": "Изображение подписи слишком большое (не больше 1 МБ).",
        "signature-not-an-image": "Файл подписи не является изображением (PNG или JPEG).",
        "signature-too-many-pixels": "В изображении подписи слишком много пикселей; обрежьте его.",
        "empty": "{field}: заполните, пожалуйста.",
        "too-long": "{field}: слишком длинно (не больше {limit} знаков).",
        "control-characters": "{field}: содержит невидимые управляющие символы; наберите заново.",
        "markup": "{field}: знаки < и > не допускаются.",
        "busy": "Сейчас подписывают очень многие. Подождите минуту и попробуйте снова. Ничего не сохранено.",
        "form-forged": "Эта форма отправлена не с этой страницы. Обновите страницу и подпишите снова.",
        "form-expired": "Форма устарела. Обновите страницу и подпишите снова.",
        "form-replayed": "Эта форма уже отправлена. Обновите страницу, чтобы подписать снова.",
        "too-big": "Отправлено слишком много данных. Ничего не сохранено.",
        "bad-request": "Не удалось прочитать форму. Обновите страницу. Ничего не сохранено.",
        "receipt-invalid": "Это не код квитанции. Скопируйте код целиком: он начинается с campaign-sign-v1.",
        "receipt-other-drive": "Эта квитанция относится к другому сбору подписей.",
        "receipt-unknown": "Подписи с такой квитанцией нет: она уже отозвана или код изменён.",
        "server-error": "Что-то пошло не так на нашей стороне; ничего не сохранено. Попробуйте ещё раз.",
    },
    "tg": {
        "not-found": "Ин пайванд ба ҷамъоварии имзо намебарад. Санҷед, ки пайвандро пурра нусха кардаед.",
        "closed": "Ҷамъоварӣ баста шуд: имзоҳо дигар қабул намешаванд. Чизе нигоҳ дошта нашуд.",
        "passphrase-wrong": "Рамзи вохӯрӣ нодуруст аст. Чизе нигоҳ дошта нашуд.",
        "pseudonyms-not-allowed": "Дар ин ҷамъоварӣ бо тахаллус имзо кардан мумкин нест.",
        "consent-missing": "Лутфан розигиро қайд кунед: бе он мо номи шуморо илова карда наметавонем.",
        "signature-missing": "Лутфан имзоятонро чоп кунед, кашед ё бор кунед.",
        "signature-too-large": "Расми имзо хеле калон аст (на зиёда аз 1 МБ).",
        "signature-not-an-image": "Файли имзо расм нест (PNG ё JPEG).",
        "signature-too-many-pixels": "Расми имзо пикселҳои аз ҳад зиёд дорад; онро бурида хурд кунед.",
        "empty": "{field}: лутфан пур кунед.",
        "too-long": "{field}: хеле дароз аст (на зиёда аз {limit} аломат).",
        "control-characters": "{field}: аломатҳои идоракунии ноаён дорад; лутфан аз нав нависед.",
        "markup": "{field}: аломатҳои < ва > иҷозат дода намешаванд.",
        "busy": "Ҳоло бисёр одамон имзо мекунанд. Як дақиқа интизор шуда, боз кӯшиш кунед. Чизе нигоҳ дошта нашуд.",
        "form-forged": "Ин форма аз ин саҳифа нест. Саҳифаро аз нав бор карда, боз имзо кунед.",
        "form-expired": "Ин форма кӯҳна шудааст. Саҳифаро аз нав бор карда, боз имзо кунед.",
        "form-replayed": "Ин форма аллакай фиристода шудааст. Барои боз имзо кардан саҳифаро аз нав бор кунед.",
        "too-big": "Маълумоти фиристодашуда хеле калон аст. Чизе нигоҳ дошта нашуд.",
        "bad-request": "Формаро хондан нашуд. Саҳифаро аз нав бор кунед. Чизе нигоҳ дошта нашуд.",
        "receipt-invalid": "Ин рамзи квитансия нест. Рамзро пурра нусха кунед: он бо campaign-sign-v1 оғоз мешавад.",
        "receipt-other-drive": "Ин квитансия ба ҷамъоварии дигари имзо тааллуқ дорад.",
        "receipt-unknown": "Имзо бо ин квитансия нест: он аллакай бозпас гирифта шудааст ё рамз тағйир ёфтааст.",
        "server-error": "Дар тарафи мо хатое рух дод; чизе нигоҳ дошта нашуд. Лутфан боз кӯшиш кунед.",
    },
}


def choose_lang(query: str | None, accept_language: str | None) -> str:
    """``?lang=`` if known, else the best of Accept-Language, else English."""
    if query in LANGS:
        return str(query)
    best, best_q = "en", 0.0
    for position, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        base = tag.strip().split("-")[0].lower()
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        q -= position * 1e-6  # earlier wins a tie
        if base in LANGS and q > best_q:
            best, best_q = base, q
    return best


def words(lang: str) -> dict[str, str]:
    return WORDS.get(lang, WORDS["en"])


def error_text(lang: str, code: str, field: str | None = None, limit: str | None = None) -> str:
    table = ERRORS.get(lang, ERRORS["en"])
    text = table.get(code) or table["bad-request"]
    label = FIELDS.get(lang, FIELDS["en"]).get(field or "", field or "")
    return text.format(field=label, limit=limit or "")
