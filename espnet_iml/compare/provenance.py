"""What a comparison run was trained with, as local/compare.sh records it in compare.recipe.

A config is identified by its content, not its text: the digest of the parsed YAML, so that
editing a comment or re-indenting a file does not make finished runs look stale, while any
changed value does.
"""

import hashlib
import json
from pathlib import Path

import yaml


def config_digest(path: Path) -> str:
    """SHA-256 of the config's parsed content (keys sorted, comments and layout ignored)."""
    with open(path, encoding="utf-8") as f:
        content = yaml.safe_load(f)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
