"""WordNet load cost per command: nltk's reader (the old path) against imnet's compact noun cache.

Each measurement is a fresh process (what a user pays per `imnet` call): wall seconds and peak
RSS. `imnet synsets add n01440764` is timed with a cold cache (first call: nltk locates and
parses data.noun, then writes the cache) and a warm one (second call), next to the old path
(nltk's WordNetCorpusReader loaded, the synset described), all in this same run; then
`imnet synsets list` twice. Prints one line per measurement and the old/new ratios.

    python bench/wordnet.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# A child runs the given code and reports its own wall time and peak RSS as JSON on stdout's
# last line (resource's ru_maxrss is KiB on Linux).
CHILD = """
import json, resource, sys, time, contextlib, io
t = time.perf_counter()
out = io.StringIO()
with contextlib.redirect_stdout(out):
    {body}
wall = time.perf_counter() - t
print(json.dumps({{"wall": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "out": out.getvalue()[-200:]}}))
"""
OLD = """import nltk.corpus
    from imnet.core.wordnet import ensure_wordnet
    ensure_wordnet(allow_download=False)
    s = nltk.corpus.wordnet.synset_from_pos_and_offset("n", 1440764)
    print(s.lemma_names(), s.definition(), s.hypernyms(), s.min_depth(), s.hyponyms())"""
CLI = """from imnet.cli import main
    sys.argv = ["imnet"] + {argv!r}
    rc = main({argv!r})
    assert rc == 0, rc"""


def measure(body: str, env: dict[str, str]) -> dict[str, float]:
    code = CHILD.format(body=body)
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if p.returncode != 0:
        raise SystemExit(f"child failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="warm measurements per command")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, XDG_CACHE_HOME=str(Path(tmp) / "cache"))
        data = ["--data-dir", str(Path(tmp) / "data")]
        add = CLI.format(argv=[*data, "synsets", "add", "n01440764"])
        lst = CLI.format(argv=[*data, "synsets", "list"])
        rows: dict[str, list[dict[str, float]]] = {}
        rows["add, cold cache (1st call)"] = [measure(add, env)]
        for _ in range(args.repeat):
            rows.setdefault("add, warm cache (2nd+ call)", []).append(measure(add, env))
            rows.setdefault("old: nltk reader + synset", []).append(measure(OLD, env))
            rows.setdefault("list", []).append(measure(lst, env))
    med = {
        k: (statistics.median(r["wall"] for r in v), max(r["rss_mb"] for r in v))
        for k, v in rows.items()
    }
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for k, (wall, rss) in med.items():
        print(f"{k:32s} wall {wall:6.2f} s  peak RSS {rss:6.0f} MB  (n={len(rows[k])})")
    old_w, old_r = med["old: nltk reader + synset"]
    new_w, new_r = med["add, warm cache (2nd+ call)"]
    print(
        f"ratio old/new for `synsets add` (warm): wall {old_w / new_w:.1f}x, RSS {old_r / new_r:.1f}x"
    )


if __name__ == "__main__":
    main()
