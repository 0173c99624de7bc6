"""Where things live: binaries are cached outside the repo keyed by version; everything a
run creates (data, logs, pids, kubeconfig) lives in one run folder under `.local/`."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / ".local"
RUN = LOCAL / "run"
ENV_SH = LOCAL / "env.sh"
STATE_FILE = RUN / "state.json"
VENV_BIN = REPO / ".venv" / "bin"

CACHE = Path(os.environ.get("AUTHZ_DEV_CACHE", Path.home() / ".cache" / "authz-dev"))
