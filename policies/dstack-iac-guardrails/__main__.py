"""The pack's entry point: the engine starts `python -u <this directory> <engine address>`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from guardrails import build_pack  # noqa: E402 - the pack's own module, next to this file

build_pack()
