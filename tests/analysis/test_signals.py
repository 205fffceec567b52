"""Distributed-script signals and model-name derivation, through the module index."""

from __future__ import annotations

import re

import libcst as cst
import pytest

from lora_codemod.analysis.index import build_index
from lora_codemod.analysis.trainer import model_names
from lora_codemod.config import DEFAULT_FLAG_PATTERN

FLAG = re.compile(DEFAULT_FLAG_PATTERN)


def index_of(source: str):
    return build_index(cst.parse_module(source), FLAG, source)


@pytest.mark.parametrize(
    "source",
    [
        'import os\nr = os.environ["LOCAL_RANK"]\n',
        'import os\nr = os.environ.get("WORLD_SIZE", 1)\n',
        'import os\nr = os.getenv("RANK")\n',
        "import torch.distributed as dist\n",
        "from torch import distributed\n",
        "from torch.distributed import init_process_group\n",
        "torch.distributed.init_process_group('nccl')\n",
        "from torch.nn.parallel import DistributedDataParallel\n",
        "sampler = DistributedSampler(ds)\n",
        "parser.add_argument('--local_rank', type=int)\n",
        "local_rank = 0\n",
        "a = TrainingArguments(output_dir='o', ddp_find_unused_parameters=False)\n",
        "a = TrainingArguments(output_dir='o', deepspeed='ds.json')\n",
        "a = TrainingArguments(output_dir='o', fsdp='full_shard')\n",
        "a = TrainingArguments(output_dir='o', fsdp_config={})\n",
        '"""Launch: torchrun --nproc_per_node 4 train.py"""\n',
        "# python -m torch.distributed.run --nproc-per-node=2 train.py\n",
    ],
)
def test_distributed_signal(source):
    assert index_of(source).signals, source


@pytest.mark.parametrize(
    "source",
    [
        "import os\nx = os.environ['HOME']\n",
        "rank_of_thing = 3\n",
        "a = TrainingArguments(output_dir='o', per_device_train_batch_size=2)\n",
        "# run with python train.py\n",
    ],
)
def test_not_distributed(source):
    assert not index_of(source).signals


def names_of(source: str, trainer: str = "trainer"):
    index = index_of(source)
    (build,) = [b for b in index.trainer_builds if b.name == trainer]
    return model_names(build, index)


def test_model_names_follow_derivations():
    names = names_of(
        "def setup_lora(m, a):\n    return get_peft_model(m, a)\n"
        "base = load()\n"
        "k = prepare_model_for_kbit_training(base)\n"
        "lora = setup_lora(k, args)\n"
        "moved = lora.to(device)\n"
        "trainer = Trainer(model=moved, tokenizer=tok)\n"
    )
    assert names.direct == {"moved"}
    assert names.ancestors == {"lora", "k", "base"}


def test_model_names_of_conditional_expression_skip_the_test():
    names = names_of("peft_model = get_peft_model(model, c)\ntrainer = Trainer(peft_model if args.use_lora else model, args)\n")
    assert names.direct == {"peft_model", "model"}
    assert "args" not in names.direct | names.ancestors


def test_tokenizers_and_configs_are_never_model_names():
    names = names_of("trainer = Trainer(model=model_config)\n")
    assert not names.direct


def test_trainer_classes_aliases_and_subclasses():
    index = index_of(
        "from transformers import Trainer as HFT\n"
        "class Custom(HFT):\n    pass\n"
        "class Deeper(Custom):\n    pass\n"
        "a = HFT(model=m)\nb = Deeper(model=m)\nc = SFTTrainer(model=m)\nd = Thing(model=m)\n"
    )
    assert {b.name for b in index.trainer_builds} == {"a", "b", "c"}
