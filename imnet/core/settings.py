"""Resolved settings: built-in defaults < imnet.toml < IMNET_* environment < command-line flags."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A setting is unknown or malformed; the message is one line meant for the user."""


SECRET_KEYS = {
    "s3_secret_key",
    "mturk_secret_key",
    "mturk_server_keys",
    "flickr_api_key",
    "openverse_token",
}


@dataclass
class Settings:
    """Every knob of imnet. Keys are flat; in imnet.toml a table `[a] b = 1` means key `a_b`."""

    data_dir: str = "./imnet-data"
    # Empty means: SQLite file `<data_dir>/imnet.sqlite3`.
    database_url: str = ""
    # Empty means: file://<data_dir>/blobs
    blob_url: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    log_level: str = "INFO"

    # harvest
    user_agent: str = "imnet/0.1 (+https://github.com/imnet/imnet; research dataset builder)"
    allow_private_hosts: bool = False
    crawl_concurrency: int = 64
    crawl_per_host: int = 16
    crawl_host_delay: float = 0.0
    crawl_connect_timeout: float = 10.0
    crawl_read_timeout: float = 30.0
    crawl_retries: int = 2
    crawl_max_redirects: int = 5
    crawl_max_bytes: int = 20_000_000
    crawl_max_pixels: int = 89_478_485
    crawl_min_side: int = 32
    crawl_lease_seconds: float = 300.0
    crawl_respect_robots: bool = True
    flickr_api_key: str = ""
    openverse_token: str = ""
    query_languages: str = ""
    # harvest: search sources (base URLs are settings so tests and the demo point them at loopback)
    source_openverse_url: str = "https://api.openverse.org/v1/images/"
    source_wikimedia_url: str = "https://commons.wikimedia.org/w/api.php"
    source_flickr_url: str = "https://api.flickr.com/services/rest/"
    search_timeout: float = 20.0
    search_retries: int = 3
    search_max_wait: float = 60.0
    query_translation_file: str = ""
    # harvest: crawler extras
    crawl_allowed_networks: str = ""
    crawl_total_timeout: float = 120.0
    crawl_batch: int = 256
    crawl_decode_processes: int = 0
    # Decode threads per crawl process; 0 decodes in the event loop's thread; -1 = auto (2 threads
    # for a one-process crawl, 0 when --processes > 1 gives each core its own loop).
    crawl_decode_threads: int = -1

    # mturk
    mturk_endpoint_url: str = ""
    mturk_live: bool = False
    mturk_access_key: str = "imnet-local"
    mturk_secret_key: str = "imnet-local-secret"
    mturk_region: str = "us-east-1"
    mturk_host: str = "127.0.0.1"
    mturk_port: int = 8643
    mturk_reward: str = "0.10"
    mturk_images_per_hit: int = 24
    mturk_gold_per_hit: int = 2
    # Warm-up (mturk/warmup.py): a new worker first answers a page of this many check images;
    # measured workers' HITs then carry mturk_warmed_gold_per_hit (0: every HIT carries
    # mturk_gold_per_hit, as it does while no synset has this much gold).
    mturk_warmup_gold: int = 8
    mturk_warmed_gold_per_hit: int = 1
    # ... on one HIT in this many (2: every other HIT, 1/46 of a check per vote: cheaper, but
    # it cost precision on bench/consensus.py's dev seeds; see mturk/warmup.py).
    mturk_warmed_gold_every: int = 1
    mturk_max_assignments: int = 3
    # HIT timing (seconds) and how to show images: empty = the server's /images/<sha256> when
    # mturk_endpoint_url is set (self-hosted), else each candidate's original URL.
    mturk_lifetime: int = 7 * 24 * 3600
    mturk_assignment_duration: int = 1800
    mturk_auto_approval_delay: int = 3 * 24 * 3600
    mturk_image_base_url: str = ""
    # Quality policy: reject an assignment that gets under this share of its gold right; exclude a
    # worker (qualification + local block) below mturk_min_worker_gold after mturk_min_gold_seen.
    mturk_min_assignment_gold: float = 0.5
    # 0.75 excludes most 0.7 workers, whose vote carries ~2.6 times less evidence than a 0.9
    # worker's at the same price (bench/consensus_oracle.py), while a 0.9 worker's 3 of 4 passes.
    mturk_min_worker_gold: float = 0.75
    mturk_min_gold_seen: int = 6
    # With fewer than mturk_gold_bar_crowd workers left, only once a test says so at this level:
    # P(so few right | accuracy = the bar) < it (curation.consensus.crowd.under_gold_bar).
    mturk_gold_bar_alpha: float = 0.05
    mturk_gold_bar_crowd: int = 25
    # `imnet mturk gold`: at most this many new gold items per synset per run, never more than
    # this share of a synset's items, and consensus labels only at P >= / <= 1 - this bound.
    mturk_gold_per_synset: int = 20
    mturk_gold_max_share: float = 0.1
    mturk_gold_min_confidence: float = 0.999
    # Extra access keys the self-hosted server accepts, "KEY:SECRET,KEY2:SECRET2".
    mturk_server_keys: str = ""

    # consensus
    consensus_threshold: float = 0.997
    consensus_initial_subset: int = 100
    consensus_initial_votes: int = 10
    # Vote cap per item (calibration items get consensus_initial_votes even if that is more).
    consensus_max_votes: int = 15
    # Stop asking about an item once P(shows the synset) <= this (reject); 1 - threshold is the
    # symmetric rule, a looser one saves votes on the many negatives (bench/consensus.py).
    consensus_reject_below: float = 0.01
    # At most this many new votes per item per round (MTurk's default 3 assignments per HIT).
    consensus_batch_votes: int = 3
    # Worker-aware consensus's own cap and reject bound: it weighs each worker, so a higher cap
    # costs few votes and recovers ambiguous positives (bench/consensus.py).
    consensus_wa_max_votes: int = 30
    consensus_wa_reject_below: float = 0.02
    # Worker-aware cost-based stopping (curation/consensus/stopping.py): a false accept costs as
    # much as consensus_fp_cost votes, a false reject consensus_fn_cost; both 0 = the threshold
    # rule above. The pair sets the precision/recall/votes point (bench/consensus.py,
    # bench/consensus_oracle.py); threshold is then the precision target.
    consensus_fp_cost: float = 600.0
    consensus_fn_cost: float = 210.0
    # Worker-agnostic algorithms (dynamic, majority, dawid-skene) drop the votes of a blocked
    # worker whose gold accuracy is under this (or who has no gold record); worker-aware keeps all.
    consensus_min_voter_gold: float = 0.6
    # Policy needs_votes follows: robust | worker-aware | dynamic | majority | dawid-skene.
    # robust (the default; bench/consensus.py's crowd matrix): drift, dependent groups, routing,
    # stopping priced against the precision/recall targets and aware of how many annotators can
    # still vote (insufficient_crowd). worker-aware is the model it builds on, with fixed vote
    # costs tuned on one 50-worker crowd; dynamic is ImageNet's own rule.
    consensus_algorithm: str = "robust"
    # robust: the accepted set's precision and recall targets (set-level goals, not vote costs),
    # and its vote cap per item (it weighs each worker, so a high cap costs few votes).
    consensus_target_precision: float = 0.997
    consensus_target_recall: float = 0.98
    consensus_robust_max_votes: int = 25
    # Annotators who can vote at all: 0 = the workers seen so far who are not blocked or routed
    # away (a lab's own crowd); N = at least N (a larger crowd that has not shown up yet).
    consensus_crowd_size: int = 0
    # robust: votes of the most recently voted synsets (whole synsets) read before each run to
    # find copying workers across synsets (curation/consensus/pooled.py); 0 = per synset only.
    consensus_dependence_votes: int = 500_000
    # robust: the share of annotator pairs taken to copy before their votes say otherwise. A pair
    # whose identical answers make copying more likely than not weighs as that share of one
    # source (curation/consensus/dependence_soft.py) until the dependence test confirms it; 0 = off.
    consensus_dependence_prior: float = 0.05
    # Votes per item for the fixed-budget algorithms (majority, dawid-skene).
    consensus_fixed_votes: int = 5
    # Pseudo-samples shrinking each empirical confidence-table cell toward the fitted model.
    consensus_smoothing: float = 20.0

    # curation / export
    phash_radius: int = 6
    min_side: int = 64
    max_aspect: float = 4.0
    split_seed: int = 0
    train_max_per_class: int = 1300
    train_min_per_class: int = 1
    val_per_class: int = 50
    test_per_class: int = 100
    export_resize: int = 0
    export_quality: int = 90
    # Near-blank: every RGB channel's std below this (0-255 scale) on a 64-px thumbnail.
    filter_blank_std: float = 3.0
    # Single colour: this fraction of thumbnail pixels share one colour (5 bits per channel).
    filter_single_colour: float = 0.95
    # Worker processes for curation scans and export encoding (0 = one per CPU).
    curation_workers: int = 0
    # webdataset shards roll over at whichever comes first.
    export_shard_maxcount: int = 10000
    export_shard_maxsize: int = 1_000_000_000

    _sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    # -- derived ------------------------------------------------------------
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'imnet.sqlite3'}"

    def resolved_blob_url(self) -> str:
        if self.blob_url:
            return self.blob_url
        return f"file://{Path(self.data_dir).resolve() / 'blobs'}"

    def masked(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name.startswith("_"):
                continue
            v = getattr(self, f.name)
            if f.name in SECRET_KEYS and v:
                v = "****"
            out[f.name] = v
        out["database_url"] = _mask_url(self.resolved_database_url())
        out["blob_url"] = self.resolved_blob_url()
        return out

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":****@", 1)
    return url


