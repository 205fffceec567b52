"""Stand-ins installed in the child: hub models, tokenizers, processors, configs and datasets.

`from_pretrained` of a name that is not a local directory or file builds a tiny model of the
family guessed from the name (or of the model class's own config class), and loads tokenizers,
processors and configs from a stand-in directory written for that family. `load_dataset` of a hub
name (or of data files that do not exist) returns a small synthetic dataset. Each substitution is
recorded as a `standin` event, so the report lists what did not run for real.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from lora_codemod.smoke.child import families, shims

# from_pretrained keywords that are about loading, not the model's config.
LOAD_KWARGS = {
    "cache_dir", "revision", "token", "use_auth_token", "trust_remote_code", "torch_dtype", "dtype",
    "device_map", "low_cpu_mem_usage", "quantization_config", "load_in_4bit", "load_in_8bit",
    "attn_implementation", "use_flash_attention_2", "local_files_only", "force_download",
    "resume_download", "proxies", "subfolder", "variant", "use_safetensors", "from_tf", "from_flax",
    "output_loading_info", "max_memory", "offload_folder", "offload_state_dict", "config",
    "ignore_mismatched_sizes", "_fast_init", "mirror", "code_revision", "adapter_kwargs",
    "adapter_name", "tp_plan", "key_mapping", "gguf_file", "_from_auto", "_from_pipeline",
    "state_dict", "use_kernels", "device_mesh", "tp_size", "weights_only",
}

_lock = threading.RLock()


def is_remote(name) -> bool:
    """A hub name (or a local path that does not exist): anything from_pretrained would download."""
    if not isinstance(name, (str, os.PathLike)):
        return False
    text = os.fspath(name)
    if not text:
        return False
    return not (os.path.isdir(text) or os.path.isfile(text))


def _split_name(args: tuple, kwargs: dict):
    if args:
        return args[0], args[1:], kwargs
    if "pretrained_model_name_or_path" in kwargs:
        kwargs = dict(kwargs)
        return kwargs.pop("pretrained_model_name_or_path"), (), kwargs
    return None, args, kwargs


@dataclass
class Family:
    """What a name (or the class asking for it) resolved to: the stand-in directory to use."""

    model_type: str
    why: str  # "name", "class", "registered", "only registered", "default", each may end in "+like"
    config_class: object = None  # a class that is not transformers' own: its defaults are shrunk
    overrides: dict = field(default_factory=dict)  # what the name fixes (NAME_FACTS)
    facts: str = ""
    like: bool = False
    asked_by: str = ""  # the class whose model type decided ("class")

    @property
    def key(self) -> str:
        if self.like:
            return "like"
        key = self.model_type
        for attribute, value in sorted(self.overrides.items()):
            key += f"-{attribute}{value}"
        return key

    @property
    def custom(self) -> bool:
        return self.config_class is not None and not families.is_transformers_class(self.config_class)


@dataclass
class StandInDir:
    path: Path
    family: Family
    extra_tokens: list = field(default_factory=list)  # (text, id) added to the tiny tokenizer
    mapped: int = 0  # special-token ids moved into the tiny vocabulary
    like_tokenizer: bool = False


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)


def _mapped(shrunk) -> int:
    return len(shrunk.plan.mapped) if shrunk.plan is not None else 0


# Why a name got its family, as the report says it (none for a name's own family).
WHY = {
    "class": "asked for by {asked_by}",
    "registered": "the name spells a model type your code registered",
    "only registered": "the one model type your code registered with AutoConfig",
}


def _asking_config_class(cls):
    """The config class whose defaults a stand-in is made from, when the class asking decides:
    a config or model class that is not transformers' own (a project's `HiggsAudioConfig`,
    `HiggsAudioModel`); transformers' own classes and the Auto classes leave it to the name."""
    if cls is None or hasattr(cls, "_model_mapping") or families.is_transformers_class(cls):
        return None
    if isinstance(getattr(cls, "model_type", None), str) and hasattr(cls, "to_dict") and hasattr(cls, "from_dict"):
        return cls  # a config class
    config_class = getattr(cls, "config_class", None)
    if isinstance(config_class, type) and getattr(config_class, "model_type", None) is not None:
        return config_class
    return None


