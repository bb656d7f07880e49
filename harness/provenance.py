"""What produced a result: code version, package versions, machine. Stored in every record."""
from __future__ import annotations

import importlib.metadata
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import __version__

PACKAGES = ("crs-bench", "torch", "numpy", "pluggy", "PyYAML", "transformers", "torch-geometric", "nltk",
            "sacrebleu", "rouge-score", "sentence-transformers", "peft", "scipy")
REPO_ROOT = Path(__file__).resolve().parents[1]


def code_version() -> dict[str, Any]:
    """Git commit and dirty flag of the checkout the harness runs from (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"harness_version": __version__, "git_commit": commit,
            "git_dirty": bool(status) if status is not None else None}


_PROCESS_CODE: list[dict[str, Any]] = []


def process_code_version() -> dict[str, Any]:
    """`code_version()` read once per process, at its first run: the code a process runs is what it imported
    when it started, so a commit made while a long run trains must not relabel its record."""
    if not _PROCESS_CODE:
        _PROCESS_CODE.append(code_version())
    return dict(_PROCESS_CODE[0])


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_SECRET_QUERY = re.compile(r"(?P<name>[?&](?:api[_-]?key|key|token|access_token|password|secret)=)[^&#\s]+", re.I)
REDACTED = "***"


def redact(value: Any) -> Any:
    """`value` with URL credentials (``https://user:pass@host``) and secret query parameters (``?key=...``)
    replaced by ``***``, in every string of nested dicts and lists: records are shared, secrets are not."""
    if isinstance(value, str):
        value = _CREDENTIALS.sub(lambda m: f"{m['scheme']}{REDACTED}@", value)
        return _SECRET_QUERY.sub(lambda m: f"{m['name']}{REDACTED}", value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(item) for item in value)
    return value
