"""Small generated exports (ilsvrc or webdataset layout) with learnable classes, for tests and bench."""

from __future__ import annotations

import hashlib
import io
import json
import math
import tarfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

# Distinct base colours (RGB) and stripe angles per class, so a few epochs can separate them.
_COLOURS = [
    (200, 40, 40),
    (40, 160, 60),
    (50, 70, 200),
    (220, 200, 40),
    (160, 60, 180),
    (40, 190, 190),
    (240, 140, 30),
    (120, 120, 120),
]


def make_image(label: int, index: int, size: int, seed: int = 0) -> bytes:
    """A JPEG of `size` x `size` (or size x 1.25 size): class colour, class stripe angle, noise."""
    from PIL import Image

    rng = np.random.default_rng([seed, label, index])
    h, w = size, size if index % 3 else int(size * 1.25)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = math.pi * (label % 4) / 4 + rng.normal(0, 0.05)
    period = 6 + 3 * (label // 4 % 2) + rng.uniform(-0.5, 0.5)
    stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    base = np.array(_COLOURS[label % len(_COLOURS)], np.float32) * rng.uniform(0.8, 1.2)
    img = base[None, None, :] * (0.75 + 0.25 * stripes[..., None])
    img += rng.normal(0, 12, size=img.shape)
    arr = np.clip(img, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _job(a: tuple[int, int, int, int]) -> bytes:
    return make_image(*a)


def make_export(
    root: str | Path,
    classes: int = 4,
    train_per_class: int = 20,
    val_per_class: int = 5,
    size: int = 64,
    fmt: str = "ilsvrc",
    seed: int = 0,
    processes: int = 1,
) -> Path:
    """Writes an export in CONTRACTS.md's `ilsvrc` layout (or `webdataset` shards) under root."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    wnids = [f"n{10000000 + 1111 * c:08d}" for c in range(classes)]
    jobs = [(c, i, size, seed) for c in range(classes) for i in range(train_per_class)]
    vjobs = [(c, 100000 + i, size, seed) for i in range(val_per_class) for c in range(classes)]
    if processes > 1:
        with ProcessPoolExecutor(processes) as ex:
            datas = list(ex.map(_job, jobs + vjobs, chunksize=64))
    else:
        datas = [_job(j) for j in jobs + vjobs]
    train, val = datas[: len(jobs)], datas[len(jobs) :]
    (root / "LOC_synset_mapping.txt").write_text(
        "".join(f"{w} synthetic class {i}\n" for i, w in enumerate(wnids))
    )
    if fmt == "webdataset":
        for split, js, ds in (("train", jobs, train), ("val", vjobs, val)):
            with tarfile.open(root / f"{split}-000000.tar", "w") as tf:
                for k, ((c, _i, _, _), data) in enumerate(zip(js, ds, strict=True)):
                    meta = json.dumps(
                        {"wnid": wnids[c], "sha256": hashlib.sha256(data).hexdigest()}
                    )
                    for ext, payload in (
                        ("jpg", data),
                        ("cls", str(c).encode()),
                        ("json", meta.encode()),
                    ):
                        info = tarfile.TarInfo(f"{split}_{k:08d}.{ext}")
                        info.size = len(payload)
                        tf.addfile(info, io.BytesIO(payload))
        return root
    manifest = []
    for (c, i, _, _), data in zip(jobs, train, strict=True):
        d = root / "train" / wnids[c]
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{wnids[c]}_{i}.JPEG"
        p.write_bytes(data)
        manifest.append({"path": str(p.relative_to(root)), "split": "train", "class_index": c})
    (root / "val").mkdir(exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    gt, sol = [], ["ImageId,PredictionString"]
    for k, ((c, _, _, _), data) in enumerate(zip(vjobs, val, strict=True)):
        name = f"ILSVRC2012_val_{k + 1:08d}"
        (root / "val" / f"{name}.JPEG").write_bytes(data)
        gt.append(str(c + 1))
        sol.append(f"{name},{wnids[c]} 0 0 {size - 1} {size - 1}")
        manifest.append({"path": f"val/{name}.JPEG", "split": "val", "class_index": c})
    (root / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(gt) + "\n")
    (root / "LOC_val_solution.csv").write_text("\n".join(sol) + "\n")
    (root / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    return root
