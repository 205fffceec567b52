"""Run the rules on sources and files: the one place that parses, rewrites and writes.

`transform_source` is pure (bytes in, result out) and is what the CLI, the smoke runner and a
process pool call. `process_file` adds reading and the atomic, change-checked write.
"""

from __future__ import annotations

import ast
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lora_codemod.config import Config
from lora_codemod.findings import Finding, SourceError, SourceResult
from lora_codemod.prefilter import ast_may_need_work, text_may_need_work

# Exit codes shared by every command.
EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def may_need_work(source: bytes, config: Config) -> bool:
    """Can any rule apply? Most files of a tree stop at the text test, the rest mostly at `ast`."""
    return text_may_need_work(source, config.flag_pattern) and ast_may_need_work(source, config.flag_regex)


def transform_source(source: bytes, path: str = "<stdin>", config: Config | None = None) -> SourceResult:
    """Apply every enabled rule to `source` in memory. Never touches the file system."""
    config = config or Config()
    if not may_need_work(source, config):
        return SourceResult(path=path, source=source, output=source)

    # libcst and the rules are imported here so that `--help` and no-op runs stay fast.
    import libcst as cst

    from lora_codemod.analysis.index import build_index
    from lora_codemod.plan import PlanApplier
    from lora_codemod.rules import ALL_RULES, RuleContext

    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        return SourceResult(path=path, source=source, output=source, error=_parse_error(path, source, exc))
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        return SourceResult(path=path, source=source, output=source, error=SourceError(path, f"cannot decode: {exc}"))

    text = source.decode(module.encoding, errors="replace")
    ctx = RuleContext(index=build_index(module, config.flag_regex, text), config=config)
    for rule in ALL_RULES:
        if config.enabled(rule.code):
            rule.check(ctx)

    output = source
    if ctx.plan:
        output = module.visit(PlanApplier(ctx.plan, module.default_indent)).bytes
        try:
            compile(output, path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:  # a bug of ours: never hand it to the user
            error = SourceError(path, f"internal error: the rewrite does not compile ({exc}); file left unchanged")
            return SourceResult(path=path, source=source, output=source, error=error)

    findings: list[Finding] = []
    if ctx.findings:
        from libcst.metadata import MetadataWrapper, PositionProvider

        # Positions cost a code-generation pass: paid only by files that have findings.
        positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
        for pending in ctx.findings:
            start = positions[pending.node].start
            findings.append(
                Finding(pending.code, path, start.line, start.column + 1, pending.message, pending.status, pending.reason)
            )
        findings.sort(key=lambda f: (f.line, f.col, f.code))
    return SourceResult(path=path, source=source, output=output, findings=findings)


def _parse_error(path: str, source: bytes, exc) -> SourceError:
    """Python's own message and position when it also rejects the file (libcst places tokenizer
    errors at 1:1); libcst's when only libcst does (syntax newer than it knows)."""
    try:
        compile(source, path, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as syntax:
        return SourceError(path, f"cannot parse: {syntax.msg}", syntax.lineno or 0, syntax.offset or 0)
    except ValueError:
        pass
    return SourceError(path, f"cannot parse: {exc.message}", exc.raw_line, exc.raw_column + 1)


class ChangedOnDisk(Exception):
    """The file changed between our read and our write: we do not overwrite someone's edit."""


@dataclass
class FileOutcome:
    result: SourceResult
    written: bool = False


def process_file(path: str, config: Config, write: bool) -> FileOutcome:
    """Read, transform and (when `write`) atomically replace one file. Top-level: poolable."""
    try:
        with open(path, "rb") as handle:
            before = os.fstat(handle.fileno())
            source = handle.read()
    except OSError as exc:
        error = SourceError(path, f"cannot read: {exc.strerror or exc}")
        return FileOutcome(SourceResult(path=path, source=b"", output=b"", error=error))
    result = transform_source(source, path, config)
    if not write or not result.changed:
        return FileOutcome(result)
    try:
        atomic_replace(path, result.output, expected=source, expected_stat=before)
    except ChangedOnDisk:
        result.error = SourceError(path, "changed on disk while it was being fixed; not overwritten (run again)")
        return FileOutcome(result)
    except OSError as exc:
        result.error = SourceError(path, f"cannot write: {exc.strerror or exc}")
        return FileOutcome(result)
    return FileOutcome(result, written=True)


def atomic_replace(path: str, data: bytes, expected: bytes, expected_stat: os.stat_result) -> None:
    """Write `data` to a temp file beside `path` and rename it over `path`, keeping its mode.

    Refuses (ChangedOnDisk) when the file no longer holds `expected`.
    """
    target = Path(os.path.realpath(path))  # through a symlink, replace the file, not the link
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".lora-codemod.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, stat.S_IMODE(expected_stat.st_mode))
        try:
            os.chown(tmp, expected_stat.st_uid, expected_stat.st_gid)
        except (PermissionError, AttributeError):
            pass
        now = os.stat(target)
        if (now.st_mtime_ns, now.st_size) != (expected_stat.st_mtime_ns, expected_stat.st_size):
            raise ChangedOnDisk(path)
        if target.read_bytes() != expected:
            raise ChangedOnDisk(path)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
