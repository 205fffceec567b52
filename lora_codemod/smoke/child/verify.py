"""Checks that a directory holds a usable LoRA adapter, without the base model (optionally with it).

Each check yields pass / warn / fail and the figure behind it (tensor count, bytes, r), so the
table says *why*. Only a failed check makes the directory fail; warnings are things that some
legitimate setups produce (an all-zero lora_B right after init, for example).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lora_codemod.smoke.child import verify_checks
from lora_codemod.smoke.child.verify_checks import FAIL, PASS, WARN

# peft_type -> the key fragments its weight tensors carry.
LORA_FAMILY = {
    "LORA": ("lora_A", "lora_B"),
    "ADALORA": ("lora_A", "lora_B"),
    "LOHA": ("hada_",),
    "LOKR": ("lokr_",),
}
FULL_MODEL_MESSAGE = (
    "a full model was saved here, not an adapter: the base model was saved instead of the PEFT model"
)
SAFETENSORS_NAME = "adapter_model.safetensors"
BIN_NAME = "adapter_model.bin"
EMPTY_SAFETENSORS_BYTES = 40  # header {"__metadata__":{"format":"pt"}} only, no tensor

_A_KEY = re.compile(r"\.lora_(?:embedding_)?A(?:\.[^.]+)?\.weight$|\.lora_embedding_A(?:\.[^.]+)?$")
_B_KEY = re.compile(r"\.lora_(?:embedding_)?B(?:\.[^.]+)?\.weight$|\.lora_embedding_B(?:\.[^.]+)?$")
_MODULE_OF_KEY = re.compile(r"^(?:base_model\.model\.)?(.*?)\.lora_(?:embedding_)?[AB]\b")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS / WARN / FAIL
    detail: str
    figure: str = ""

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "figure": self.figure}


@dataclass
class VerifyResult:
    directory: str
    checks: list[Check] = field(default_factory=list)
    # "adapter", "full model", "missing", "empty" or "unknown": what the directory turned out to hold.
    holds: str = "unknown"
    # Where PeftModel.from_pretrained should load the adapter from (a sub-folder for a named adapter).
    load_from: str | None = None

    def add(self, name: str, status: str, detail: str, figure: str = "") -> Check:
        check = Check(name, status, detail, figure)
        self.checks.append(check)
        return check

    @property
    def status(self) -> str:
        statuses = {c.status for c in self.checks}
        if FAIL in statuses:
            return FAIL
        return WARN if WARN in statuses else PASS

    @property
    def passed(self) -> bool:
        return self.status != FAIL

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if c.status == FAIL), None)

    @classmethod
    def from_dict(cls, data: dict) -> "VerifyResult":
        """The result as `as_dict` wrote it (the child verifies; the parent reads its record)."""
        checks = [Check(c["name"], c["status"], c.get("detail", ""), c.get("figure", "")) for c in data.get("checks", [])]
        return cls(str(data["directory"]), checks, data.get("holds", "unknown"), data.get("load_from"))

    def as_dict(self) -> dict:
        return {
            "directory": self.directory,
            "status": self.status,
            "holds": self.holds,
            "load_from": self.load_from,
            "checks": [c.as_dict() for c in self.checks],
        }


def human_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _full_model_weights(directory: Path) -> list[Path]:
    patterns = (
        "model.safetensors",
        "model-*-of-*.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model-*-of-*.bin",
        "pytorch_model.bin.index.json",
    )
    return sorted({p for pattern in patterns for p in directory.glob(pattern)})


def _safetensors_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def _check_full_model(result: VerifyResult, directory: Path) -> bool:
    """A transformers checkpoint where an adapter was expected. True when found (and reported)."""
    if (directory / "adapter_config.json").exists() or not (directory / "config.json").exists():
        return False
    weights = _full_model_weights(directory)
    if not weights:
        return False
    size = sum(p.stat().st_size for p in weights)
    lora_keys = 0
    for path in weights:
        if path.suffix == ".safetensors":
            try:
                lora_keys += sum(".lora_" in key for key in _safetensors_keys(path))
            except Exception:  # the message below is the finding; an unreadable shard adds nothing
                pass
    figure = f"{len(weights)} weight file(s), {human_bytes(size)}"
    if lora_keys:
        figure += f", {lora_keys} LoRA tensors inside"
    result.holds = "full model"
    result.add("adapter, not full model", FAIL, FULL_MODEL_MESSAGE, figure)
    return True


def _read_config(result: VerifyResult, directory: Path) -> dict | None:
    config_path = directory / "adapter_config.json"
    if not config_path.exists():
        result.add("adapter_config.json", FAIL, "adapter_config.json missing")
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        result.add("adapter_config.json", FAIL, f"does not parse: {exc}")
        return None
    if not isinstance(config, dict):
        result.add("adapter_config.json", FAIL, "is not a JSON object")
        return None

    peft_type = str(config.get("peft_type") or "")
    r = config.get("r")
    targets = config.get("target_modules") or config.get("target_parameters")
    problems = []
    if peft_type.upper() not in LORA_FAMILY:
        shown = peft_type or "missing"
        problems.append(f"peft_type {shown} is not a LoRA-family type ({', '.join(LORA_FAMILY)})")
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        problems.append(f"r must be a positive integer, got {r!r}")
    if not targets:
        problems.append("no target_modules")
    if isinstance(targets, (list, tuple)):
        target_text = f"{len(targets)} target modules"
    else:
        target_text = f"target_modules {targets!r}" if targets else "no targets"
    figure = f"{peft_type or '?'}, r={r}, alpha={config.get('lora_alpha', '?')}, {target_text}"
    if problems:
        result.add("adapter_config.json", FAIL, "; ".join(problems), figure)
        return None
    result.add("adapter_config.json", PASS, "parses; LoRA-family type, r > 0, target modules set", figure)
    return config


def _load_weights(result: VerifyResult, directory: Path) -> tuple[dict, Path] | None:
    """{key: shape} plus the file; tensors are read later only where values matter."""
    candidates = [directory / SAFETENSORS_NAME, directory / BIN_NAME]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        result.add("adapter weights", FAIL, f"neither {SAFETENSORS_NAME} nor {BIN_NAME} exists")
        return None
    size = path.stat().st_size
    if size == 0:
        result.add("adapter weights", FAIL, f"{path.name} is empty", "0 B")
        return None
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        else:
            import torch

            state = torch.load(str(path), map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"holds a {type(state).__name__}, not a state dict")
            shapes = {key: tuple(value.shape) for key, value in state.items() if hasattr(value, "shape")}
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        result.add("adapter weights", FAIL, f"{path.name} does not load: {message}", human_bytes(size))
        return None
    figure = f"{len(shapes)} tensors, {human_bytes(size)}"
    if not shapes:
        result.add(
            "adapter weights",
            FAIL,
            f"{path.name} holds no tensors (an empty safetensors file is {EMPTY_SAFETENSORS_BYTES} bytes): "
            "saved without gathering the weights (the ZeRO-3/FSDP symptom)",
            figure,
        )
        return None
    result.add("adapter weights", PASS, f"{path.name} loads", figure)
    return shapes, path


def _expected_rank(module: str, config: dict) -> int:
    pattern_ranks = config.get("rank_pattern") or {}
    for pattern, rank in pattern_ranks.items():
        if isinstance(rank, int) and re.match(rf"(.*\.)?(?:{pattern})$", module):
            return rank
    return int(config["r"])


def _check_lora_tensors(result: VerifyResult, shapes: dict, config: dict | None) -> tuple[list, list]:
    peft_type = str((config or {}).get("peft_type") or "LORA").upper()
    fragments = LORA_FAMILY.get(peft_type, LORA_FAMILY["LORA"])
    if fragments != LORA_FAMILY["LORA"]:
        family_keys = [k for k in shapes if any(f in k for f in fragments)]
        if not family_keys:
            result.add("LoRA tensors", FAIL, f"no {'/'.join(fragments)} tensors for {peft_type}", "0 tensors")
        else:
            empty = [k for k in family_keys if _numel(shapes[k]) == 0]
            status = FAIL if empty else PASS
            detail = f"{len(empty)} tensors have zero elements" if empty else f"{peft_type} tensors present"
            result.add("LoRA tensors", status, detail, f"{len(family_keys)} tensors")
        return [], []

    a_keys = sorted(k for k in shapes if _A_KEY.search(k))
    b_keys = sorted(k for k in shapes if _B_KEY.search(k))
    figure = f"{len(a_keys)} lora_A, {len(b_keys)} lora_B"
    if not a_keys or not b_keys:
        result.add("LoRA tensors", FAIL, "no lora_A/lora_B tensors in the weights file", figure)
        return [], []
    result.add("LoRA tensors", PASS, "lora_A and lora_B tensors present", figure)

    lora_keys = a_keys + b_keys
    empty = [k for k in lora_keys if _numel(shapes[k]) == 0 or len(shapes[k]) < 2]
    if empty:
        result.add(
            "non-empty tensors",
            FAIL,
            f"{len(empty)} LoRA tensors have zero elements or lost a dimension (e.g. {empty[0]} "
            f"{list(shapes[empty[0]])}): saved without gathering (the ZeRO-3/FSDP symptom)",
            f"{len(empty)} of {len(lora_keys)} empty",
        )
        return a_keys, b_keys
    result.add("non-empty tensors", PASS, "every LoRA tensor has elements", f"{len(lora_keys)} tensors")

    if config is not None:
        _check_ranks(result, shapes, config, a_keys, b_keys, peft_type)
    return a_keys, b_keys


def _numel(shape: tuple) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count


def _check_ranks(result: VerifyResult, shapes: dict, config: dict, a_keys, b_keys, peft_type: str) -> None:
    # lora_A is (r, in, ...) and lora_B is (out, r, ...); the embedding variants keep the same axes.
    mismatches = []
    for key in a_keys + b_keys:
        match = _MODULE_OF_KEY.match(key)
        module = match.group(1) if match else key
        axis = 0 if key in a_keys else 1
        found = shapes[key][axis]
        if peft_type == "ADALORA":
            continue  # AdaLoRA reallocates ranks per module while training; only pairs must agree
        expected = _expected_rank(module, config)
        if found != expected:
            mismatches.append(f"{key} {list(shapes[key])} (r={expected})")
    pair_mismatches = []
    by_module_a = {_MODULE_OF_KEY.match(k).group(1): k for k in a_keys if _MODULE_OF_KEY.match(k)}
    for key in b_keys:
        match = _MODULE_OF_KEY.match(key)
        partner = by_module_a.get(match.group(1)) if match else None
        if partner and shapes[partner][0] != shapes[key][1]:
            pair_mismatches.append(f"{partner} {list(shapes[partner])} vs {list(shapes[key])}")
    problems = mismatches + pair_mismatches
    r_text = f"r={config['r']}" + (" (+rank_pattern)" if config.get("rank_pattern") else "")
    if problems:
        result.add("shapes match r", FAIL, f"{len(problems)} tensor(s) disagree with r: {problems[0]}", r_text)
    else:
        scope = "A/B pairs agree" if peft_type == "ADALORA" else "lora_A is (r, in), lora_B is (out, r)"
        result.add("shapes match r", PASS, scope, r_text)


def _lora_b_values(path: Path, keys: list[str]) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return {k: handle.get_tensor(k) for k in keys}
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return {k: state[k] for k in keys}


def _check_trained(result: VerifyResult, path: Path, b_keys: list[str]) -> None:
    # lora_B starts at zero with the default init and moves with the first optimizer step.
    linear_b = [k for k in b_keys if "lora_embedding_B" not in k]
    if not linear_b:
        return
    import torch

    values = _lora_b_values(path, linear_b)
    zero = [k for k in linear_b if not torch.any(values[k] != 0)]
    figure = f"{len(zero)} of {len(linear_b)} all-zero"
    if len(zero) == len(linear_b):
        result.add(
            "lora_B trained",
            WARN,
            "every lora_B is all zeros: the adapter never trained or was saved before training "
            "(fine only for inits that start at zero on purpose)",
            figure,
        )
    elif zero:
        result.add("lora_B trained", WARN, f"{len(zero)} lora_B tensors are all zeros (e.g. {zero[0]})", figure)
    else:
        result.add("lora_B trained", PASS, "lora_B tensors are non-zero", figure)
    verify_checks.check_row_fraction(result, values)


def _check_on_base(result: VerifyResult, directory: Path, base_model: str, config: dict) -> None:
    import warnings

    import torch

    try:
        import transformers
        from peft import PeftModel

        task = str(config.get("task_type") or "")
        auto_class = {
            "CAUSAL_LM": transformers.AutoModelForCausalLM,
            "SEQ_CLS": transformers.AutoModelForSequenceClassification,
            "SEQ_2_SEQ_LM": transformers.AutoModelForSeq2SeqLM,
            "TOKEN_CLS": transformers.AutoModelForTokenClassification,
        }.get(task, transformers.AutoModel)
        from lora_codemod.smoke.child.tiny_model import quiet_progress_bars

        def build_base():
            with quiet_progress_bars():
                return auto_class.from_pretrained(base_model)

        base = build_base()
        base.eval()
        vocab = int(getattr(base.config, "vocab_size", 16) or 16)
        input_ids = torch.arange(1, 9).remainder(max(vocab - 1, 1)).add(1).unsqueeze(0)
        inputs = {"input_ids": input_ids}
        if task == "SEQ_2_SEQ_LM":
            inputs["decoder_input_ids"] = input_ids
        with torch.no_grad():
            before = _first_tensor(base(**inputs)).clone()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            peft_model = PeftModel.from_pretrained(base, str(directory))
        peft_model.eval()
        with torch.no_grad():
            after = _first_tensor(peft_model(**inputs))
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else ""
        result.add("loads on base model", FAIL, f"{type(exc).__name__}: {message}", base_model)
        return
    key_warnings = [str(w.message).splitlines()[0] for w in caught if "key" in str(w.message).lower()]
    delta = float((after - before).abs().max())
    figure = f"max |Δ| {delta:.2e}"
    if key_warnings:
        result.add("loads on base model", FAIL, f"keys do not match the base: {key_warnings[0]}", figure)
        return
    load_row = len(result.checks)
    loaded_b = verify_checks.lora_b_snapshot(peft_model)
    del peft_model, base  # the initial values are built on a fresh base: one model in memory at a time
    try:
        note = verify_checks.check_untrained(result, build_base, directory, loaded_b)
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else ""
        note = f"lora_B's initial value could not be rebuilt ({type(exc).__name__}: {message})"
    note = f"; {note}" if note else ""
    if delta == 0.0:
        check = Check("loads on base model", WARN, "loads and runs, but the adapter changes no output" + note, figure)
    else:
        check = Check("loads on base model", PASS, "PeftModel.from_pretrained + one forward pass" + note, figure)
    result.checks.insert(load_row, check)


def _first_tensor(output):
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits
    if hasattr(output, "last_hidden_state"):
        return output.last_hidden_state
    return output[0]


def verify_adapter_dir(directory: str | Path, base_model: str | None = None) -> VerifyResult:
    path = Path(directory)
    result = VerifyResult(str(path))
    if not path.is_dir():
        result.holds = "missing"
        result.add("directory", FAIL, "does not exist" if not path.exists() else "is not a directory")
        return result
    if _check_full_model(result, path):
        return result
    files = [p for p in path.iterdir()]
    if not files:
        result.holds = "empty"
        result.add("directory", FAIL, "is empty: nothing was saved here")
        return result

    requested = path
    if not (path / "adapter_config.json").exists():
        named = verify_checks.named_adapters(path)
        if named:
            path = verify_checks.report_named_adapter(result, path, named)
    config = _read_config(result, path)
    loaded = _load_weights(result, path)
    if loaded is None:
        return result
    shapes, weights_path = loaded
    if config is not None:
        result.holds = "adapter"
        result.load_from = str(path)

    verify_checks.check_key_prefixes(result, shapes)
    if config is not None:
        verify_checks.check_added_tokens(result, [path, requested] if path != requested else [path], shapes, config,
                                         base_model)
    a_keys, b_keys = _check_lora_tensors(result, shapes, config)
    if b_keys and result.status != FAIL:
        _check_trained(result, weights_path, b_keys)
    if base_model is not None and config is not None and result.status != FAIL:
        _check_on_base(result, path, base_model, config)
    return result
