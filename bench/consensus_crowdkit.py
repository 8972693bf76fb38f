"""bench/consensus.py's crowd-kit peer: MajorityVote and DawidSkene in their own venv, same votes.

crowd-kit needs scikit-learn < 1.6, so it runs in `.venv-bench-consensus` (created here if
missing) as a subprocess that reads the vote tables from an .npz file and writes its labels back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

VENV = Path(__file__).resolve().parent.parent / ".venv-bench-consensus"

CROWDKIT_SCRIPT = r"""
import json, sys, time
import numpy as np, pandas as pd
from crowdkit.aggregation import DawidSkene, MajorityVote
data = np.load(sys.argv[1])
keys = json.loads(str(data["keys"]))
out, secs = {}, {"mv": 0.0, "ds": 0.0}
for key in keys:
    df = pd.DataFrame({"task": data[key + "/item"], "worker": data[key + "/worker"],
                       "label": data[key + "/label"]})
    n = int(data[key + "/n"])
    t = time.perf_counter()
    mv = MajorityVote().fit_predict(df)
    secs["mv"] += time.perf_counter() - t
    t = time.perf_counter()
    ds = DawidSkene(n_iter=100).fit_predict(df)
    secs["ds"] += time.perf_counter() - t
    out[key + "/mv"] = mv.reindex(range(n)).fillna(0).astype(int).to_numpy()
    out[key + "/ds"] = ds.reindex(range(n)).fillna(0).astype(int).to_numpy()
np.savez(sys.argv[2], **out)
print(json.dumps(secs))
"""


def ensure_venv() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        print(f"creating {VENV} (crowd-kit needs scikit-learn < 1.6)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "crowd-kit", "scikit-learn<1.6", "numpy"],
            check=True,
            timeout=1800,
        )
    return py


def run_crowdkit(tables: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    py = ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst, script = Path(tmp) / "in.npz", Path(tmp) / "out.npz", Path(tmp) / "ck.py"
        arrays: dict[str, np.ndarray] = {"keys": np.array(json.dumps(list(tables)))}
        for key, v in tables.items():
            arrays[key + "/item"], arrays[key + "/worker"] = v.item, v.worker
            arrays[key + "/label"], arrays[key + "/n"] = v.label, np.array(v.n_items)
        np.savez(src, **arrays)
        script.write_text(CROWDKIT_SCRIPT)
        res = subprocess.run(
            [str(py), str(script), str(src), str(dst)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if res.returncode != 0:
            raise SystemExit(f"crowd-kit subprocess failed:\n{res.stderr[-3000:]}")
        secs = json.loads(res.stdout.strip().splitlines()[-1])
        with np.load(dst) as d:
            return {k: d[k] for k in d.files}, secs
