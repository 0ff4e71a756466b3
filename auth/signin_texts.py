"""The embedded sign-in page's words in the portal's languages and its look (issue 19).

The portal sends its current language as `ui_locales` (OpenID Connect Core §3.1.2.1);
the page answers in the first language it knows, else English. Styling is inline (the
page's Content-Security-Policy allows inline styles only) and follows the portal's.
"""

from __future__ import annotations

from collections.abc import Mapping

TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {"title": "Sign in to Dossier", "asks": "The application {client} asks to sign "
           "you in.", "choose": "Choose a demo person.", "dev": "This page exists only in "
           "the embedded development setup.", "username": "Username",
           "password": "Password", "submit": "Sign in",
           "wrong": "Wrong username or password.", "refused": "Sign-in request refused"},
    "fr": {"title": "Se connecter à Dossier", "asks": "L'application {client} demande à "
           "vous connecter.", "choose": "Choisissez une personne de démonstration.",
           "dev": "Cette page n'existe que dans l'installation de développement intégrée.",
           "username": "Nom d'utilisateur", "password": "Mot de passe",
           "submit": "Se connecter", "wrong": "Nom d'utilisateur ou mot de passe incorrect.",
           "refused": "Demande de connexion refusée"},
    "nl": {"title": "Aanmelden bij Dossier", "asks": "De toepassing {client} vraagt om u "
           "aan te melden.", "choose": "Kies een demopersoon.", "dev": "Deze pagina bestaat "
           "alleen in de ingebouwde ontwikkelomgeving.", "username": "Gebruikersnaam",
           "password": "Wachtwoord", "submit": "Aanmelden",
           "wrong": "Verkeerde gebruikersnaam of wachtwoord.",
           "refused": "Aanmeldingsverzoek geweigerd"},
    "es": {"title": "Identificarse en Dossier", "asks": "La aplicación {client} pide "
           "identificarle.", "choose": "Elija una persona de demostración.",
           "dev": "Esta página solo existe en la instalación de desarrollo integrada.",
           "username": "Nombre de usuario", "password": "Contraseña",
           "submit": "Identificarse", "wrong": "Nombre de usuario o contraseña incorrectos.",
           "refused": "Solicitud de identificación rechazada"},
}

STYLE = (
    ":root{--ink:#1f2937;--muted:#4b5563;--accent:#1d4ed8;--line:#d1d5db;--bg:#f3f4f6}"
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);"
    "background:var(--bg);margin:0;line-height:1.5}"
    "header{background:#fff;border-bottom:1px solid var(--line);padding:.75rem 1rem}"
    "header p{max-width:40rem;margin:0 auto;font-weight:700;font-size:1.1rem}"
    "main{max-width:40rem;margin:1.5rem auto;background:#fff;border-radius:.75rem;"
    "padding:1rem 1.5rem 1.5rem;box-shadow:0 1px 2px rgba(0,0,0,.06)}"
    "h1{font-size:1.6rem;margin:.5rem 0 1rem}"
    "ul{padding:0}li{margin:.5rem 0;list-style:none;display:flex;gap:.75rem;"
    "align-items:center;flex-wrap:wrap}li span{color:var(--muted)}"
    "label{font-weight:600}input{font:inherit;padding:.6rem .75rem;border:2px solid #6b7280;"
    "border-radius:.4rem;width:100%;max-width:24rem;box-sizing:border-box}"
    "button{font:inherit;font-weight:700;background:var(--accent);color:#fff;border:0;"
    "border-radius:.4rem;padding:.7rem 1.2rem;min-width:12rem;min-height:48px;"
    "cursor:pointer}button:hover{background:#1e40af}"
    "button:focus,input:focus{outline:3px solid var(--accent);outline-offset:2px}"
    "[role=alert]{border-left:6px solid #b91c1c;padding:.5rem 1rem;background:#fef2f2}"
    ".hint{color:var(--muted);font-size:.9rem}"
)


def language_of(ui_locales: str | None) -> str:
    """The first language of `ui_locales` (space-separated BCP 47 tags) that we speak."""
    for tag in (ui_locales or "").split()[:10]:
        primary = tag.split("-", 1)[0].lower()
        if primary in TEXTS:
            return primary
    return "en"


def texts(lang: str) -> Mapping[str, str]:
    return TEXTS.get(lang, TEXTS["en"])
