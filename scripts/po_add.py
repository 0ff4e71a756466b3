"""Append translations to a portal catalogue file: po_add.py FILE LANG < tab-separated
lines "msgid<TAB>msgstr" (skips msgids already in the file)."""

import sys
from pathlib import Path

HEADER = '''# {what} texts of the Dossier portal. English is the msgid.
msgid ""
msgstr ""
"Language: {lang}\\n"
"MIME-Version: 1.0\\n"
"Content-Type: text/plain; charset=utf-8\\n"
"Content-Transfer-Encoding: 8bit\\n"

'''


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main() -> None:
    path, lang = Path(sys.argv[1]), sys.argv[2]
    text = path.read_text() if path.exists() else HEADER.format(what=lang, lang=lang)
    for line in sys.stdin.read().splitlines():
        if not line.strip():
            continue
        msgid, msgstr = line.split("\t")
        if f"msgid {quote(msgid)}\n" in text:
            continue
        text += f"msgid {quote(msgid)}\nmsgstr {quote(msgstr)}\n\n"
    path.write_text(text)


main()
