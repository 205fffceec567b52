"""Run-time half of lora-codemod: make a tiny model, run a (patched) training script, verify the adapter.

Nothing here imports torch, transformers or peft at module import time: `lora-codemod fix` and
`--help` must stay fast, and the `smoke` extra is optional.
"""

SMOKE_MODULES = ("torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers")
INSTALL_HINT = 'pip install "lora-codemod[smoke]"'


def missing_smoke_modules() -> list[str]:
    """Names of the `smoke` extra's modules that cannot be imported (checked without importing them)."""
    import importlib.util

    return [name for name in SMOKE_MODULES if importlib.util.find_spec(name) is None]
