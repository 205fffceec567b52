"""Stand-ins installed in the child: hub models, tokenizers, processors, configs and datasets.

`from_pretrained` of a name that is not a local directory or file builds a tiny model of the
family guessed from the name (or of the model class's own config class), and loads tokenizers,
processors and configs from a stand-in directory written for that family. `load_dataset` of a hub
name (or of data files that do not exist) returns a small synthetic dataset. Each substitution is
recorded as a `standin` event, so the report lists what did not run for real.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

from lora_codemod.smoke.child import shims

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


class StandIns:
    """Builds and caches the stand-in directories and models of one child process."""

    def __init__(self, log, settings: dict):
        self.log = log
        self.enabled = bool(settings.get("standins", True))
        self.like = settings.get("like") or None
        self.cache = Path(settings.get("cache") or os.path.join(os.getcwd(), ".lora-codemod-standins"))
        self.cache_root = settings.get("cache_root")  # the environment's cache (None: build each time)
        self._dirs: dict[str, Path] = {}

    # ---- directories: config.json + tokenizer (+ processor config) per family

    def family_dir(self, name: str) -> tuple[Path, str]:
        from lora_codemod.smoke.child import families

        with _lock:
            if self.like:
                key = "like"
            else:
                from transformers.models.auto.configuration_auto import CONFIG_MAPPING

                key = families.guess_model_type(os.fspath(name), set(CONFIG_MAPPING.keys()))
            if key not in self._dirs:
                directory = self.cache / f"{key}-rank{self.log.rank}-pid{os.getpid()}"
                if self.like:  # the user's directory decides what is written: made for this run
                    families.write_standin_dir(directory, self.like_config(), self.like)
                else:
                    from lora_codemod.smoke.child import cache

                    def build(target, name=os.fspath(name)):
                        families.write_standin_dir(target, families.family_config(name), None)

                    cache.materialise(self.cache_root, f"standin-{key}", build, directory)
                self._dirs[key] = directory
            return self._dirs[key], key

    def like_config(self):
        from transformers import AutoConfig

        from lora_codemod.smoke.child import families

        return families.shrink_config(AutoConfig.from_pretrained(self.like), keep_vocab=self._like_has_tokenizer())

    def _like_has_tokenizer(self) -> bool:
        names = set(os.listdir(self.like)) if self.like and os.path.isdir(self.like) else set()
        return bool(names & {"tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model"})

    # ---- models

    def model_config(self, cls, name: str):
        from lora_codemod.smoke.child import families

        config_class = getattr(cls, "config_class", None)
        is_auto = hasattr(cls, "_model_mapping")
        directory, _ = self.family_dir(name)
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(directory))
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

        config = user_config if isinstance(user_config, PretrainedConfig) else self.model_config(cls, name)
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
        how = f", loaded with {' and '.join(real)}" if real else ""
        self.log.standin(
            "model",
            f"{os.fspath(name)} -> tiny {type(model).__name__} ({config.model_type}, {params:,} parameters, "
            f"random weights{how})",
        )
        if kwargs.get("output_loading_info"):
            return model, {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
        return model

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
        directory, family = self.family_dir(name)
        if self.like and kind == "tokenizer" and self._like_has_tokenizer():
            what = f"{os.fspath(name)} -> your tokenizer from --like"
        elif self.like:
            what = f"{os.fspath(name)} -> --like config, shrunk"
        else:
            what = f"{os.fspath(name)} -> tiny {family} stand-in" + (" (ChatML template)" if kind == "tokenizer" else "")
        self.log.standin(kind, what)
        return str(directory)


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
