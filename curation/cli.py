"""`imnet curate`, `imnet classes ...` and `imnet export`: the curation stage's commands."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from imnet.core.argtypes import int_in

if TYPE_CHECKING:
    from imnet.core.app import App

STEP_CHOICES = ("dedup", "phash", "filter", "neardup", "all")


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "curate",
        help="exact dedup, perceptual hashes, quality filters, near-duplicates",
        description="Clean the harvested images before human verification. Steps: dedup (same "
        "content twice in one synset), phash (64-bit perceptual hash, stored once per image), "
        "filter (minimum side, aspect ratio, near-blank or single-colour, unreadable blobs; each "
        "rejection keeps its reason), neardup (clusters within --radius bits; all but one image "
        "of a cluster get near_dup_of). Every step resumes where it stopped. Several `imnet "
        "curate` processes, on one machine or many sharing the database and blob store, split "
        "the scan: each leases images in batches, and the last to finish clusters them.",
    )
    c.add_argument("step", nargs="?", default="all", choices=STEP_CHOICES, help="default: all")
    c.add_argument(
        "--radius", type=int_in(0, 64), default=None, help="Hamming radius (setting phash_radius)"
    )
    c.add_argument("--flip", action="store_true", help="also match horizontally mirrored images")
    c.add_argument(
        "--batch",
        type=int_in(1, 1 << 20),
        default=512,
        help="images leased and written at a time (default 512)",
    )
    c.add_argument("--json", action="store_true", help="print the full report as JSON")
    c.set_defaults(func=_curate)

    cl = sub.add_parser(
        "classes",
        help="class sets: import ILSVRC-2012 or choose N classes",
        description="Named class sets used by export: the real ILSVRC-2012 1000 classes, or N "
        "synsets chosen from the database so that none is an ancestor of another in WordNet and "
        "each has enough accepted images.",
    )
    csub = cl.add_subparsers(dest="classes_command", metavar="ACTION", required=True)
    imp = csub.add_parser(
        "import-ilsvrc2012",
        help="store the ILSVRC-2012 1000 classes as a set",
        description="Store the 1000 ILSVRC-2012 classes (class index = position in wnid order).",
    )
    imp.add_argument("--set", dest="set_name", default="ilsvrc2012", help="set name")
    imp.set_defaults(func=_import)
    ch = csub.add_parser(
        "choose",
        help="choose N non-nested classes with enough accepted images",
        description="Choose up to N synsets of the database under the given roots (default: "
        "all), most accepted images first, skipping any synset that is an ancestor or descendant "
        "of one already chosen; prints why every other synset was not chosen.",
    )
    ch.add_argument("--set", dest="set_name", required=True, help="set name to (re)write")
    ch.add_argument("--n", type=int_in(1, 1 << 20), required=True, help="how many classes")
    ch.add_argument("--root", action="append", default=[], metavar="WNID", help="repeatable")
    ch.add_argument(
        "--min-images", type=int_in(0), default=1, help="accepted images needed (default 1)"
    )
    ch.add_argument("--json", action="store_true", help="print the full report as JSON")
    ch.set_defaults(func=_choose)
    sh = csub.add_parser("show", help="list a class set", description="List a stored class set.")
    sh.add_argument("--set", dest="set_name", required=True, help="set name")
    sh.add_argument("--json", action="store_true", help="machine-readable output")
    sh.set_defaults(func=_show)

    e = sub.add_parser(
        "export",
        help="write an ILSVRC-style or WebDataset export of a class set",
        description="Export the accepted images of a class set with deterministic hash-based "
        "splits (per class <= train_max_per_class train, val_per_class val, test_per_class test; "
        "near-duplicates of val/test images removed from train), a manifest.jsonl and SHA256SUMS. "
        "The same database and settings give byte-identical files. Originals are never modified. "
        "Every class gets exactly its val and test quota, or the export stops naming the classes "
        "short of images. Also written: ATTRIBUTION.txt (every image's author and licence) and "
        "DATASHEET.md.",
    )
    e.add_argument("--set", dest="set_name", required=True, help="class set name")
    e.add_argument("--format", dest="fmt", required=True, choices=("ilsvrc", "webdataset"))
    e.add_argument("--out", required=True, help="output directory (created or replaced)")
    e.add_argument(
        "--resize", type=int_in(0, 1 << 16), default=None, help="shorter side in px (0 = originals)"
    )
    e.add_argument(
        "--quality", type=int_in(1, 100), default=None, help="JPEG quality (setting export_quality)"
    )
    e.add_argument(
        "--seed", type=int_in(0, 2**63 - 1), default=None, help="split seed (setting split_seed)"
    )
    e.add_argument("--name", default=None, help="export record name (default: set-format-dir)")
    e.add_argument(
        "--workers",
        type=int_in(1, 1024),
        default=None,
        help="encoding processes (setting curation_workers; 0 there = one per CPU)",
    )
    e.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="encode only part I of N (N invocations, any machines sharing the database, blob "
        "store and output folder); the one that finds nothing left writes the manifest; rerun "
        "without --shard to finish whatever is left",
    )
    e.add_argument(
        "--val-layout",
        choices=("folders", "flat"),
        default="folders",
        help="ilsvrc: val/<wnid>/ (default; torchvision ImageNet/ImageFolder, timm, Hugging Face "
        "imagefolder) or ILSVRC's flat val/ (labels in the devkit ground truth)",
    )
    e.add_argument(
        "--with-test-labels",
        action="store_true",
        help="keep the test labels (a private export); by default test images ship unlabelled",
    )
    e.add_argument(
        "--licenses",
        default=None,
        metavar="LIST",
        help="export only images under these licences, e.g. cc0,cc-by,cc-by-sa (families or "
        "SPDX ids; default: all)",
    )
    e.add_argument(
        "--drop-short-classes",
        action="store_true",
        help="leave out classes short of their val/test quota instead of stopping",
    )
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.set_defaults(func=_export)


def _user_error(e: Exception) -> Exception:
    from imnet.core.console import UserError

    return UserError(str(e))


def _curate(args: argparse.Namespace, app: App) -> int:
    from curation.pipeline import STEPS, run_curation
    from imnet.core.console import print_json

    steps = STEPS if args.step == "all" else (args.step,)
    if args.batch < 1:
        raise _user_error(ValueError("--batch must be at least 1"))
    try:
        report = run_curation(app, steps, radius=args.radius, flip=args.flip, batch=args.batch)
    except (ValueError, RuntimeError) as e:
        raise _user_error(e) from None
    if args.json:
        print_json(report)
        return 0
    if "dedup" in report:
        d = report["dedup"]
        print(
            f"dedup: {d['duplicates_marked']} same-synset duplicates marked, "
            f"{d['contents_in_several_synsets']} contents under several synsets (resolved at export)"
        )
    if "scan" in report:
        sc = report["scan"]
        print(
            f"scan: {sc['scanned']} images, {sc['hashed']} hashed, {sc['ok']} ok, "
            f"{sc['rejected']} rejected, {len(sc['errors'])} left unchecked by errors"
        )
        for err in sc["errors"][:10]:
            print(f"  error: {err}")
        if sc.get("lease_lost"):
            print(f"  {sc['lease_lost']} results dropped: their lease ran out and moved on")
    if report.get("neardup", {}).get("deferred"):
        print(
            f"neardup: deferred, other processes still scan {report['neardup']['held_by_others']} "
            "images (the last to finish clusters; else rerun `imnet curate neardup`)"
        )
    elif "neardup" in report:
        n = report["neardup"]
        print(
            f"neardup: {n['hashed_images']} hashed images, {n['pairs']} pairs within {n['radius']} "
            f"bits, {n['clusters']} clusters, {n['near_duplicates']} marked near_dup_of"
        )
    t = report["totals"]
    print(
        f"totals: images {_counts(t['images_by_quality'])}; rejected by reason "
        f"{_counts(t['rejected_by_reason'])}; {t['near_duplicates']} near duplicates, "
        f"{t['unhashed']} unhashed"
    )
    return 0


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"


def _import(args: argparse.Namespace, app: App) -> int:
    from curation.classes import ClassError, import_ilsvrc2012

    try:
        n = import_ilsvrc2012(app, args.set_name)
    except ClassError as e:
        raise _user_error(e) from None
    print(f"class set {args.set_name!r}: {n} ILSVRC-2012 classes stored")
    return 0


def _choose(args: argparse.Namespace, app: App) -> int:
    from curation.classes import ClassError, choose_classes
    from imnet.core.console import print_json

    try:
        rep = choose_classes(
            app, args.set_name, args.n, roots=args.root or None, min_images=args.min_images
        )
    except ClassError as e:
        raise _user_error(e) from None
    if args.json:
        print_json(rep)
        return 0
    print(f"class set {rep['set']!r}: {len(rep['chosen'])} of {rep['requested']} classes chosen")
    for w in rep["chosen"]:
        print(f"  {w}  {rep['counts'][w]} accepted images")
    if rep["rejected"]:
        print("not chosen:")
        for w, reason in rep["rejected"].items():
            print(f"  {w}  {reason}")
    if rep["short_by"]:
        print(f"warning: {rep['short_by']} classes short of --n {rep['requested']}")
    return 0


def _show(args: argparse.Namespace, app: App) -> int:
    from curation.classes import ClassError, show_classes
    from imnet.core.console import print_json

    try:
        rows = show_classes(app, args.set_name)
    except ClassError as e:
        raise _user_error(e) from None
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        print(f"{r['class_index']:5d}  {r['wnid']}  {r['accepted']:6d}  {r['words']}")
    return 0


def _export(args: argparse.Namespace, app: App) -> int:
    from curation.export.run import ExportError, run_export
    from imnet.core.console import print_json

    s = app.settings
    try:
        rep: dict[str, Any] = run_export(
            app,
            args.set_name,
            args.fmt,
            args.out,
            resize=s.export_resize if args.resize is None else args.resize,
            quality=s.export_quality if args.quality is None else args.quality,
            seed=s.split_seed if args.seed is None else args.seed,
            name=args.name,
            workers=args.workers,
            shard=args.shard,
            val_layout=args.val_layout,
            with_test_labels=args.with_test_labels,
            licenses=args.licenses,
            drop_short_classes=args.drop_short_classes,
        )
    except ExportError as e:
        raise _user_error(e) from None
    if args.json:
        print_json(rep)
        return 0
    if rep["status"] != "complete" or "counts" not in rep:
        left = rep.get("pending", 0)
        rest = f"{left} items left to other shards" if left else "finished by another run"
        print(f"export {rep['name']!r}: this part is done ({rep.get('encoded', 0)} new); {rest}")
        return 0
    c = rep["counts"]
    print(f"export {rep['name']!r} ({rep['format']}) -> {rep['path']}")
    print(
        f"  {rep['classes']} classes; train {c['train']}, val {c['val']}, test {c['test']} images"
    )
    print(f"  manifest sha256 {rep['manifest_sha256']}")
    print(f"  licences: {rep['licenses']}")
    print(f"  credits in {rep['attribution']}, datasheet {rep['datasheet']}")
    if rep["dropped_images"]:
        print(f"  left out: {rep['dropped_images']}")
    for w, reason in rep["dropped_classes"].items():
        print(f"  class {w} left out: {reason}")
    return 0
