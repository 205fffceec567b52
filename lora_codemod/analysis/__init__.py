"""Read-only facts about one module: trainers, model names, LoRA blocks, guards, distributed signals.

Rules consume a `ModuleIndex`; nothing in this package edits a tree.
"""
