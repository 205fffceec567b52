"""lora-codemod: save LoRA adapters from the object the Trainer trained, on one rank."""

__version__ = "0.1.0"
