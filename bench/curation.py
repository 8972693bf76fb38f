"""Curation benchmarks: near-dup search vs imagededup, and export throughput vs a plain Pillow loop.

Usage: python bench/curation.py [--neardup-n 200000] [--radius 6] [--export-n 400] [--skip-imagededup]
       [--only neardup|export]

(1) Near-duplicate search over N 64-bit hashes (random hashes, a tenth of them near copies of
    others with 0..radius+2 bits flipped): imnet's multi-index hashing (curation.neardup.self_pairs)
    against imagededup's `PHash().find_duplicates(encoding_map=..., max_distance_threshold=radius)`
    on the same hashes and radius. imagededup imports torchvision, so it runs in its own venv
    (.venv-bench-curation, created here if missing, torch 2.14.1 + torchvision 0.29.1 from this
    machine's disk) as a subprocess; only its find_duplicates call is timed. Recall of both is
    measured against brute force for a random sample of query hashes (exact all pairs for 200,000
    hashes would take far longer than either method).
(2) Export throughput: N JPEG photos (400-1,200 px) in a file blob store and an SQLite database,
    `run_export(..., "ilsvrc", resize=256, quality=90)` against a single-process Pillow loop that
    decodes, resizes the shorter side to 256 (bicubic) and saves JPEG q90 into the same layout.
Nothing touches the network (pip aside, when the benchmark venv must be created).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VENV = ROOT / ".venv-bench-curation"

IMAGEDEDUP_SIDE = r"""
import json, sys, time
from imagededup.methods import PHash
hashes = json.load(open(sys.argv[1]))
radius = int(sys.argv[2])
method = sys.argv[3]
enc = {str(i): h for i, h in enumerate(hashes)}
t = time.perf_counter()
dups = PHash(verbose=False).find_duplicates(encoding_map=enc, max_distance_threshold=radius,
                                             search_method=method)
