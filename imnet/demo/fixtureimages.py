"""The demo's fixture corpus: real packaged photographs turned into a small, messy web of images."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

# Two WordNet roots and six real leaf synsets under each (checked against WordNet 3.0 with nltk).
ROOTS = {"n02084071": "dog", "n03800933": "musical instrument"}
# wnid -> (root, lemmas used to answer search queries, photograph that stands in for the synset).
# The pixels are not dogs or guitars: each synset is represented by crops of ONE real photograph,
# so its true images are visually consistent and a short AlexNet run can tell the classes apart.
SYNSETS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "n02088364": ("n02084071", ("beagle",), "skimage:chelsea"),
    "n02099601": ("n02084071", ("golden retriever",), "skimage:coffee"),
    "n02106166": ("n02084071", ("border collie",), "skimage:astronaut"),
    "n02110958": ("n02084071", ("pug", "pug-dog"), "skimage:rocket"),
    "n02110185": ("n02084071", ("siberian husky",), "skimage:camera"),
    "n02085620": ("n02084071", ("chihuahua",), "skimage:immunohistochemistry"),
    "n02676566": ("n03800933", ("acoustic guitar",), "sklearn:china.jpg"),
    "n03272010": ("n03800933", ("electric guitar",), "sklearn:flower.jpg"),
    "n02787622": ("n03800933", ("banjo",), "skimage:hubble_deep_field"),
    "n03494278": (
        "n03800933",
        ("harmonica", "mouth organ", "harp", "mouth harp"),
        "skimage:retina",
    ),
    "n02672831": ("n03800933", ("accordion", "piano accordion", "squeeze box"), "skimage:brick"),
    "n04141076": ("n03800933", ("sax", "saxophone"), "skimage:stereo_motorcycle"),
}
# Photographs of nothing we search for: the "unrelated" images every real query also returns.
DISTRACTOR_PHOTOS = (
    "skimage:gravel",
    "skimage:grass",
    "skimage:moon",
    "skimage:coins",
    "skimage:cell",
    "skimage:clock",
)
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
TRUE_PER_SYNSET = 16  # times scale


@dataclass
class Item:
    """One URL of the fixture web: what it serves and which synset (if any) its bytes show."""

    name: str  # path under /img/
    kind: str  # true, neardup, dup, distractor, or broken_404/_truncated/_html/_tiny
    truth: str | None
    status: int = 200
    content_type: str = "image/jpeg"
    file: str | None = None  # file under the corpus dir holding the body (None for a 404)
    width: int = 0
    height: int = 0


@dataclass
class Corpus:
    """Every served URL plus, per synset, the ordered result list its queries page through."""

    seed: int
    scale: int
    items: dict[str, Item] = field(default_factory=dict)
    results: dict[str, list[str]] = field(default_factory=dict)  # wnid -> item names
    noise: list[str] = field(default_factory=list)  # results for queries that match nothing


class FixtureError(RuntimeError):
    """The fixture cannot be built here; the message says what to install."""


def _photo(spec: str) -> np.ndarray:
    """An RGB uint8 array of a photograph shipped inside scikit-image or scikit-learn."""
    pkg, name = spec.split(":", 1)
    try:
        if pkg == "sklearn":
            from sklearn.datasets import load_sample_image

            arr = load_sample_image(name)
        else:
            import skimage.data

            arr = getattr(skimage.data, name)()
    except ImportError as e:
        raise FixtureError(
            f"the demo's fixture web needs the photographs in scikit-image and scikit-learn "
            f"({e.name} is missing): pip install -e '.[demo]'"
        ) from None
    if isinstance(arr, tuple):  # stereo pairs: take the left view
        arr = arr[0]
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3].astype(np.uint8))


def _fashion_mnist(n: int, rng: random.Random) -> list[np.ndarray]:
    """n real 28x28 product photos from Debian's dataset-fashion-mnist, when it is installed."""
    if not FASHION_MNIST.exists():
        return []
    raw = gzip.decompress(FASHION_MNIST.read_bytes())
    count = int.from_bytes(raw[4:8], "big")
    imgs = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, 28, 28)
    return [imgs[rng.randrange(count)] for _ in range(n)]


