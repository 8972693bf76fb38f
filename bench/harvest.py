"""Benchmark: `imnet harvest crawl` vs img2dataset on the same loopback web (100 ms latency).

    python bench/harvest.py [--n 4000] [--latency 0.1] [--processes 2]

Serves N Flickr-like JPEGs (50-200 KB; about 5% bad responses: 404, 500, truncated JPEG, HTML sent
as image/jpeg, 1x1 GIF) from one loopback server process with added latency per request, then
runs img2dataset at its fastest setting (`--resize_mode no --disable_all_reencoding True`, no
decode) and `imnet harvest crawl` (full decode, sha256 blobs, every outcome in the database) on the
same URLs, one after the other, and prints images/s for both and the ratio. img2dataset lives in
its own venv (.venv-bench-harvest), created here if missing. Nothing leaves 127.0.0.1.

Both tools get the same policy: no retries (img2dataset `--retries 0`, imnet `crawl_retries=0`;
`--imnet-retries 2` shows imnet's default), 64 requests in flight per process, 2 processes. Each
run starts after os.sync(), so neither pays for writing back the other's files. img2dataset
counts truncated and HTML bodies as successes; "valid" counts only URLs that serve a good JPEG.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-bench-harvest"
WNID = "n01440764"

sys.path.insert(0, str(ROOT / "bench"))
from _harvestweb import kind_of, serve  # noqa: E402


def _child_cpu() -> float:
    """CPU seconds (user + system) used so far by finished child processes."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far (Linux /proc), else 0."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ensure_venv() -> Path:
    exe = VENV / "bin" / "img2dataset"
    if not exe.exists():
        print(f"creating {VENV} with img2dataset (benchmark-only peer)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "img2dataset"], check=True)
    return exe


def run_img2dataset(exe: Path, urls_txt: Path, out: Path, processes: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
    cmd = [
        str(exe),
        "--url_list",
        str(urls_txt),
        "--input_format",
        "txt",
        "--output_folder",
        str(out),
        "--output_format",
        "files",
        "--processes_count",
        str(processes),
        "--thread_count",
        os.environ.get("XX_THREADS", "64"),
        "--resize_mode",
        "no",
        "--disable_all_reencoding",
        "True",
        "--min_image_size",
        "32",
        "--max_image_area",
        "40e6",
        "--timeout",
        "10",
        "--retries",
        "0",
        "--number_sample_per_shard",
        "1000",
        "--enable_wandb",
        "False",
    ]
    # Start from clean page cache: the other tool's just-written files are not flushed on our time.
    os.sync()
    t0, c0 = time.time(), _child_cpu()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, cpu = time.time() - t0, _child_cpu() - c0
    if r.returncode != 0:
        raise SystemExit(f"img2dataset failed:\n{r.stderr[-3000:]}")
    ok = sum(
        json.loads(Path(p).read_text()).get("successes", 0)
        for p in glob.glob(str(out / "*_stats.json"))
    )
    # img2dataset does not decode, so it keeps truncated JPEGs and HTML as successes; count the
    # images that really are images (their URL serves a good JPEG) as well.
    valid = 0
    for p in glob.glob(str(out / "*" / "*.json")):
        meta = json.loads(Path(p).read_text())
        if meta.get("status") == "success":
            i = int(meta["url"].rsplit("/", 1)[1].split(".")[0])
            valid += kind_of(i) == "ok"
    return {
        "images": ok,
        "valid_images": valid,
        "wall_s": round(wall, 2),
        "images_per_s": round(ok / wall, 1),
        "valid_images_per_s": round(valid / wall, 1),
        "cpu_s": round(cpu, 2),
        "command": " ".join(cmd[1:]),
    }


def run_imnet(
    lines: Path, work: Path, processes: int, db_url: str | None, retries: int = 0
) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    env = dict(
        os.environ,
        IMNET_ALLOW_PRIVATE_HOSTS="1",
        # All URLs share one loopback host; img2dataset has no per-host limit either.
        IMNET_CRAWL_PER_HOST="64",
        IMNET_CRAWL_CONCURRENCY="64",
        # By default the same retry policy as img2dataset's --retries 0 above. With imnet's own
        # default (--imnet-retries 2: 5xx retried after 0.5 s, then 1 s) the 500s among the last
        # URLs hold the end of the run ~1.8 s with idle CPUs, a quarter of this short run.
        IMNET_CRAWL_RETRIES=str(retries),
    )
    g = [sys.executable, "-m", "imnet", "--data-dir", str(work)]
    if db_url:
        g += ["--database-url", db_url]
    subprocess.run([*g, "synsets", "add", WNID], env=env, check=True, capture_output=True)
    t0 = time.time()
    subprocess.run(
        [*g, "harvest", "import-urls", str(lines)], env=env, check=True, capture_output=True
    )
    t_import = time.time() - t0
    stats = work / "stats.json"
    os.sync()
    t0, c0 = time.time(), _child_cpu()
    r = subprocess.run(
        [
            *g,
            "harvest",
            "crawl",
            "--processes",
            str(processes),
            "--no-progress",
            "--stats-json",
            str(stats),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    wall, cpu = time.time() - t0, _child_cpu() - c0
    if r.returncode != 0:
        raise SystemExit(f"imnet harvest crawl failed:\n{r.stderr[-3000:]}")
    s = json.loads(stats.read_text())
    return {
        "images": s["images"],
        "wall_s": round(wall, 2),
        "images_per_s": round(s["images"] / wall, 1),
        "import_s": round(t_import, 2),
        "cpu_s": round(cpu, 2),
        "status": s["status"],
        "reasons": s["reasons"],
        "command": f"imnet harvest crawl --processes {processes}",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4000, help="URLs (default %(default)s)")
    ap.add_argument("--latency", type=float, default=0.1, help="seconds added per request")
    ap.add_argument("--processes", type=int, default=2, help="processes for both tools")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "harvest"))
    ap.add_argument("--database-url", default=None, help="imnet database (default: SQLite)")
    ap.add_argument("--skip-img2dataset", action="store_true")
    ap.add_argument(
        "--imnet-retries",
        type=int,
        default=0,
        help="imnet's crawl_retries (default 0, as img2dataset's --retries 0; imnet's own is 2)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="alternating runs of both tools")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port-file", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.n, a.latency, a.port_file)
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    port_file = out / "port"
    port_file.unlink(missing_ok=True)
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            "--n",
            str(a.n),
            "--latency",
            str(a.latency),
            "--port-file",
            str(port_file),
        ]
    )
    try:
        deadline = time.time() + 120
        while not port_file.exists() or not port_file.read_text().strip():
            if server.poll() is not None or time.time() > deadline:
                raise SystemExit("the loopback web did not start")
            time.sleep(0.2)
        port = int(port_file.read_text())
        urls = [f"http://127.0.0.1:{port}/img/{i}.jpg" for i in range(a.n)]
        (out / "urls.txt").write_text("\n".join(urls) + "\n")
        (out / "urls.tsv").write_text("".join(f"{WNID}\t{u}\n" for u in urls))
        good = sum(kind_of(i) == "ok" for i in range(a.n))
        print(
            f"loopback web: {a.n} URLs ({good} good), {a.latency * 1000:.0f} ms latency, "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        res: dict = {"n": a.n, "good": good, "latency_s": a.latency, "runs": []}
        exe = None if a.skip_img2dataset else ensure_venv()
        for rep in range(a.repeat):
            # Alternate the tools so slow phases of a shared machine hit both alike.
            run: dict = {}
            if exe is not None:
                s0 = _proc_cpu(server.pid)
                i2d = run_img2dataset(exe, out / "urls.txt", out / "i2d", a.processes)
                i2d["server_cpu_s"] = round(_proc_cpu(server.pid) - s0, 2)
                run["img2dataset"] = i2d
                print(
                    f"[{rep + 1}] img2dataset (no decode, keeps originals): {i2d['images']} "
                    f"images ({i2d['valid_images']} valid) in {i2d['wall_s']} s = "
                    f"{i2d['images_per_s']} images/s ({i2d['valid_images_per_s']} valid/s), "
                    f"{i2d['cpu_s']} CPU s (server {i2d['server_cpu_s']} CPU s)",
                    flush=True,
                )
            s0 = _proc_cpu(server.pid)
            im = run_imnet(
                out / "urls.tsv", out / "imnet", a.processes, a.database_url, a.imnet_retries
            )
            # Includes the server's share of import-urls (one robots.txt fetch: none).
            im["server_cpu_s"] = round(_proc_cpu(server.pid) - s0, 2)
            run["imnet"] = im
            print(
                f"[{rep + 1}] imnet harvest crawl (full decode, DB, blobs): {im['images']} images "
                f"in {im['wall_s']} s = {im['images_per_s']} images/s, {im['cpu_s']} CPU s "
                f"(server {im['server_cpu_s']} CPU s) "
                f"(import-urls {im['import_s']} s, not counted)",
                flush=True,
            )
            print(f"    imnet outcomes: {im['status']}  reasons: {im['reasons']}")
            if exe is not None:
                run["ratio"] = round(im["images_per_s"] / max(i2d["images_per_s"], 1e-9), 2)
                run["ratio_valid"] = round(
                    im["images_per_s"] / max(i2d["valid_images_per_s"], 1e-9), 2
                )
                print(
                    f"    ratio imnet / img2dataset: {run['ratio']:.2f}x "
                    f"(valid images only: {run['ratio_valid']:.2f}x)",
                    flush=True,
                )
            res["runs"].append(run)
        if exe is not None:
            best_i2d = max(r["img2dataset"]["images_per_s"] for r in res["runs"])
            best_i2d_valid = max(r["img2dataset"]["valid_images_per_s"] for r in res["runs"])
            best_im = max(r["imnet"]["images_per_s"] for r in res["runs"])
            res["ratio_of_best"] = round(best_im / max(best_i2d, 1e-9), 2)
            res["ratio_of_best_valid"] = round(best_im / max(best_i2d_valid, 1e-9), 2)
            ratios = sorted(r["ratio"] for r in res["runs"])
            res["median_ratio"] = ratios[len(ratios) // 2]
            print(
                f"best of {a.repeat}: img2dataset {best_i2d} images/s ({best_i2d_valid} valid/s), "
                f"imnet {best_im} images/s, ratio {res['ratio_of_best']:.2f}x "
                f"(valid only {res['ratio_of_best_valid']:.2f}x); median of paired runs "
                f"{res['median_ratio']:.2f}x"
            )
        (out / "result.json").write_text(json.dumps(res, indent=2))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