class StandIns:
    """Builds and caches the stand-in directories and models of one child process."""

    def __init__(self, log, settings: dict):
        self.log = log
        self.enabled = bool(settings.get("standins", True))
        self.like = settings.get("like") or None
        self.cache = Path(settings.get("cache") or os.path.join(os.getcwd(), ".lora-codemod-standins"))
        self.cache_root = settings.get("cache_root")  # the environment's cache (None: build each time)
        self._dirs: dict[str, StandInDir] = {}
        self._names: dict[str, Family] = {}  # a name keeps the family it first resolved to
        self._produced: dict[int, weakref.ref] = {}  # configs read from stand-in directories (configs are unhashable)

    # ---- which family a name (or the class asking) stands for

    def like_type(self) -> str | None:
        if not self.like:
            return None
        try:
            with open(os.path.join(self.like, "config.json"), encoding="utf-8") as handle:
                return json.load(handle).get("model_type") or None
        except (OSError, ValueError):
            return None

    def resolve(self, name, cls=None) -> Family:
        text = os.fspath(name)
        config_class = _asking_config_class(cls)
        if config_class is not None:
            model_type = getattr(config_class, "model_type", None) or config_class.__name__
            own = families.is_transformers_class(config_class)
            overrides, facts = families.name_facts(text, model_type) if own else ({}, "")
            family = Family(model_type, "class", None if own else config_class, overrides, facts,
                            asked_by=getattr(cls, "__name__", ""))
        elif text in self._names:
            return self._names[text]
        else:
            family = self._from_name(text)
        if self.like and family.model_type == self.like_type():
            family = Family(family.model_type, family.why + "+like", family.config_class, like=True,
                            asked_by=family.asked_by)
        self._names[text] = family
        return family

    def _from_name(self, text: str) -> Family:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        custom = families.registered_custom_types()
        hit = families.type_in_name(text, custom)
        if hit:
            return Family(hit, "registered", custom[hit])
        model_type = families.pattern_type(text, set(CONFIG_MAPPING.keys()))
        if model_type:
            overrides, facts = families.name_facts(text, model_type)
            return Family(model_type, "name", None, overrides, facts)
        like_type = self.like_type()
        if like_type:
            return Family(like_type, "default", custom.get(like_type))
        top = families.top_level_types(custom)
        if len(top) == 1:
            return Family(top[0], "only registered", custom[top[0]])
        return Family("llama", "default")

    # ---- directories: config.json + tokenizer (+ processor config) per family

    def family_dir(self, name, cls=None) -> tuple[Path, str]:
        entry = self.standin_dir(name, cls)
        return entry.path, entry.family.model_type

    def standin_dir(self, name, cls=None) -> StandInDir:
        with _lock:
            family = self.resolve(name, cls)
            key = family.key
            if key not in self._dirs:
                directory = self.cache / f"{_safe(key)}-rank{self.log.rank}-pid{os.getpid()}"
                if family.like:  # the user's directory decides what is written: made for this run
                    shrunk = self.like_config(family)
                    families.write_standin_dir(directory, shrunk.config, self.like, shrunk.extra_tokens)
                    entry = StandInDir(directory, family, shrunk.extra_tokens, _mapped(shrunk),
                                       self._like_has_tokenizer())
                elif family.custom:  # the project's own class: its code decides, so made for this run
                    shrunk = families.class_standin(family.config_class)
                    families.write_standin_dir(directory, shrunk.config, None, shrunk.extra_tokens)
                    entry = StandInDir(directory, family, shrunk.extra_tokens, _mapped(shrunk))
                else:
                    from lora_codemod.smoke.child import cache

                    shrunk = families.family_standin(family.model_type, overrides=family.overrides, facts=family.facts)

                    def build(target, shrunk=shrunk):
                        families.write_standin_dir(target, shrunk.config, None, shrunk.extra_tokens)

                    cache.materialise(self.cache_root, f"standin-{key}", build, directory)
                    entry = StandInDir(directory, family, shrunk.extra_tokens, _mapped(shrunk))
                self._dirs[key] = entry
            return self._dirs[key]

    def like_config(self, family: Family | None = None):
        from transformers import AutoConfig

        keep = self._like_has_tokenizer()
        try:
            config = AutoConfig.from_pretrained(self.like)
        except (ValueError, KeyError):
            if family is None or family.config_class is None:
                raise
            config = family.config_class.from_pretrained(self.like)  # a type the project never registered
        return families.shrink(config, keep_vocab=keep)

    def _like_has_tokenizer(self) -> bool:
        names = set(os.listdir(self.like)) if self.like and os.path.isdir(self.like) else set()
        return bool(names & {"tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model"})

    # ---- models

    def model_config(self, cls, name: str):
        from lora_codemod.smoke.child import families

        config_class = getattr(cls, "config_class", None)
        is_auto = hasattr(cls, "_model_mapping")
        entry = self.standin_dir(name, cls)
        directory = entry.path
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(str(directory))
        except (ValueError, KeyError):
            if is_auto or config_class is None:
                raise
            config = config_class.from_pretrained(str(directory))  # a type the project never registered
        if not is_auto and config_class is not None and not isinstance(config, config_class):
            # A concrete class of another family than the name suggests (LlavaLlamaForCausalLM on a
            # vicuna name, CLIPVisionModel on a CLIP name): its sub-config, else its own defaults.
            nested = [v for v in vars(config).values() if isinstance(v, config_class)]
            config = nested[0] if nested else families.config_for_class(config_class)
        return config

    def build_model(self, cls, name: str, kwargs: dict, original):
        import torch

        user_config = kwargs.get("config")
        from transformers import PretrainedConfig

        if isinstance(user_config, PretrainedConfig):
            config = user_config
            if not self._is_standin(config):
                # config= built or loaded by the script at full size: shrunk like a stand-in's
                # (its token ids mapped the same way), so the tiny tokenizer still fits it.
                config = families.shrink(config).config
                self.log.standin("config", f"config= given for {os.fspath(name)} -> shrunk ({config.model_type})")
        else:
            config = self.model_config(cls, name)
        for key in list(kwargs):
            if key not in LOAD_KWARGS and hasattr(config, key):
                setattr(config, key, kwargs[key])
        try:
            config._name_or_path = os.fspath(name)
        except Exception:
            pass
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = cls.from_config(config) if hasattr(cls, "_model_mapping") else cls(config)
        real = real_load_features(kwargs)
        if real:
            # 4-bit/8-bit or flash attention for real (installed, on a GPU): the tiny weights go
            # through from_pretrained with the script's own keywords.
            model = self._load_for_real(cls, model, kwargs, original)
        else:
            dtype = kwargs.get("torch_dtype", kwargs.get("dtype"))
            if isinstance(dtype, torch.dtype):
                model = model.to(dtype)
            shims.place_on_device(model, kwargs.get("device_map"))
        model.eval()  # from_pretrained returns a model in eval mode
        params = sum(p.numel() for p in model.parameters())
        family = self._names.get(os.fspath(name))
        facts = f"{family.facts}, " if family is not None and family.facts and not isinstance(user_config, PretrainedConfig) else ""
        how = f", loaded with {' and '.join(real)}" if real else ""
        self.log.standin(
            "model",
            f"{os.fspath(name)} -> tiny {type(model).__name__} ({config.model_type}, {facts}{params:,} parameters, "
            f"random weights{how})",
        )
        if kwargs.get("output_loading_info"):
            return model, {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
        return model

    def produced(self, config) -> None:
        """A config loaded from a stand-in directory (and its sub-configs): already tiny."""
        for value in [config, *vars(config).values()]:
            if hasattr(value, "to_dict") and hasattr(value, "model_type"):
                try:
                    self._produced[id(value)] = weakref.ref(value)
                except TypeError:
                    pass

    def _is_standin(self, config) -> bool:
        ref = self._produced.get(id(config))
        return ref is not None and ref() is config

    def _load_for_real(self, cls, model, kwargs: dict, original):
        from lora_codemod.smoke.child.instrument import unrecorded

        with _lock:
            self._loads = getattr(self, "_loads", 0) + 1
            directory = self.cache / f"weights-{self._loads}-rank{self.log.rank}-pid{os.getpid()}"
        with unrecorded():
            model.save_pretrained(directory)
        load = {k: v for k, v in kwargs.items() if k != "config"}
        return original(cls, str(directory), **load)

    # ---- everything read from a directory: tokenizers, processors, configs

    def redirect(self, kind: str, cls, name) -> str:
        entry = self.standin_dir(name, cls)
        family = self._names.get(os.fspath(name), entry.family)  # this name's reason, the directory its family's
        self.log.standin(kind, f"{os.fspath(name)} -> {self.describe(kind, entry, family)}")
        return str(entry.path)

    def describe(self, kind: str, entry: StandInDir, family: Family) -> str:
        """What a name really got, in the report's words."""
        extra = [text for text, _ in entry.extra_tokens]
        if family.like and kind == "tokenizer":
            what = ("your tokenizer from --like" if entry.like_tokenizer
                    else "the tiny tokenizer (the --like directory has none)")
        elif family.like:
            what = f"--like config ({family.model_type}), shrunk"
        elif family.custom and kind != "tokenizer":
            what = f"tiny {family.model_type} stand-in: {family.config_class.__name__}'s defaults, shrunk"
        else:
            what = f"tiny {family.model_type} stand-in"
        if family.facts:
            what += f" ({family.facts})"
        if kind == "tokenizer" and extra and not (family.like and entry.like_tokenizer):
            shown = ", ".join(extra[:4]) + (f" and {len(extra) - 4} more" if len(extra) > 4 else "")
            what += f" with {family.model_type}'s special tokens ({shown})"
        elif kind != "tokenizer" and entry.mapped and (family.custom or family.like):
            what += f"; {entry.mapped} special-token ids mapped into the tiny vocabulary"
        why = WHY.get(family.why.split("+")[0])
        if family.why.startswith("default") and family.like:
            why = "an unknown name: --like's model type"
        if why:
            what += f" ({why.format(asked_by=family.asked_by)})"
        if kind == "tokenizer" and not (family.like and entry.like_tokenizer):
            what += " (ChatML template)"
        return what


def real_load_features(kwargs: dict) -> list[str]:
    """What a load asks for that only a real from_pretrained does (the loader shims removed these
    keywords wherever their package is missing or the run is on the CPU)."""
    features = []
    if kwargs.get("quantization_config") is not None or kwargs.get("load_in_4bit") or kwargs.get("load_in_8bit"):
        features.append("bitsandbytes quantization")
    attention = kwargs.get("attn_implementation")
    if (isinstance(attention, str) and "flash" in attention) or kwargs.get("use_flash_attention_2"):
        features.append(str(attention or "flash_attention_2"))
    return features


def _patch_loader(owner, kind: str, standins: StandIns, settings: dict) -> None:
    descriptor = owner.__dict__.get("from_pretrained")
    if not isinstance(descriptor, classmethod):
        return
    original = descriptor.__func__
    if getattr(original, "__lora_codemod_instrumented__", False):
        return
    log = standins.log

    @functools.wraps(original)
    def from_pretrained(cls, *args, **kwargs):
        name, rest, kwargs = _split_name(args, kwargs)
        if kind == "model":
            log.phase(f"loading {cls.__name__}")
            kwargs = shims.loader_kwargs(log, settings, kwargs)
            if standins.enabled and is_remote(name):
                return standins.build_model(cls, name, kwargs, original)
        elif standins.enabled and is_remote(name):
            name = standins.redirect(kind, cls, name)
            for key in ("revision", "subfolder", "token", "use_auth_token", "cache_dir"):
                kwargs.pop(key, None)
            result = original(cls, name, *rest, **kwargs)
            if kind == "config":
                standins.produced(result[0] if isinstance(result, tuple) else result)
            return result
        if name is None:
            return original(cls, *rest, **kwargs)
        return original(cls, name, *rest, **kwargs)

    from_pretrained.__lora_codemod_instrumented__ = True
    setattr(owner, "from_pretrained", classmethod(from_pretrained))


# module -> [(class attribute, kind)]
LOADERS = {
    "transformers.modeling_utils": [("PreTrainedModel", "model")],
    "transformers.models.auto.auto_factory": [("_BaseAutoModelClass", "model")],
    "transformers.tokenization_utils_base": [("PreTrainedTokenizerBase", "tokenizer")],
    "transformers.models.auto.tokenization_auto": [("AutoTokenizer", "tokenizer")],
    "transformers.configuration_utils": [("PretrainedConfig", "config"), ("PreTrainedConfig", "config")],
    "transformers.models.auto.configuration_auto": [("AutoConfig", "config")],
    "transformers.processing_utils": [("ProcessorMixin", "processor")],
    "transformers.models.auto.processing_auto": [("AutoProcessor", "processor")],
    "transformers.models.auto.image_processing_auto": [("AutoImageProcessor", "processor")],
    "transformers.models.auto.feature_extraction_auto": [("AutoFeatureExtractor", "processor")],
    "transformers.image_processing_base": [("ImageProcessingMixin", "processor")],
    "transformers.image_processing_utils": [("ImageProcessingMixin", "processor")],
    "transformers.feature_extraction_utils": [("FeatureExtractionMixin", "processor")],
    "transformers.generation.configuration_utils": [("GenerationConfig", "config")],
}


def loader_hooks(log, settings: dict) -> dict:
    """Import hooks (module name -> function of the module) for every from_pretrained we wrap."""
    standins = StandIns(log, settings)
    hooks = {}
    for module_name, entries in LOADERS.items():

        def hook(module, entries=entries):
            for attribute, kind in entries:
                owner = module.__dict__.get(attribute)
                if owner is not None:
                    _patch_loader(owner, kind, standins, settings)

        hooks[module_name] = hook

    def auto_models(module):
        # Each Auto class holds its own copy of _BaseAutoModelClass.from_pretrained (made when the
        # class is defined): wrap each one that was copied before our wrapper was in place.
        for value in list(vars(module).values()):
            if isinstance(value, type) and hasattr(value, "_model_mapping") and "from_pretrained" in value.__dict__:
                _patch_loader(value, "model", standins, settings)

    hooks["transformers.models.auto.modeling_auto"] = auto_models
    if standins.enabled:
        hooks["datasets"] = functools.partial(patch_datasets, log)
    return hooks


# ---------------------------------------------------------------- datasets

PACKAGED_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas", "imagefolder", "audiofolder",
                     "webdataset", "xml", "sql", "generator", "videofolder"}
