"""What runs in the user's interpreter: the child of a smoke run (and what it shares with the parent).

`bootstrap` is the entry point; `instrument` records saves, phases and failed save lookups;
`shims` and `standins` substitute what cannot run here; `families`, `spm` and `tiny_model` make
the tiny models and tokenizers; `cache` keeps them once per environment; `verify` checks the
adapter; `records` reads back what was recorded.

Every module of this package imports only the standard library and the user's ML libraries
(torch, transformers, peft, accelerate, safetensors, tokenizers, datasets), and those lazily: the
user's environment (`--python`) need not have rich, click or libcst, and may hold other versions.
"""
