"""Exact dedup rules (same synset / several synsets) and near-duplicate clustering in the database."""

from __future__ import annotations

from sqlalchemy import select

import curation
from curation.dedup import Claim, owner_of
from db.models import Candidate, Image
from tests.curation.images import encode, photo, photos
from tests.dbrows import add_candidate


def test_owner_rule_most_confident_then_wnid() -> None:
    a = Claim("n02", manual=False, posterior=0.99, votes_yes=3)
    b = Claim("n01", manual=False, posterior=0.99, votes_yes=3)
    c = Claim("n03", manual=False, posterior=0.999, votes_yes=2)
    m = Claim("n09", manual=True, posterior=None, votes_yes=0)
    assert owner_of([a, b]) == "n01"  # tie: smaller wnid
    assert owner_of([a, b, c]) == "n03"  # higher posterior
    assert owner_of([a, c, m]) == "n09"  # a manual decision beats any posterior


def test_exact_dedup_same_synset_and_shared_content(app) -> None:  # type: ignore[no-untyped-def]
    data = encode(photo("chelsea"), "JPEG")
    other = encode(photo("coffee"), "JPEG")
    with app.Session.begin() as s:
        first = add_candidate(s, app.blobs, "n02123045", data, decision=None)
        second = add_candidate(s, app.blobs, "n02123045", data, decision=None)  # crawler race
        add_candidate(s, app.blobs, "n02124075", data, decision=None)  # another synset
        add_candidate(s, app.blobs, "n02124075", other, decision=None)
    rep = curation.run_curation(app, steps=("dedup",))
    assert rep["dedup"] == {"duplicates_marked": 1, "contents_in_several_synsets": 1}
    with app.Session() as s:
        c2 = s.get(Candidate, second)
        assert (c2.status, c2.error) == ("duplicate", f"same_content: {first}")
        assert s.get(Candidate, first).status == "fetched"
        fetched = s.scalars(select(Candidate.wnid).where(Candidate.status == "fetched")).all()
        assert sorted(fetched) == ["n02123045", "n02124075", "n02124075"]
    assert curation.run_curation(app, steps=("dedup",))["dedup"]["duplicates_marked"] == 0


def test_near_duplicates_cluster_to_one_representative(app) -> None:  # type: ignore[no-untyped-def]
    big = photo("astronaut")  # 512 px: the representative (most pixels)
    small = big.resize((256, 256))
    requant = encode(big, "JPEG", quality=40)
    mirror = big.transpose(0)  # FLIP_LEFT_RIGHT
    unrelated = photos(6)[1:]
    with app.Session.begin() as s:
        add_candidate(s, app.blobs, "n10000001", encode(big, "PNG"), decision=None)
        add_candidate(s, app.blobs, "n10000002", encode(small, "PNG"), decision=None)
        add_candidate(s, app.blobs, "n10000002", requant, decision=None)
        add_candidate(s, app.blobs, "n10000003", encode(mirror, "PNG"), decision=None)
        for im in unrelated:
            add_candidate(s, app.blobs, "n10000003", encode(im, "PNG"), decision=None)
    rep = curation.run_curation(app, steps=("phash", "neardup"))
    from imnet.core.blobstore import sha256_hex

    rep_sha = sha256_hex(encode(big, "PNG"))
    with app.Session() as s:
        near = {sha: nd for sha, nd in s.execute(select(Image.sha256, Image.near_dup_of))}
    assert near[rep_sha] is None
    assert near[sha256_hex(encode(small, "PNG"))] == rep_sha
    assert near[sha256_hex(requant)] == rep_sha
    assert near[sha256_hex(encode(mirror, "PNG"))] is None  # mirrors only with flip
    assert sum(v is not None for v in near.values()) == 2
    assert rep["neardup"]["clusters"] == 1 and rep["neardup"]["near_duplicates"] == 2
    flip = curation.run_curation(app, steps=("neardup",), flip=True)
    assert flip["neardup"]["near_duplicates"] == 3
    with app.Session() as s:
        assert s.get(Image, sha256_hex(encode(mirror, "PNG"))).near_dup_of == rep_sha