elapsed = time.perf_counter() - t
pairs = sorted({(min(int(a), int(b)), max(int(a), int(b))) for a, lst in dups.items() for b in lst})
json.dump({"seconds": elapsed, "pairs": pairs}, open(sys.argv[4], "w"))
"""


def ensure_venv() -> Path:
    py = VENV / "bin" / "python"
    ok = (
        py.exists()
        and subprocess.run([str(py), "-c", "import imagededup"], capture_output=True).returncode
        == 0
    )
    if not ok:
        print(f"creating {VENV} (torch 2.14.1, torchvision 0.29.1, imagededup) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [
                str(py),
                "-m",
                "pip",
                "install",
                "-q",
                "torch==2.14.1",
                "torchvision==0.29.1",
                "imagededup",
                "numpy",
                "pillow",
            ],
            check=True,
        )
    return py


def make_hashes(n: int, radius: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    copies = rng.choice(n, size=n // 10, replace=False)
    for c in copies:
        x = int(h[rng.integers(0, n)])
        for bit in rng.choice(64, size=int(rng.integers(0, radius + 3)), replace=False):
            x ^= 1 << int(bit)
        h[c] = x
    return h


def sampled_truth(h: np.ndarray, radius: int, sample: np.ndarray) -> set[tuple[int, int]]:
    """All pairs within the radius that involve a sampled hash (brute force over all hashes)."""
    out: set[tuple[int, int]] = set()
    for a in sample.tolist():
        d = np.bitwise_count(h ^ h[a])
        for b in np.nonzero(d <= radius)[0].tolist():
            if b != a:
                out.add((min(a, b), max(a, b)))
    return out


def recall(found: set[tuple[int, int]], truth: set[tuple[int, int]]) -> float:
    return len(truth & found) / len(truth) if truth else 1.0


def run_imagededup(h: np.ndarray, radius: int, method: str) -> tuple[float, set[tuple[int, int]]]:
    """imagededup's find_duplicates on these hashes, in its venv; (seconds of the call, pairs)."""
    py = ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        hashes_file = Path(tmp) / "hashes.json"
        hashes_file.write_text(json.dumps([f"{int(x):016x}" for x in h]))
        out_file = Path(tmp) / "out.json"
        script = Path(tmp) / "side.py"
        script.write_text(IMAGEDEDUP_SIDE)
        subprocess.run(
            [
                str(py),
                "-W",
                "ignore",
                str(script),
                str(hashes_file),
                str(radius),
                method,
                str(out_file),
            ],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        res = json.loads(out_file.read_text())
    return res["seconds"], {(a, b) for a, b in res["pairs"]}


def bench_neardup(n: int, radius: int, skip_peer: bool, method: str, peer_n: int) -> None:
    from curation.neardup import choose_bands, self_pairs

    print(f"\n== near-duplicate search: {n:,} hashes, radius {radius} ==")
    h = make_hashes(n, radius)
    t = time.perf_counter()
    pairs = self_pairs(h, radius)
    ours_s = time.perf_counter() - t
    ours = set(zip(pairs.q.tolist(), pairs.i.tolist(), strict=True))
    sample = np.random.default_rng(1).choice(n, size=min(n, 2000), replace=False)
    truth = sampled_truth(h, radius, sample)
    in_sample = set(sample.tolist())
    mine = {p for p in ours if p[0] in in_sample or p[1] in in_sample}
    print(
        f"imnet MIH ({choose_bands(n, radius)} bands), {n:,} hashes: {ours_s:.2f} s, "
        f"{len(ours):,} pairs, recall {recall(mine, truth):.4f} against brute force for "
        f"{len(sample):,} sampled hashes ({len(truth):,} true pairs)"
    )
    if skip_peer:
        return
    m = min(peer_n, n)
    sub = h[:m]
    t = time.perf_counter()
    sub_pairs = self_pairs(sub, radius)
    ours_sub_s = time.perf_counter() - t
    ours_sub = set(zip(sub_pairs.q.tolist(), sub_pairs.i.tolist(), strict=True))
    theirs_s, theirs = run_imagededup(sub, radius, method)
    print(
        f"same {m:,} hashes: imnet {ours_sub_s:.3f} s, imagededup find_duplicates({method}) "
        f"{theirs_s:.2f} s; identical pair sets: {ours_sub == theirs} ({len(theirs):,} pairs, "
        f"so equal recall); measured ratio {theirs_s / ours_sub_s:.0f}x"
    )
    if m < n:
        scale = (n / m) ** 2 if method.startswith("brute") else None
        if scale:
            est = theirs_s * scale
            print(
                f"imagededup at {n:,} hashes, EXTRAPOLATED (brute force is quadratic, x{scale:.0f}): "
                f"~{est:,.0f} s = {est / 3600:.1f} h; ratio vs imnet's measured {ours_s:.2f} s: "
                f"~{est / ours_s:,.0f}x (goal >= 20x)"
            )
    else:
        print(f"ratio imagededup / imnet = {theirs_s / ours_s:.0f}x (goal >= 20x at equal recall)")


def make_photos(n: int, seed: int = 0) -> list[bytes]:
    import skimage.data
    from PIL import Image

    names = [
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "hubble_deep_field",
        "retina",
        "immunohistochemistry",
        "colorwheel",
        "camera",
        "moon",
        "brick",
        "grass",
    ]
    srcs = []
    for name in names:
        a = getattr(skimage.data, name)()
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        srcs.append(Image.fromarray(a[..., :3]).convert("RGB"))
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        im = srcs[k % len(srcs)]
        w = int(rng.integers(400, 1201))
        h = int(w * rng.uniform(0.6, 1.0))
        x0, y0 = rng.integers(0, max(1, im.width // 8), size=2)
        big = im.crop((int(x0), int(y0), im.width, im.height)).resize(
            (w, h), Image.Resampling.BILINEAR
        )
        buf = io.BytesIO()
        big.save(buf, "JPEG", quality=int(rng.integers(80, 96)))
        out.append(buf.getvalue())
    return out


def pillow_loop(blob_paths: list[tuple[str, Path]], out: Path) -> None:
    """The straightforward way: one process, full decode, resize, save."""
    from PIL import Image

    for k, (wnid, p) in enumerate(blob_paths):
        with Image.open(p) as im:
            im = im.convert("RGB")
            s = 256 / min(im.size)
            im = im.resize(
                (max(1, round(im.width * s)), max(1, round(im.height * s))),
                Image.Resampling.BICUBIC,
            )
            d = out / "train" / wnid
            d.mkdir(parents=True, exist_ok=True)
            im.save(d / f"{wnid}_{k}.JPEG", "JPEG", quality=90)


def bench_export(n: int) -> None:
    from curation import run_curation
    from curation.classes import choose_classes
    from curation.export import run_export
    from db.models import Candidate, Image, Label, Synset
    from imnet.core.app import App
    from imnet.core.settings import Settings

    print(
        f"\n== export throughput: {n} JPEG photos (400-1200 px), resize 256, q90, "
        f"{os.cpu_count()} CPUs =="
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        app = App(Settings(data_dir=str(tmpd / "data")))
        wnids = ["n02085620", "n02085782", "n02123045", "n07747607"]
        blobs = make_photos(n)
        with app.Session.begin() as s:
            for w in wnids:
                s.add(Synset(wnid=w, lemmas=[w], gloss=""))
            s.flush()
            for k, data in enumerate(blobs):
                sha = app.blobs.put(data)
                s.add(
                    Image(
                        sha256=sha, blob_key=sha, width=0, height=0, format="JPEG", bytes=len(data)
                    )
                )
                s.flush()
                c = Candidate(
                    wnid=wnids[k % 4],
                    url=f"http://127.0.0.1/{k}.jpg",
                    status="fetched",
                    image_sha256=sha,
                )
                s.add(c)
                s.flush()
                s.add(Label(candidate_id=c.id, wnid=c.wnid, posterior=0.999, decision="accept"))
        app.settings.train_max_per_class = n  # keep every image: both sides encode all n
        app.settings.val_per_class = 0
        app.settings.test_per_class = 0
        run_curation(app, steps=("phash",))  # hashes are curation's job, not the export's
        choose_classes(app, "bench", n=4)
        paths = [(wnids[k % 4], app.blobs.path(app.blobs.put(d))) for k, d in enumerate(blobs)]
        t = time.perf_counter()
        pillow_loop(paths, tmpd / "plain")
        plain_s = time.perf_counter() - t
        t = time.perf_counter()
        rep = run_export(app, "bench", "ilsvrc", tmpd / "ours", resize=256, quality=90)
        ours_s = time.perf_counter() - t
        exported = sum(rep["counts"].values())
        app.close()
    print(f"plain Pillow loop: {n / plain_s:.1f} images/s ({plain_s:.2f} s)")
    print(
        f"imnet export (ilsvrc, {exported} images, manifest + devkit included): "
        f"{exported / ours_s:.1f} images/s ({ours_s:.2f} s)"
    )
    print(f"ratio imnet / plain = {(exported / ours_s) / (n / plain_s):.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--neardup-n", type=int, default=200_000)
    ap.add_argument("--radius", type=int, default=6)
    ap.add_argument("--export-n", type=int, default=400)
    ap.add_argument("--skip-imagededup", action="store_true")
    ap.add_argument(
        "--method",
        default="brute_force_cython",
        help="imagededup search_method: brute_force_cython (its default) or bktree",
    )
    ap.add_argument(
        "--peer-n",
        type=int,
        default=20_000,
        help="hashes given to imagededup (its brute force is quadratic: 200,000 would "
        "take hours here); imnet runs on the same subset and on all --neardup-n",
    )
    ap.add_argument("--only", choices=("neardup", "export"))
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (shared)")
    if args.only in (None, "neardup"):
        bench_neardup(args.neardup_n, args.radius, args.skip_imagededup, args.method, args.peer_n)
    if args.only in (None, "export"):
        bench_export(args.export_n)


if __name__ == "__main__":
    main()
