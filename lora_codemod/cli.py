"""The command line: thin wrappers over engine, rules and report (and smoke, when installed)."""

from __future__ import annotations

import os
import sys

import click

from lora_codemod import __version__
from lora_codemod.config import DEFAULT_FLAG_PATTERN, OUTPUT_FORMATS, RULE_CODES, Config
from lora_codemod.engine import EXIT_ERROR


def _codes(ctx: click.Context, param: click.Parameter, value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    codes = frozenset(c.strip().upper() for c in value.split(",") if c.strip())
    unknown = sorted(codes - set(RULE_CODES))
    if unknown:
        raise click.BadParameter(f"unknown rule code(s): {', '.join(unknown)} (known: {', '.join(RULE_CODES)})")
    return codes


def _patterns(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...] | None:
    if not value:
        return None
    return tuple(p.strip() for item in value for p in item.split(",") if p.strip())


def color_choice(choice: str, stream) -> bool:
    """--color auto: a terminal, unless NO_COLOR is set; FORCE_COLOR forces it (auto only)."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def _use_color(no_color: bool, stream) -> bool:
    return color_choice("never" if no_color else "auto", stream)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lora-codemod")
def cli() -> None:
    """Fix LoRA adapter saves in Hugging Face Trainer scripts, and prove the fix on a tiny run."""


def _settings(paths, config_file, isolated, cli_values):
    from lora_codemod.config import ConfigError, resolve

    try:
        return resolve(list(paths), config_file, cli_values, isolated=isolated)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_ERROR)


_config_options = [
    click.option("--config", "config_file", type=click.Path(dir_okay=False), metavar="FILE",
                 help="Read settings from FILE (a pyproject.toml with [tool.lora-codemod], or a TOML file of "
                      "the same keys) instead of the nearest pyproject.toml."),
    click.option("--isolated", is_flag=True, help="Ignore every configuration file."),
]


def config_options(function):
    for option in reversed(_config_options):
        function = option(function)
    return function


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--diff", "show_diff", is_flag=True, help="Print a unified diff of the changes; write nothing.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a file would change or needs review.")
@click.option("--select", callback=_codes, metavar="CODES", help="Only these rules (comma-separated, e.g. LC001,LC002).")
@click.option("--ignore", callback=_codes, metavar="CODES", help="Skip these rules (comma-separated).")
@click.option("--flag-pattern", default=None, metavar="REGEX",
              help=f"Names or keys that mean 'LoRA is on' (full match of the last name part) [default: {DEFAULT_FLAG_PATTERN}].")
@click.option("--output-format", type=click.Choice(OUTPUT_FORMATS), default=None,
              help="text (default), json, sarif (SARIF 2.1.0) or github (workflow annotations).")
@click.option("--exclude", multiple=True, callback=_patterns, metavar="PATTERNS",
              help="Glob patterns to skip, replacing the default list (comma-separated; repeatable).")
@click.option("--extend-exclude", multiple=True, callback=_patterns, metavar="PATTERNS",
              help="Glob patterns to skip, added to the default list.")
@click.option("--force-exclude", is_flag=True,
              help="Apply the exclude patterns to files named on the command line too (pre-commit).")
@click.option("--include-generated", is_flag=True, help="Also analyse files marked @generated.")
@click.option("--show-suppressed", is_flag=True, help="List findings suppressed by comments.")
@click.option("--statistics", is_flag=True, help="Print a count of findings per rule.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings (2 on errors still).")
@click.option("--exit-non-zero-on-fix", is_flag=True, help="Exit 1 when fix changed a file.")
@click.option("--stdin-filename", metavar="PATH", help="The name of the file read from '-', for messages and diffs.")
@click.option("-v", "--verbose", is_flag=True, help="Also list the findings left alone, with their reasons.")
@click.option("-q", "--quiet", is_flag=True,
              help="The default (only findings that are fixed or need review, errors and the summary); kept for "
                   "scripts that pass it.")
@click.option("--color", "color", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="Colour findings and diffs (auto: on a terminal; NO_COLOR and FORCE_COLOR are honoured).")
@click.option("--no-color", is_flag=True, help="Same as --color never.")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=0, metavar="N",
              help="Processes that parse files [default: the number of cores; 1: no pool].")
@click.option("--unsafe-fixes", "unsafe_fixes", flag_value=True, default=None,
              help="Also apply fixes that change what runs on an approximation (a save chosen by the setup's own "
                   "tests); without it they are reported for review. `unsafe-fixes = true` in the configuration.")
@click.option("--no-unsafe-fixes", "unsafe_fixes", flag_value=False,
              help="Report unsafe fixes for review even when the configuration enables them.")
@click.option("--no-cache", is_flag=True,
              help="Neither read nor write the result cache (also LORA_CODEMOD_NO_CACHE=1). [default: cached in "
                   ".lora_codemod_cache/ beside the configuration, or `cache-dir`]")
@click.option("--fix-config", is_flag=True,
              help="LC007: also set stage3_gather_16bit_weights_on_model_save to true in the DeepSpeed JSON "
                   "configs it reports (they are your files: off by default; --diff shows the change).")
@config_options
def fix(paths, show_diff, check, select, ignore, flag_pattern, output_format, exclude, extend_exclude, force_exclude,
        include_generated, show_suppressed, statistics, exit_zero, exit_non_zero_on_fix, stdin_filename, verbose, quiet,
        color, no_color, jobs, unsafe_fixes, no_cache, fix_config, config_file, isolated) -> None:
    """Rewrite LoRA adapter saves in PATHS (files or directories; default '.', '-' for stdin).

    Exit status: 0 nothing to do or everything fixed; 1 findings under --check/--diff, or a
    finding that needs review (or a change, with --exit-non-zero-on-fix); 2 usage error, bad
    configuration, or a file that cannot be read or parsed; 130 interrupted (no file is left
    half-written).
    """
    from lora_codemod.cache import disabled_by_environment
    from lora_codemod.commands.fix import FixOptions, run_fix
    from lora_codemod.discover import Excluder
    from lora_codemod.engine import default_jobs

    if exit_zero and exit_non_zero_on_fix:
        raise click.UsageError("--exit-zero and --exit-non-zero-on-fix cannot be combined")
    if flag_pattern is not None:
        try:
            Config(flag_pattern=flag_pattern)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--flag-pattern") from None
    paths = list(paths) or ["."]
    if "-" in paths and len(paths) > 1:
        raise click.UsageError("'-' (stdin) cannot be combined with other paths")
    settings = _settings(paths, config_file, isolated, {
        "select": select, "ignore": ignore, "flag-pattern": flag_pattern, "exclude": exclude,
        "extend-exclude": extend_exclude, "output-format": output_format, "unsafe-fixes": unsafe_fixes})
    fmt = settings["output-format"]
    if paths == ["-"] and fmt in ("json", "sarif") and not (show_diff or check):
        raise click.UsageError(f"--output-format {fmt} with '-' needs --check or --diff (stdout would hold the code)")
    config = settings.engine_config(include_generated=include_generated)
    base = settings.config_dir
    groups = [(base if settings.origins["exclude"] != "command line" else ".", settings["exclude"]),
              (base if settings.origins["extend-exclude"] != "command line" else ".", settings["extend-exclude"])]
    choice = "never" if no_color else color
    options = FixOptions(
        diff=show_diff, check=check, verbose=verbose, quiet=quiet, color=color_choice(choice, sys.stdout),
        color_err=color_choice(choice, sys.stderr), stdin_filename=stdin_filename, jobs=jobs or default_jobs(),
        progress=hasattr(sys.stderr, "isatty") and sys.stderr.isatty() and fmt == "text",
        output_format=fmt, show_suppressed=show_suppressed, statistics=statistics, exit_zero=exit_zero,
        exit_non_zero_on_fix=exit_non_zero_on_fix, force_exclude=force_exclude,
        excluder=Excluder.from_patterns(groups), fix_config=fix_config,
        cache_dir=None if no_cache or disabled_by_environment() or paths == ["-"] else settings.cache_dir)
    sys.exit(run_fix(paths, config, options))


@cli.command("config")
@click.argument("paths", nargs=-1, type=click.Path())
@config_options
def config_command(paths, config_file, isolated) -> None:
    """Print the resolved configuration for PATHS and where each value came from."""
    from lora_codemod.config import shown_value

    settings = _settings(list(paths) or ["."], config_file, isolated, {})
    click.echo(f"configuration file: {settings.config_file or '(none)'}")
    width = max(len(key) for key in settings.values)
    for key, value in settings.values.items():
        click.echo(f"{key:<{width}} = {shown_value(value)}  # {settings.origins[key]}")


@cli.command("rules")
def rules_command() -> None:
    """List the rules."""
    from lora_codemod.rules import ALL_RULES

    width = max(len(rule.name) for rule in ALL_RULES)
    for rule in ALL_RULES:
        click.echo(f"{rule.code}  {rule.name:<{width}}  {rule.summary}")


@cli.command()
@click.argument("code")
def explain(code: str) -> None:
    """Print a rule's documentation: what it does, why, an example, the fix, when it does not apply."""
    from lora_codemod.rules import RULES_BY_CODE

    rule = RULES_BY_CODE.get(code.upper())
    if rule is None:
        click.echo(f"error: unknown rule {code!r} (known: {', '.join(RULE_CODES)})", err=True)
        sys.exit(EXIT_ERROR)
    text = f"# {rule.code} ({rule.name})\n\n{rule.summary}.\n\n{rule.doc}"
    if _use_color(False, sys.stdout):
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(text))
    else:
        click.echo(text, nl=False)


def _register_runtime_commands() -> None:
    """`smoke`, `verify` and `tiny-model` live in lora_codemod.smoke; torch is imported only inside them."""
    from lora_codemod.smoke.commands import smoke, tiny_model, verify

    for command in (smoke, verify, tiny_model):
        cli.add_command(command)


_register_runtime_commands()


def main() -> None:
    cli(prog_name="lora-codemod")


__all__ = ["cli", "main"]