ROWS = 32
SYNTHETIC_MARK = "lora-codemod synthetic stand-in"
SPLITS = ("train", "validation", "test")

_QUESTIONS = [
    ("what color is the sky", "the sky is blue"),
    ("name two animals", "a cat and a dog"),
    ("tell me a short story", "the dog ran to the house by the river and then went to the sea"),
    ("what is one and one", "one and one is two"),
    ("write a poem about the moon", "the moon is high, the stars are white, the night is long"),
    ("how do i save the adapter", "save it from the trainer model, not the base model"),
    ("which day is it", "it is the first day of the new year 2024"),
    ("explain what a lora adapter is", "a lora adapter is a small set of weights for a big model"),
]


def _profile(path: str) -> str:
    lowered = path.lower()
    if any(k in lowered for k in ("dpo", "orpo", "kto", "preference", "feedback", "rlhf", "chosen", "pairwise")):
        return "preference"
    if any(k in lowered for k in ("sharegpt", "llava", "conversations", "vicuna")):
        return "conversations"
    if "completion" in lowered:
        return "prompt-completion"
    return "messages"


def synthetic_rows(profile: str, rows: int = ROWS) -> dict:
    columns: dict[str, list] = {k: [] for k in ("text", "content", "instruction", "input", "output", "question", "answer")}
    extra: dict[str, list] = {}
    for index in range(rows):
        question, answer = _QUESTIONS[index % len(_QUESTIONS)]
        question = f"{question} {index}" if index >= len(_QUESTIONS) else question
        columns["text"].append(f"question: {question}. answer: {answer}.")
        columns["content"].append(f"{question}. {answer}.")
        columns["instruction"].append(question)
        columns["input"].append("" if index % 2 else "the tiny model")
        columns["output"].append(answer)
        columns["question"].append(question)
        columns["answer"].append(answer)
        if profile == "preference":
            extra.setdefault("prompt", []).append(question)
            extra.setdefault("chosen", []).append(answer)
            extra.setdefault("rejected", []).append("no")
        elif profile == "conversations":
            extra.setdefault("conversations", []).append(
                [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
            )
        elif profile == "prompt-completion":
            extra.setdefault("prompt", []).append(question)
            extra.setdefault("completion", []).append(answer)
        else:
            extra.setdefault("messages", []).append(
                [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            )
    return {**columns, **extra}


def _local_files_exist(data_files) -> bool:
    import glob

    if data_files is None:
        return False
    if isinstance(data_files, (str, os.PathLike)):
        data_files = [data_files]
    if isinstance(data_files, dict):
        data_files = [f for v in data_files.values() for f in ([v] if isinstance(v, (str, os.PathLike)) else v)]
    files = [os.fspath(f) for f in data_files]
    return bool(files) and all(os.path.exists(f) or glob.glob(f) for f in files)


def _needs_standin(path, data_files, data_dir) -> bool:
    if not isinstance(path, (str, os.PathLike)):
        return False
    text = os.fspath(path)
    if text in PACKAGED_BUILDERS:
        if data_files is not None:
            return not _local_files_exist(data_files)
        return not (data_dir and os.path.isdir(data_dir))
    return is_remote(text) and not _local_files_exist(data_files)


def _split_base(split: str) -> str:
    return split.split("[", 1)[0].split("+", 1)[0].strip() or "train"


def patch_datasets(log, module) -> None:
    import datasets as ds

    load_module = getattr(ds, "load", None)
    original_load = getattr(ds, "load_dataset", None)
    original_from_disk = getattr(ds, "load_from_disk", None)
    if original_load is None or getattr(original_load, "__lora_codemod_instrumented__", False):
        return

    def build(path: str, split, streaming: bool):
        profile = _profile(path)
        data = synthetic_rows(profile)

        def one(split_name: str):
            info = ds.DatasetInfo(description=SYNTHETIC_MARK)
            dataset = ds.Dataset.from_dict(data, info=info, split=ds.NamedSplit(split_name) if split_name else None)
            return dataset.to_iterable_dataset() if streaming else dataset

        columns = ", ".join(data)
        log.standin("dataset", f"{path} -> {ROWS} synthetic rows per split ({profile}: {columns})")
        if split is None:
            parts = {name: one(name) for name in SPLITS}
            return ds.IterableDatasetDict(parts) if streaming else ds.DatasetDict(parts)
        if isinstance(split, (list, tuple)):
            return [one(_split_base(str(s))) for s in split]
        return one(_split_base(str(split)))

    @functools.wraps(original_load)
    def load_dataset(path=None, name=None, data_dir=None, data_files=None, split=None, *args, **kwargs):
        if _needs_standin(path, data_files, data_dir):
            what = os.fspath(path) if os.fspath(path) not in PACKAGED_BUILDERS else f"{path} files {data_files!r}"
            return build(what, split, bool(kwargs.get("streaming")))
        return original_load(path, name, data_dir, data_files, split, *args, **kwargs)

    load_dataset.__lora_codemod_instrumented__ = True
    ds.load_dataset = load_dataset
    if load_module is not None and getattr(load_module, "load_dataset", None) is original_load:
        load_module.load_dataset = load_dataset

    _patch_train_test_split(log, ds)

    if original_from_disk is not None:

        @functools.wraps(original_from_disk)
        def load_from_disk(dataset_path, *args, **kwargs):
            if is_remote(dataset_path):
                return build(os.fspath(dataset_path), None, False)
            return original_from_disk(dataset_path, *args, **kwargs)

        load_from_disk.__lora_codemod_instrumented__ = True
        ds.load_from_disk = load_from_disk
        if load_module is not None and getattr(load_module, "load_from_disk", None) is original_from_disk:
            load_module.load_from_disk = load_from_disk


def _patch_train_test_split(log, ds) -> None:
    """A split sized for the real dataset (`test_size=2000`) cannot fit 32 synthetic rows: a quarter."""
    original = ds.Dataset.__dict__.get("train_test_split")
    if original is None or getattr(original, "__lora_codemod_instrumented__", False):
        return

    @functools.wraps(original)
    def train_test_split(self, test_size=None, train_size=None, *args, **kwargs):
        synthetic = getattr(getattr(self, "info", None), "description", None) == SYNTHETIC_MARK
        too_big = [v for v in (test_size, train_size) if isinstance(v, int) and not isinstance(v, bool) and v >= len(self)]
        if synthetic and too_big:
            log.standin("dataset", f"train_test_split(test_size={test_size!r}, train_size={train_size!r}) "
                        f"-> a quarter of the {len(self)} synthetic rows")
            test_size, train_size = 0.25, None
        return original(self, test_size, train_size, *args, **kwargs)

    train_test_split.__lora_codemod_instrumented__ = True
    ds.Dataset.train_test_split = train_test_split
