#!/usr/bin/env python3
"""Write the bundled generated profiles (``builtin:<name>``) with ``sla-planner profile``.

Each is aiconfigurator-core's estimate for one engine (needs the ``aiconfigurator`` extra); the
exact command is kept in each profile's ``profile_metadata.json`` and README, and
``tests/test_profile_generate.py`` regenerates one and compares it with the bundled files.

Usage: python scripts/generate_bundled_profiles.py [NAME ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from sla_planner.cli import main as cli_main

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILES = REPO_ROOT / "python" / "sla_planner" / "data" / "profiles"
BF16 = ["--gemm-quant", "bfloat16", "--kv-cache-dtype", "bfloat16"]

BUNDLED: dict[str, list[str]] = {
    # Hopper, small dense model on one GPU
    "h100_sxm-qwen3_8b-vllm-tp1": ["--system", "h100_sxm", "--model", "Qwen/Qwen3-8B", "--backend", "vllm", "--tp", "1", *BF16],
    # Ampere, a 32B model over two GPUs (tensor parallel)
    "a100_sxm-qwen3_32b-vllm-tp2": ["--system", "a100_sxm", "--model", "Qwen/Qwen3-32B", "--backend", "vllm", "--tp", "2", *BF16],
    # Ada (PCIe, 48 GB GDDR6): a slower engine with a third of the H100's KV capacity
    "l40s-qwen3_8b-vllm-tp1": ["--system", "l40s", "--model", "Qwen/Qwen3-8B", "--backend", "vllm", "--tp", "1", *BF16],
}


def main(argv: list[str]) -> int:
    names = argv or list(BUNDLED)
    unknown = [n for n in names if n not in BUNDLED]
    if unknown:
        print(f"unknown profile(s) {unknown}; choices: {', '.join(BUNDLED)}", file=sys.stderr)
        return 2
    for name in names:
        rc = cli_main(["profile", *BUNDLED[name], "--out", str(PROFILES / name), "--force"])
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
