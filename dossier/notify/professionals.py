"""The e-mail that tells a professional a new message is in their inbox (issue 18 item 4).

It carries no personal data: one fixed sentence in the language the professional set the
address in (French if unknown) and the link to the inbox. Never the person's name, NISS or
what the message is about: the inbox, behind sign-in, shows that."""

from __future__ import annotations

from audit.notify import Message, language_of

TEXTS = {
    "fr": ("Nouveau message dans votre boîte Dossier",
           "Vous avez un nouveau message dans votre boîte Dossier.\n\n{link}\n"),
    "nl": ("Nieuw bericht in uw Dossier-inbox",
           "U hebt een nieuw bericht in uw Dossier-inbox.\n\n{link}\n"),
    "en": ("New message in your Dossier inbox",
           "You have a new message in your Dossier inbox.\n\n{link}\n"),
    "es": ("Nuevo mensaje en su buzón Dossier",
           "Tiene un mensaje nuevo en su buzón Dossier.\n\n{link}\n"),
}
INBOX_PATH = "/portal/pro/inbox"


def notice(language: str | None, base_url: str) -> Message:
    lang = language_of(language)
    subject, text = TEXTS.get(lang, TEXTS["fr"])
    link = base_url.rstrip("/") + INBOX_PATH
    return Message(lang, subject, text.format(link=link), False, ())
