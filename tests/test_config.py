"""[tool.lora-codemod] in pyproject.toml (or --config FILE), resolved against the command line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from lora_codemod.cli import cli
from lora_codemod.config import ConfigError, find_pyproject, read_config_file
from tests.helpers import DDP_SCRIPT

DDP = DDP_SCRIPT
CUSTOM = b"""\
peft_model = get_peft_model(model, lora_config)
loop = FineTuneLoop(model=peft_model, args=training_args)
loop.train()
if args.use_lora:
    model.save_pretrained("out")
"""


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "src" / "train").mkdir(parents=True)
    (tmp_path / "src" / "train" / "ddp.py").write_bytes(DDP)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_config(path, body: str) -> None:
    path.write_text("[project]\nname = 'x'\n\n[tool.lora-codemod]\n" + body)


def codes(output: str) -> list[str]:
    return [line.split()[1] for line in output.splitlines() if ": LC0" in line]


def test_nearest_pyproject_upwards_from_the_first_path(project):
    write_config(project / "pyproject.toml", 'ignore = ["LC002"]\n')
    (project / "src" / "pyproject.toml").write_text("[project]\nname = 'inner'\n")  # no table: passed over
    assert find_pyproject("src/train/ddp.py") == str(project / "pyproject.toml")
    result = invoke("fix", "--check", "src/train/ddp.py")
    assert codes(result.output) == ["LC001"]
    write_config(project / "src" / "train" / "pyproject.toml", 'select = ["LC002"]\n')
    assert codes(invoke("fix", "--check", "src/train").output) == ["LC002"]  # the nearer one wins


def test_cli_overrides_configuration(project):
    write_config(project / "pyproject.toml", 'ignore = ["LC002"]\nselect = ["LC001"]\n')
    assert codes(invoke("fix", "--check", "--select", "LC002", "--ignore", "LC004", "src").output) == ["LC002"]


def test_config_file_option_and_isolated(project, tmp_path):
    other = tmp_path / "ci.toml"
    other.write_text('select = ["LC002"]\n')  # a plain TOML file of the same keys
    write_config(project / "pyproject.toml", 'select = ["LC001"]\n')
    assert codes(invoke("fix", "--check", "--config", str(other), "src").output) == ["LC002"]
    assert codes(invoke("fix", "--check", "--isolated", "src").output) == ["LC002", "LC001"]


@pytest.mark.parametrize(("body", "message"), [
    ("colour = 'always'\n", "unknown key 'colour' in [tool.lora-codemod]"),
    ("flag_pattern = 'x'\n", "unknown key 'flag_pattern' in [tool.lora-codemod] (did you mean 'flag-pattern'?)"),
    ('select = ["LC999"]\n', "select: unknown rule code(s) LC999"),
    ('ignore = "LC001"\n', "ignore: expected a list of strings, got 'LC001'"),
    ('flag-pattern = "lora("\n', "flag-pattern: invalid regular expression 'lora('"),
    ('output-format = "xml"\n', "output-format: expected one of text, json, sarif, github, got 'xml'"),
    ('trainer-classes = ["my.Trainer"]\n', "trainer-classes: not a class name: 'my.Trainer'"),
    ("exclude = [1]\n", "exclude: expected a list of strings, got [1]"),
    ("select = [\n", "not valid TOML"),
])
def test_bad_configuration_is_one_line_naming_file_and_key(project, body, message):
    write_config(project / "pyproject.toml", body)
    result = invoke("fix", "--check", "src")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyproject.toml: error: ") and message in lines[0], lines
    assert invoke("config", "src").exit_code == 2


def test_missing_config_file(project):
    result = invoke("fix", "--config", "nope.toml", "src")
    assert result.exit_code == 2 and result.stderr.strip() == "nope.toml: error: --config: no such file"


def test_read_config_file_values(tmp_path):
    path = tmp_path / "pyproject.toml"
    write_config(path, 'select = ["lc001", "LC002"]\nextend-exclude = ["legacy"]\ntrainer-classes = ["Loop"]\n')
    values = read_config_file(str(path))
    assert values == {"select": frozenset({"LC001", "LC002"}), "extend-exclude": ("legacy",),
                      "trainer-classes": frozenset({"Loop"})}
    write_config(path, "[tool.lora-codemod.sub]\n")
    with pytest.raises(ConfigError, match="unknown key 'sub'"):
        read_config_file(str(path))


def test_config_command_prints_values_and_origins(project):
    write_config(project / "pyproject.toml", 'ignore = ["LC004"]\noutput-format = "github"\n')
    result = invoke("config", "--", "src")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "configuration file: pyproject.toml"
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"select", "ignore", "flag-pattern", "exclude", "extend-exclude", "output-format",
                         "trainer-classes", "unsafe-fixes", "cache-dir"}
    assert rows["ignore"].endswith('= ["LC004"]  # pyproject.toml')
    assert rows["output-format"].endswith('= "github"  # pyproject.toml')
    assert rows["select"].endswith("= (every rule)  # default")
    assert rows["flag-pattern"].endswith('= "lora|peft"  # default')


def test_config_command_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("config")
    assert result.output.splitlines()[0] == "configuration file: (none)"


def test_trainer_classes_reach_the_analysis(project):
    (project / "custom.py").write_bytes(CUSTOM)
    before = invoke("fix", "--check", "--verbose", "custom.py")
    assert "[left alone: no Trainer is built in this file]" in before.output and before.exit_code == 0
    write_config(project / "pyproject.toml", 'trainer-classes = ["FineTuneLoop"]\n')
    after = invoke("fix", "--check", "custom.py")
    assert after.exit_code == 1 and "loop's PEFT model" in after.output and "[would fix]" in after.output
    invoke("fix", "custom.py")
    assert b"model_to_save = loop.model.module" in (project / "custom.py").read_bytes()


def test_trainer_classes_subclass_and_pool(project):
    """A same-file subclass of a configured class is a Trainer too; pool workers get the setting."""
    source = b"class MyLoop(FineTuneLoop):\n    pass\n\n" + CUSTOM.replace(b"FineTuneLoop(", b"MyLoop(")
    (project / "loops").mkdir()
    for i in range(3):
        (project / "loops" / f"s{i}.py").write_bytes(source)
    write_config(project / "pyproject.toml", 'trainer-classes = ["FineTuneLoop"]\n')
    result = invoke("fix", "--check", "-j", "2", "--output-format", "json", "loops")
    summary = json.loads(result.stdout)["summary"]
    assert summary["rules"]["LC001"]["fixed"] == 3


def test_flag_pattern_from_configuration(project):
    (project / "flag.py").write_bytes(b"trainer = Trainer(model=model, args=training_args)\ntrainer.train()\n"
                                      b"if args.with_adapters:\n    m.save_pretrained('out')\n")
    assert "LC001" not in codes(invoke("fix", "--check", "flag.py").output)
    write_config(project / "pyproject.toml", 'flag-pattern = "adapters"\n')
    assert "LC001" in codes(invoke("fix", "--check", "flag.py").output)