def _encode(img: PILImage, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def _variant(photo: np.ndarray, rng: random.Random) -> PILImage:
    """A web-photo-like view of a photograph: random crop, maybe a flip, colour cast, rescale."""
    from PIL import Image, ImageOps

    h, w = photo.shape[:2]
    area = rng.uniform(0.2, 0.6) * h * w
    aspect = rng.uniform(0.75, 1.33)
    cw = int(min(w, max(48, (area * aspect) ** 0.5)))
    ch = int(min(h, max(48, (area / aspect) ** 0.5)))
    x, y = rng.randrange(0, w - cw + 1), rng.randrange(0, h - ch + 1)
    crop = photo[y : y + ch, x : x + cw].astype(np.float32)
    gains = np.array([rng.gauss(1.0, 0.07) for _ in range(3)], dtype=np.float32)
    crop = np.clip(crop * gains * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
    img = Image.fromarray(crop)
    if rng.random() < 0.5:
        img = ImageOps.mirror(img)
    short = rng.randint(160, 288)
    s = short / min(img.size)
    return img.resize(
        (max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.BICUBIC
    )


class _Builder:
    """Writes bodies into the corpus dir and registers the URLs that serve them."""

    def __init__(self, out: Path, corpus: Corpus) -> None:
        self.out, self.corpus, self.n = out, corpus, 0

    def add(
        self,
        kind: str,
        truth: str | None,
        body: bytes | None,
        *,
        status: int = 200,
        ctype: str = "image/jpeg",
        ext: str = "jpg",
        size: tuple[int, int] = (0, 0),
    ) -> str:
        self.n += 1
        name = f"{self.n:06d}-{hashlib.sha1(f'{self.corpus.seed}:{self.n}'.encode()).hexdigest()[:10]}.{ext}"
        file = None
        if body is not None:
            file = name
            (self.out / name).write_bytes(body)
        self.corpus.items[name] = Item(name, kind, truth, status, ctype, file, *size)
        return name

    def image(self, kind: str, truth: str | None, img: PILImage, rng: random.Random) -> str:
        if rng.random() < 0.08:  # a few PNGs: the web is not all JPEG
            return self.add(
                kind, truth, _encode(img, "PNG"), ctype="image/png", ext="png", size=img.size
            )
        return self.add(kind, truth, _encode(img, quality=rng.randint(80, 95)), size=img.size)


def build_corpus(out: Path, seed: int = 0, scale: int = 1) -> Corpus:
    """Generate the corpus into `out` (deterministic for seed and scale)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    corpus = Corpus(seed=seed, scale=scale)
    b = _Builder(out, corpus)
    n_true = TRUE_PER_SYNSET * scale
    true_imgs: dict[str, list[tuple[str, PILImage]]] = {}
    for wnid, (_root, _lemmas, spec) in SYNSETS.items():
        photo = _photo(spec)
        true_imgs[wnid] = []
        for _ in range(n_true):
            img = _variant(photo, rng)
            true_imgs[wnid].append((b.image("true", wnid, img, rng), img))
    distractor_photos = [_photo(s) for s in DISTRACTOR_PHOTOS]
    fmnist = _fashion_mnist(len(SYNSETS) * n_true, rng)

    def distractor() -> str:
        if fmnist and rng.random() < 0.6:
            arr = fmnist.pop()
            side = rng.randint(96, 192)
            img = (
                Image.fromarray(255 - arr)
                .convert("RGB")
                .resize((side, side), Image.Resampling.BICUBIC)
            )
        else:
            img = _variant(rng.choice(distractor_photos), rng)
        return b.image("distractor", None, img, rng)

    for wnid, (root, _lemmas, _spec) in SYNSETS.items():
        res = [name for name, _ in true_imgs[wnid]]
        for _name, img in rng.sample(true_imgs[wnid], max(1, n_true // 6)):
            # Near-duplicates: the same photo re-encoded harder and/or rescaled.
            small = img.resize(
                (round(img.width * 0.8), round(img.height * 0.8)), Image.Resampling.BICUBIC
            )
            alt = rng.choice([img, small])
            res.append(b.add("neardup", wnid, _encode(alt, quality=60), size=alt.size))
        for name, _ in rng.sample(true_imgs[wnid], max(1, n_true // 8)):
            item = corpus.items[name]  # exact duplicate: same bytes under another URL
            body = (out / name).read_bytes()
            res.append(
                b.add(
                    "dup",
                    wnid,
                    body,
                    ctype=item.content_type,
                    ext=name.rsplit(".", 1)[1],
                    size=(item.width, item.height),
                )
            )
        siblings = [w for w, v in SYNSETS.items() if v[0] == root and w != wnid]
        others = [w for w, v in SYNSETS.items() if v[0] != root]
        for _ in range(n_true * 4 // 5):  # related synsets: the commonest wrong answer
            name, _img = rng.choice(true_imgs[rng.choice(siblings)])
            res.append(name)
        for _ in range(n_true * 3 // 10):
            name, _img = rng.choice(true_imgs[rng.choice(others)])
            res.append(name)
        for _ in range(n_true * 2 // 5):
            res.append(distractor())
        for i in range(max(4, n_true // 5)):  # broken: 404, truncated JPEG, HTML, a tiny icon
            k = i % 4
            if k == 0:
                res.append(b.add("broken_404", None, None, status=404))
            elif k == 1:
                full = _encode(_variant(rng.choice(distractor_photos), rng), quality=90)
                res.append(b.add("broken_truncated", None, full[: len(full) * 3 // 5]))
            elif k == 2:
                html = b"<!doctype html><html><body><h1>Hotlinking not allowed</h1></body></html>"
                res.append(b.add("broken_html", None, html + f"<!-- {i} {wnid} -->".encode()))
            else:
                icon = Image.new("RGB", (16, 16), (rng.randrange(256), 90, 40))
                res.append(
                    b.add(
                        "broken_tiny",
                        None,
                        _encode(icon, "PNG"),
                        ctype="image/png",
                        ext="png",
                        size=(16, 16),
                    )
                )
        # Search engines rank true hits higher on average, but the order is mixed.
        res = list(dict.fromkeys(res))
        rng.shuffle(res)
        res.sort(key=lambda n: (corpus.items[n].truth != wnid) * rng.random() + rng.random() * 0.6)
        corpus.results[wnid] = res
    corpus.noise = [distractor() for _ in range(8)]
    return corpus


def truth_map(out: Path, corpus: Corpus) -> dict[str, str | None]:
    """sha256 of every served body -> the wnid it shows (None: no synset; broken bodies too)."""
    images: dict[str, str | None] = {}
    for item in corpus.items.values():
        if item.file is None:
            continue
        sha = hashlib.sha256((out / item.file).read_bytes()).hexdigest()
        images[sha] = item.truth if not item.kind.startswith("broken") else None
    return images


def load_or_build(root: Path, seed: int, scale: int) -> Corpus:
    """The corpus cached in root/corpus (rebuilt only when seed or scale changed)."""
    out = root / "corpus"
    index = root / "corpus.json"
    if index.exists():
        data = json.loads(index.read_text())
        if data["seed"] == seed and data["scale"] == scale:
            c = Corpus(seed=seed, scale=scale, results=data["results"], noise=data["noise"])
            c.items = {k: Item(**v) for k, v in data["items"].items()}
            if all(i.file is None or (out / i.file).exists() for i in c.items.values()):
                return c
    corpus = build_corpus(out, seed, scale)
    tmp = index.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "seed": seed,
                "scale": scale,
                "results": corpus.results,
                "noise": corpus.noise,
                "items": {k: asdict(v) for k, v in corpus.items.items()},
            }
        )
    )
    tmp.replace(index)
    return corpus
