"""`imnet demo`: every stage end to end on a loopback fixture web, resumable, with a report."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imnet.core.app import App
from imnet.core.argtypes import int_in
from imnet.core.settings import Settings
from imnet.demo.report import format_footer, format_report, format_section

DEFAULT_SCALE = 1
# Enough for the small AlexNet to leave chance on the fixture (it needs a few hundred SGD steps).
DEFAULT_EPOCHS = 30


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on a local fixture web (a few minutes on a laptop)",
        description="Run every stage end to end on a loopback fixture web: 12 real WordNet "
        "synsets under two roots, an Openverse-compatible search API with mostly wrong, duplicated "
        "and broken results, the self-hosted MTurk server with simulated workers, consensus, "
        "class selection, ilsvrc and webdataset exports, a short AlexNet run on CPU and its "
        "evaluation. Prints a report per stage and writes WORKDIR/report.json. Rerunning in the "
        "same workdir resumes: finished stages are skipped (a finished demo reruns as a no-op), "
        "nothing is fetched twice; the same --seed gives the same figures anywhere. Uses SQLite and "
        "blobs under WORKDIR unless IMNET_DATABASE_URL / IMNET_BLOB_URL (or the global flags) "
        "point elsewhere.",
    )
    p.add_argument(
        "--scale",
        type=int_in(1, 1000),
        default=DEFAULT_SCALE,
        metavar="N",
        help=f"fixture size multiplier: 16*N true images per synset (default {DEFAULT_SCALE})",
    )
    p.add_argument(
        "--workdir",
        default=None,
        metavar="DIR",
        help="where the demo keeps everything (default: <data_dir>/demo)",
    )
    p.add_argument(
        "--epochs",
        type=int_in(1, 100_000),
        default=DEFAULT_EPOCHS,
        metavar="N",
        help=f"AlexNet epochs on CPU (default {DEFAULT_EPOCHS})",
    )
    p.add_argument(
        "--seed", type=int_in(0, 2**32 - 1), default=0, help="fixture and split seed (default 0)"
    )
    p.add_argument("--quiet", action="store_true", help="print only the final report")
    p.add_argument(
        "--serve-fixture",
        action="store_true",
        help="only serve the fixture web (search API, images, truth.json, urls.tsv in WORKDIR) "
        "until stopped: the README's Tour runs against it offline",
    )
    p.add_argument(
        "--port",
        type=int_in(0, 65535),
        default=None,
        help="the fixture web's port (with --serve-fixture)",
    )
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace, app: App) -> int:
    from imnet.core.console import UserError
    from imnet.demo.fixtureimages import FixtureError

    if args.scale < 1 or args.epochs < 1:
        raise UserError("--scale and --epochs must be at least 1")
    workdir = Path(args.workdir or Path(app.settings.data_dir) / "demo")
    if args.serve_fixture:
        from imnet.demo.serve_fixture import serve_fixture

        try:
            return serve_fixture(workdir, args.seed, args.scale, args.port)
        except FixtureError as e:
            raise UserError(str(e)) from None
    if not args.verbose:
        # The stages log every step at INFO; the demo prints its own report instead.
        logging.getLogger().setLevel(logging.WARNING)
    try:
        report = run_demo(
            app.settings,
            workdir,
            scale=args.scale,
            epochs=args.epochs,
            seed=args.seed,
            verbose=not args.quiet,
        )
    except (DemoError, FixtureError) as e:
        raise UserError(str(e)) from None
    if args.quiet:
        print(format_report(report))
    return 0 if report["ok"] else 1


class DemoError(RuntimeError):
    """A stage failed; the message names the stage and the cause."""


def demo_settings(base: Settings, workdir: Path) -> Settings:
    """The user's settings with the demo's local defaults where the user set nothing."""
    workdir = workdir.resolve()
    return base.replace(
        data_dir=str(workdir),
        database_url=base.database_url or f"sqlite:///{workdir / 'imnet.sqlite3'}",
        blob_url=base.blob_url or f"file://{workdir / 'blobs'}",
        # The fixture web and the MTurk server live on loopback.
        allow_private_hosts=True,
    )


def run_demo(
    base: Settings,
    workdir: Path,
    scale: int = DEFAULT_SCALE,
    epochs: int = 1,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the demo in workdir; returns the report (also written to report.json)."""
    from imnet.demo import stages as st
    from imnet.demo.fixtureweb import corpus_summary, start_fixture_web

    t0 = time.time()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    state_path = workdir / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state.get("params") not in (None, {"scale": scale, "seed": seed}):
        raise DemoError(f"{workdir} holds a demo with {state['params']}; use another --workdir")
    state["params"] = {"scale": scale, "seed": seed}
    state["runs"] = state.get("runs", 0) + 1
    _save(state_path, state)

    out = (lambda line: print(line, flush=True)) if verbose else (lambda line: None)
    if slow := busy_machine_note():
        print(slow, flush=True)  # even with --quiet: it explains a slow run before it happens
    web = start_fixture_web(workdir / "fixture", seed=seed, scale=scale)
    truth = json.loads(web.truth_path.read_text())["images"]
    report: dict[str, Any] = {
        "workdir": str(workdir),
        "run": state["runs"],
        "scale": scale,
        "stages": {},
        "stage_order": [],
        "ok": False,
    }
    app = mturk_app = None
    mturk = None
    try:
        settings = demo_settings(base, workdir).replace(
            source_openverse_url=f"{web.url}/v1/images/",
            # Small splits in ILSVRC-like proportions: a class has ~16*scale true images, and
            # the hash-based split puts an image in val with odds val / (val + test + train max).
            val_per_class=3 * scale,
            test_per_class=2 * scale,
            train_max_per_class=12 * scale,
            consensus_initial_subset=10 * scale,
            # Simulated workers answer in well under a second; a short deadline frees the HIT
            # slots that a killed run's workers had accepted soon after the rerun starts.
            mturk_assignment_duration=60,
            export_resize=256,
        )
        from imnet.demo.verify import start_mturk

        mturk, mturk_app = start_mturk(settings, workdir)
        settings = settings.replace(mturk_endpoint_url=mturk.url)
        app = App(settings)
        _prepare_blobs(app)
        ctx = st.Ctx(
            app=app,
            settings=settings,
            workdir=workdir,
            truth=truth,
            synsets=list(web.synsets),
            roots=list(web.roots),
            scale=scale,
            epochs=epochs,
            seed=seed,
            state=state,
            mturk_url=mturk.url,
            out=out,
        )
        report["database"] = settings.masked()["database_url"]
        report["blobs"] = settings.resolved_blob_url()
        report["fixture"] = {"url": web.url, **corpus_summary(workdir / "fixture")}
        fx = report["fixture"]
        out(
            f"fixture web {web.url}: {len(web.synsets)} synsets under {len(web.roots)} roots, "
            f"{fx['search_results']} search results ({fx.get('results_right', 0)} right, "
            f"{fx.get('results_related_synset', 0)} related synsets, "
            f"{fx.get('results_other_root_synset', 0) + fx.get('results_unrelated_photo', 0)} "
            f"unrelated, {fx.get('results_right_dup', 0) + fx.get('results_right_neardup', 0)} "
            f"duplicates, {fx.get('results_broken', 0)} broken)"
        )
        out(f"database {report['database']}, blobs {report['blobs']}")
        released = st.release_dead_leases(app)
        if released:
            out(f"resume: {released} rows leased by a killed run made claimable again")
        # A finished stage is not run again: its section comes from state.json, so a rerun of a
        # finished demo publishes, exports and trains nothing and reports the same figures.
        done: dict[str, Any] = state.setdefault("done", {})
        if state.get("trained_epochs") != epochs:  # --epochs changed: train (and score) again
            done.pop("train", None)
            done.pop("evaluate", None)
        for name, fn in _stages():
            out(f"== {name}")
            if name in done:
                report["stages"][name] = done[name]
                report["stage_order"].append(name)
                report.setdefault("skipped_stages", []).append(name)
                out(format_section(name, done[name]) + "  (finished in an earlier run)")
                continue
            t = time.time()
            try:
                section = fn(ctx)
            except Exception as e:
                report["stages"][name] = {"error": f"{type(e).__name__}: {e}"}
                report["failed_stage"] = name
                raise DemoError(f"stage {name} failed: {type(e).__name__}: {e}") from e
            section["seconds"] = round(time.time() - t, 2)
            report["stages"][name] = section
            report["stage_order"].append(name)
            out(format_section(name, section))
            done[name] = section
            if name == "train":
                state["trained_epochs"] = epochs
            _save(state_path, state)
        report["fixture_requests"] = dict(web.stats)
        report["ok"] = True
    finally:
        report["fixture_requests"] = dict(web.stats)
        report["wall_seconds"] = round(time.time() - t0, 1)
        _save(workdir / "report.json", report)
        if app is not None:
            app.close()
        if mturk is not None:
            mturk.stop()
        if mturk_app is not None:
            mturk_app.close()
        web.stop()
    out(format_footer(report))
    return report


def busy_machine_note() -> str | None:
    """One line when other work already keeps every CPU busy (the demo then takes longer)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0]
    if load <= (cores or 1):
        return None
    return (
        f"note: load average {load:.1f} on {cores} CPUs: other processes are busy, so the demo "
        "will take longer than its usual minute"
    )


def _stages() -> list[tuple[str, Callable[..., dict[str, Any]]]]:
    from imnet.demo import export as ex
    from imnet.demo import stages as st
    from imnet.demo import verify as ver

    return [
        ("synsets+queries", st.stage_synsets),
        ("search", st.stage_search),
        ("crawl", st.stage_crawl),
        ("curate", st.stage_curate),
        ("gold", st.stage_gold),
        ("verify", ver.stage_verify),
        ("consensus", ver.stage_consensus),
        ("classes", ex.stage_classes),
        ("export", ex.stage_export),
        ("train", ex.stage_train),
        ("evaluate", ex.stage_evaluate),
    ]


def _prepare_blobs(app: App) -> None:
    from imnet.core.blobstore import S3Store

    if isinstance(app.blobs, S3Store):
        app.blobs.ensure_bucket()


def _save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