_FIELDS = {f.name: f for f in fields(Settings) if not f.name.startswith("_")}


def _coerce(key: str, value: Any, origin: str) -> Any:
    f = _FIELDS.get(key)
    if f is None:
        raise SettingsError(f"unknown setting {key!r} (from {origin}); see `imnet config show`")
    typ = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if typ == "bool":
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in {"1", "true", "yes", "on"}:
                return True
            if s in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(value)
        if typ == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if typ == "float":
            number = float(value)
            if math.isfinite(number) and number >= 0:
                return number
        text = str(value)
    except (TypeError, ValueError):
        raise SettingsError(
            f"setting {key!r} (from {origin}) must be {typ}, got {value!r}"
        ) from None
    if typ == "float":
        # Every float knob is a delay, a timeout, a cost, a share or a probability: NaN, an
        # infinity or a negative reaches arithmetic that turns it into silent nonsense.
        raise SettingsError(
            f"setting {key!r} (from {origin}) must be a finite number >= 0, got {value!r}"
        )
    # A NUL or newline in a key, URL, path or User-Agent reaches a header, a file name or the
    # database, where it is refused late or splits a header; so do bytes that are not UTF-8.
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) < 0xE000 for c in text):
        raise SettingsError(
            f"setting {key!r} (from {origin}) holds a control character or bytes that are "
            f"not UTF-8: {text[:60]!a}"
        )
    return text


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}".replace("-", "_")
        if isinstance(v, dict):
            out.update(_flatten(v, key + "_"))
        else:
            out[key] = v
    return out


# Shares and probabilities, and the interval each must lie in. The targets exclude 1 (the
# stopping prices divide by 1 - T). NaN fails every comparison, so it is refused too.
_UNIT = "[0, 1]"
_SHARES = {
    **dict.fromkeys(
        (
            "mturk_min_assignment_gold",
            "mturk_min_worker_gold",
            "mturk_gold_bar_alpha",
            "mturk_gold_max_share",
            "mturk_gold_min_confidence",
            "consensus_threshold",
            "consensus_reject_below",
            "consensus_wa_reject_below",
            "consensus_min_voter_gold",
            "filter_single_colour",
        ),
        _UNIT,
    ),  # fmt: skip
    "consensus_target_precision": "(0, 1)",
    "consensus_target_recall": "(0, 1)",
    "consensus_dependence_prior": "[0, 1)",
}


def _inside(v: float, interval: str) -> bool:
    low = 0.0 <= v if interval[0] == "[" else 0.0 < v
    return low and (v <= 1.0 if interval[-1] == "]" else v < 1.0)


def _validate(s: Settings) -> None:
    url = s.resolved_database_url()
    scheme = url.split(":", 1)[0]
    if "://" not in url or not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
        raise SettingsError(
            f"database_url {_mask_url(url)!r} is not a sqlite:/// or postgresql+psycopg:// URL"
        )
    burl = s.resolved_blob_url()
    if not (burl.startswith("file://") or burl.startswith("s3://")):
        raise SettingsError(f"blob_url {burl!r} must start with file:// or s3://")
    if burl.startswith("s3://") and not urlsplit(burl).netloc:
        raise SettingsError(f"blob_url {burl!r} names no bucket (s3://bucket/prefix)")
    for key, interval in _SHARES.items():
        if not _inside(getattr(s, key), interval):
            raise SettingsError(f"{key} {getattr(s, key)!r} must be in {interval}")
    for key in ("s3_endpoint_url", "mturk_endpoint_url"):
        v = getattr(s, key)
        if v and urlsplit(v).scheme not in {"http", "https"}:
            raise SettingsError(f"{key} {v!r} must be an http:// or https:// URL")


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Resolve settings from all layers; raises SettingsError with a one-line message."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = Path(config_path or env.get("IMNET_CONFIG", "imnet.toml"))
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SettingsError(f"{path}: not valid TOML ({e})") from None
        for k, v in _flatten(data).items():
            values[k] = _coerce(k, v, str(path))
            sources[k] = str(path)
    elif config_path is not None:
        raise SettingsError(f"config file {path} does not exist")
    for name, v in env.items():
        if not name.startswith("IMNET_") or name == "IMNET_CONFIG":
            continue
        k = name[len("IMNET_") :].lower()
        values[k] = _coerce(k, v, f"environment {name}")
        sources[k] = "env"
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        values[k] = _coerce(k, v, "command line")
        sources[k] = "flag"
    s = Settings(**values)
    s._sources = sources
    _validate(s)
    return s
