"""Run the rules on sources and files: the one place that parses, rewrites and writes.

`transform_source` is pure (bytes in, result out) and is what the CLI, the smoke runner and a
process pool call. `process_file` adds reading and the atomic, change-checked write. `run_files`
is the whole-tree engine: it reads every file and applies the text prefilter in this process
(a pool only slows a plain scan down), hands the few files that pass it to a process pool
(started only once there are two of them to share), and writes in this process, one file at a
time, so that an interrupt never leaves a half-written or temporary file behind.

libcst, the rules, multiprocessing and tempfile are imported only when a file needs them:
a run that parses nothing never imports libcst.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from lora_codemod.config import Config
from lora_codemod.findings import Finding, SourceError, SourceResult, Status

# Exit codes shared by every command.
EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it

# libcst needs about 600 bytes of memory per source byte and about 10 s per MB here
# (shared/docs/performance-notes.md): a 5 MB generated file would take 3 GB and minutes.
MAX_PARSE_BYTES = 2_000_000


def text_stage(source: bytes, config: Config, path: str | None = None) -> bool:
    """The first, cheapest prefilter stage (a few substring and regex tests)."""
    from lora_codemod.prefilter import text_may_need_work

    return text_may_need_work(source, config.flag_pattern) or _beyond_the_prefilter(source, config, path)


def may_need_work(source: bytes, config: Config, path: str | None = None) -> bool:
    """Can any rule apply? Most files of a tree stop at the text test, the rest mostly at `ast`."""
    from lora_codemod.prefilter import ast_may_need_work, text_may_need_work

    if text_may_need_work(source, config.flag_pattern) and ast_may_need_work(source, config.flag_regex):
        return True
    return _beyond_the_prefilter(source, config, path)


def _beyond_the_prefilter(source: bytes, config: Config, path: str | None) -> bool:
    """What the two stages cannot know, for a file that saves: `trainer-classes` from the
    configuration (the stages know the standard Trainer names only), and LC007's DeepSpeed
    configs beside the file (a few globs, each config read once per version)."""
    from lora_codemod.prefilter import zero3_config_beside

    if b"save_pretrained" not in source and b"save_model" not in source:
        return False
    if config.trainer_classes and any(name.encode() in source for name in config.trainer_classes):
        return True
    return path is not None and config.enabled("LC007") and zero3_config_beside(path)


def transform_source(source: bytes, path: str = "<stdin>", config: Config | None = None) -> SourceResult:
    """Apply every enabled rule to `source` in memory. Never touches the file system."""
    config = config or Config()
    from lora_codemod.suppression import skip_reason

    skipped = skip_reason(source, config.include_generated)
    if skipped:
        return SourceResult(path=path, source=source, output=source, skipped=skipped)
    if path.endswith(".ipynb") and source.lstrip()[:1] == b"{":  # a notebook: its code cells as one module
        from lora_codemod.notebook import open_notebook

        notebook = open_notebook(source, path)
        if isinstance(notebook, SourceResult):
            return notebook
        return notebook.back(_transform_module(notebook.module, path, config))
    return _transform_module(source, path, config)


def _transform_module(source: bytes, path: str, config: Config) -> SourceResult:
    """transform_source for one Python module (a file, or a notebook's cells joined)."""
    if not may_need_work(source, config, path):
        return SourceResult(path=path, source=source, output=source)
    if len(source) > MAX_PARSE_BYTES:
        message = (f"too large to analyse ({len(source) / 1e6:.1f} MB; the limit is {MAX_PARSE_BYTES / 1e6:.1f} MB, "
                   "as the parser needs ~600 bytes of memory per byte); not parsed, left unchanged")
        return SourceResult(path=path, source=source, output=source, error=SourceError(path, message))

    # libcst and the rules are imported here so that `--help` and no-op runs stay fast.
    import libcst as cst

    from lora_codemod.analysis.index import build_index
    from lora_codemod.plan import PlanApplier
    from lora_codemod.rules import ALL_RULES, RuleContext

    if b"\0" in source:
        return _unchanged(path, source, "cannot parse: binary file (it contains NUL bytes)")
    undecodable = _decode_error(path, source)
    if undecodable is not None:
        return SourceResult(path=path, source=source, output=source, error=undecodable)
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        return SourceResult(path=path, source=source, output=source, error=_parse_error(path, source, exc))
    except (UnicodeDecodeError, SyntaxError, LookupError) as exc:  # the encoding (checked above)
        return _unchanged(path, source, f"cannot decode: {exc}")
    except RecursionError:
        return _unchanged(path, source, "cannot parse: nested too deeply for the parser")

    from lora_codemod.suppression import (
        drop_edits,
        is_suppressed,
        line_suppressions,
        plan_edits,
    )

    text = source.decode(module.encoding, errors="replace")
    index = build_index(module, config.flag_regex, text, config.trainer_classes)
    ctx = RuleContext(index=index, config=config, path=path)
    for rule in ALL_RULES:
        if config.enabled(rule.code):
            ctx.attributed = plan_edits(ctx.plan)  # what a rule adds is its own findings'
            rule.check(ctx)

    findings: list[Finding] = []
    if ctx.findings:
        spans = _finding_spans(module, source, text, index, [p.node for p in ctx.findings])
        table = line_suppressions(text)
        dropped_edits: set = set()
        kept_edits: set = set()
        for pending in ctx.findings:
            start_line, start_col, end_line, end_col = spans[id(pending.node)]
            suppressed = is_suppressed(table, pending.code, start_line)
            status, reason, unsafe = pending.status, pending.reason, bool(pending.unsafe)
            held_back = unsafe and status is Status.FIXED and not config.unsafe_fixes
            if held_back:  # an unsafe fix, not enabled: reported for review, its edits not applied
                status, reason = Status.REVIEW, pending.unsafe
            (dropped_edits if suppressed or held_back else kept_edits).update(pending.edits)
            if pending.where is not None:  # a finding in another file (LC007: a DeepSpeed config)
                where_path, line, col = pending.where
                findings.append(Finding(pending.code, where_path, line, col, pending.message, status,
                                        reason, suppressed=suppressed, unsafe=unsafe))
                continue
            findings.append(Finding(pending.code, path, start_line, start_col + 1, pending.message,
                                    status, reason, end_line, end_col + 1, suppressed, unsafe=unsafe))
        findings.sort(key=lambda f: (f.path != path, f.path, f.line, f.col, f.code))
        if dropped_edits - kept_edits:
            drop_edits(ctx.plan, dropped_edits, kept_edits)

    output = source
    if ctx.plan:
        output = module.visit(PlanApplier(ctx.plan, module.default_indent)).bytes
        try:
            compile(output, path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:  # a bug of ours: never hand it to the user
            error = SourceError(path, f"internal error: the rewrite does not compile ({exc}); file left unchanged")
            return SourceResult(path=path, source=source, output=source, error=error)
        # Invariants 7 and 8, on the trees: no collective moved under a guard, everything rank 0
        # ran still runs there. A rewrite that breaks them is a bug of ours, never written.
        from lora_codemod.analysis.invariants import violations

        broken = violations(module, cst.parse_module(output), config.flag_regex, config.trainer_classes,
                            before_index=index)
        if broken:
            error = SourceError(path, f"internal error: the rewrite would break the contract ({broken[0]}); "
                                "file left unchanged")
            return SourceResult(path=path, source=source, output=source, error=error)
    return SourceResult(path=path, source=source, output=output, findings=findings)


def _finding_spans(module, source: bytes, text: str, index, nodes: list) -> dict[int, tuple[int, int, int, int]]:
    """(line, column, end line, end column) of each finding's node: from the stdlib tree when
    every node pairs with one of its statements or calls, else from libcst's PositionProvider
    (a code-generation pass over the whole module)."""
    import re

    from lora_codemod.analysis.positions import find_positions
    from lora_codemod.prefilter import parse_ast

    lines = [line.encode("utf-8") for line in re.split(r"\r\n|\r|\n", text.lstrip("\ufeff"))]
    spans = find_positions(parse_ast(source), lines, index.statements, [c.node for c in index.calls], nodes)
    if spans is not None:
        return spans
    from libcst.metadata import MetadataWrapper, PositionProvider

    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    out = {}
    for node in nodes:
        span = positions[node]
        out[id(node)] = (span.start.line, span.start.column, span.end.line, span.end.column)
    return out


def _unchanged(path: str, source: bytes, message: str, line: int = 0, col: int = 0) -> SourceResult:
    return SourceResult(path=path, source=source, output=source, error=SourceError(path, message, line, col))


def _parse_error(path: str, source: bytes, exc) -> SourceError:
    """Python's own message and position when it also rejects the file (libcst places tokenizer
    errors at 1:1); libcst's when only libcst does (syntax newer than it knows)."""
    import ast

    try:
        compile(source, path, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as syntax:
        return SourceError(path, f"cannot parse: {syntax.msg}", syntax.lineno or 0, syntax.offset or 0)
    except ValueError:
        pass
    return SourceError(path, f"cannot parse: {exc.message}", exc.raw_line, exc.raw_column + 1)


def _decode_error(path: str, source: bytes) -> SourceError | None:
    """None when the source decodes (BOM, coding cookie or UTF-8, as Python reads it); else
    which byte cannot be decoded, as line:col, and what the file would need."""
    import io
    import tokenize

    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)  # BOM, cookie or utf-8
    except SyntaxError as bad:
        if "invalid or missing encoding" not in str(bad):  # an unknown cookie, or one that contradicts the BOM
            return SourceError(path, f"cannot decode: {bad}", 1, 1)
        encoding = "utf-8"  # no cookie, and a first line that is not UTF-8: find the byte
    try:
        source.decode(encoding)
    except UnicodeDecodeError as undecodable:
        offset = undecodable.start
        line = source.count(b"\n", 0, offset) + 1
        col = offset - (source.rfind(b"\n", 0, offset) + 1) + 1
        hint = " (add a coding cookie such as `# -*- coding: latin-1 -*-` if it is in another encoding)"
        return SourceError(path, f"cannot decode: byte 0x{source[offset]:02x} is not valid {encoding}"
                           + (hint if encoding.startswith("utf") else ""), line, col)
    except LookupError as unknown:
        return SourceError(path, f"cannot decode: {unknown}", 1, 1)
    return None


class ChangedOnDisk(Exception):
    """The file changed between our read and our write: we do not overwrite someone's edit."""


class Deleted(ChangedOnDisk):
    """The file was removed between our read and our write: we do not recreate it."""


class ReadOnly(Exception):
    """The file has no write permission: we do not replace it (rename would, even for root)."""


@dataclass
class FileOutcome:
    result: SourceResult
    written: bool = False


class ReadError(Exception):
    pass


def read_source(path: str) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file and its stat. O_NONBLOCK so that opening a FIFO that slipped
    through discovery cannot hang; anything but a regular file is refused before reading."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ReadError(f"cannot read: {_reason(exc)}") from None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            kind = "is a directory" if stat.S_ISDIR(before.st_mode) else (
                "a FIFO" if stat.S_ISFIFO(before.st_mode) else "not a regular file")
            raise ReadError(f"cannot read: {kind}")
        chunks = []
        while True:
            chunk = os.read(fd, max(before.st_size + 1, 65536))
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        raise ReadError(f"cannot read: {_reason(exc)}") from None
    finally:
        os.close(fd)
    return b"".join(chunks), before


def _reason(exc: OSError) -> str:
    import errno

    if exc.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if exc.errno == errno.ENOENT:
        return "no such file (deleted during the run?)"
    if exc.errno == errno.EISDIR:
        return "is a directory"
    return (exc.strerror or str(exc)).lower()


def process_file(path: str, config: Config, write: bool) -> FileOutcome:
    """Read, transform and (when `write`) atomically replace one file."""
    try:
        source, before = read_source(path)
    except ReadError as exc:
        return FileOutcome(SourceResult(path=path, source=b"", output=b"", error=SourceError(path, str(exc))))
    result = _transform_guarded(source, path, config)
    if not write:
        return FileOutcome(result)
    return write_result(result, before)


def _transform_guarded(source: bytes, path: str, config: Config) -> SourceResult:
    """transform_source, with a crash of ours turned into an error for this one file (the run
    goes on with the others and exits 2) instead of a traceback that stops a whole tree."""
    try:
        return transform_source(source, path, config)
    except MemoryError:
        return _unchanged(path, source, "out of memory while analysing; left unchanged")
    except RecursionError:
        return _unchanged(path, source, "cannot parse: nested too deeply for the parser")
    except Exception as exc:  # noqa: BLE001 - a bug of ours must not cost the user the run
        return _unchanged(path, source, f"internal error ({type(exc).__name__}: {exc}); left unchanged, "
                          "please report this file")


def write_result(result: SourceResult, before: os.stat_result) -> FileOutcome:
    """Write a changed result over its file (atomically, only if the file still holds what was read)."""
    if not result.changed:
        return FileOutcome(result)
    path = result.path
    try:
        atomic_replace(path, result.output, expected=result.source, expected_stat=before)
    except Deleted:
        result.error = SourceError(path, "deleted while it was being fixed; not recreated")
        return FileOutcome(result)
    except ChangedOnDisk:
        result.error = SourceError(path, "changed on disk while it was being fixed; not overwritten (run again)")
        return FileOutcome(result)
    except ReadOnly as exc:
        result.error = SourceError(path, f"read-only file ({exc}); not replaced (make it writable to fix it)")
        return FileOutcome(result)
    except OSError as exc:
        result.error = SourceError(path, f"cannot write: {_reason(exc)}; left unchanged")
        return FileOutcome(result)
    return FileOutcome(result, written=True)


def _signals_held():
    """Hold SIGINT/SIGTERM while a file is being replaced: the write completes (or never starts)
    and the signal is delivered right after. Main thread on POSIX only; elsewhere a no-op."""
    import contextlib
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def held():
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    return held()


def _still_as_read(target: str, expected: bytes, expected_stat: os.stat_result) -> os.stat_result:
    try:
        now = os.stat(target)
    except FileNotFoundError:
        raise Deleted(target) from None
    if (now.st_mtime_ns, now.st_size, now.st_ino) != (expected_stat.st_mtime_ns, expected_stat.st_size,
                                                      expected_stat.st_ino):
        raise ChangedOnDisk(target)
    with open(target, "rb") as handle:
        if handle.read() != expected:
            raise ChangedOnDisk(target)
    return now


def atomic_replace(path: str, data: bytes, expected: bytes, expected_stat: os.stat_result) -> None:
    """Write `data` to a temp file beside `path`, fsync it, and rename it over `path`, keeping
    its mode and owner.

    Refuses with Deleted/ChangedOnDisk when the file no longer holds `expected`, and with
    ReadOnly when it has no write permission (checked on the mode bits too: root can rename
    over a 0444 file, and a read-only file is a user's decision). SIGINT/SIGTERM are held for
    the duration, and any failure removes the temp file.
    """
    import tempfile

    target = os.path.realpath(path)  # through a symlink, replace the file, not the link
    with _signals_held():
        now = _still_as_read(target, expected, expected_stat)
        mode = stat.S_IMODE(now.st_mode)
        if not mode & 0o222:
            raise ReadOnly(f"mode {mode:04o}")
        if not os.access(target, os.W_OK):
            raise ReadOnly(f"mode {mode:04o}, not writable by this user")
        directory, name = os.path.split(target)
        fd, tmp = tempfile.mkstemp(dir=directory or ".", prefix=f".{name}.", suffix=".lora-codemod.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
            if hasattr(os, "chown") and (now.st_uid, now.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.chown(tmp, now.st_uid, now.st_gid)
                except PermissionError:
                    pass
            _still_as_read(target, expected, expected_stat)  # once more, just before the rename
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_directory(directory or ".")


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- the whole-tree engine ---------------------------------------------------------------------


@dataclass
class Progress:
    """What a progress display shows: files scanned (read and text-tested), handed to the parsers,
    changed, and with errors."""

    scanned: int = 0
    parsed: int = 0
    cached: int = 0  # passed the text test, and the result was in the cache
    changed: int = 0
    errors: int = 0
    total: int = 0


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _pool_context():
    import multiprocessing

    # fork: workers start in milliseconds with everything already imported (Linux); elsewhere
    # the platform's default (spawn) re-imports lora_codemod in each worker.
    if "fork" in multiprocessing.get_all_start_methods() and os.name == "posix" and os.uname().sysname == "Linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _worker_init() -> None:
    import signal

    # Ctrl-C reaches the whole process group: the main process alone handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _work(path: str, source: bytes, config: Config) -> tuple[bytes | None, list[Finding], SourceError | None, str]:
    """In a worker: transform and send back only what the main process does not already have."""
    result = _transform_guarded(source, path, config)
    return (result.output if result.output != source else None), result.findings, result.error, result.skipped


@dataclass
class _Pending:
    path: str
    source: bytes
    before: os.stat_result
    future: object | None = None  # a concurrent.futures.Future once submitted to the pool
    result: SourceResult | None = None  # known already (a cache hit)
    key: str | None = None  # its cache key, to store what is computed


def _start_pool(jobs: int):
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=jobs, mp_context=_pool_context(), initializer=_worker_init)


def _stop_pool(pool) -> None:
    """Cancel what has not started and end the workers now (an interrupt must not wait for a
    worker still parsing a large file)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.terminate()
        except (OSError, AttributeError):
            pass
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.join(timeout=5)
        except (OSError, AttributeError, AssertionError):
            pass


def run_files(
    items: Iterable[str | object],
    config: Config,
    *,
    write: bool,
    jobs: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    cache=None,
) -> Iterator[FileOutcome]:
    """Process `items` (paths, or discover.Problem entries) and yield one FileOutcome per item,
    in the order given, whatever finishes first.

    Reading and the text prefilter run here; files that pass it are transformed in a pool of
    `jobs` processes (started only when a second such file turns up: one file is quicker
    in-process) or here when `jobs` is 1; writes happen here, one file at a time. `cache`: a
    cache.ResultCache: a file whose result is cached is not analysed again (writes still check
    the file on disk).
    """
    progress = Progress(total=len(items) if isinstance(items, (list, tuple)) else 0)
    queue: deque[FileOutcome | _Pending] = deque()
    held: list[_Pending] = []  # text-stage candidates waiting for a pool worth starting
    pool = None

    def finish(item: FileOutcome | _Pending) -> FileOutcome:
        if isinstance(item, FileOutcome):
            return item
        if item.result is not None:
            result = item.result
        elif item.future is not None:
            try:
                output, findings, error, skipped = item.future.result()
            except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory)
                output, findings, skipped = None, [], ""
                error = SourceError(item.path, f"internal error: the worker process analysing it died ({exc}); "
                                    "left unchanged")
            result = SourceResult(item.path, item.source, item.source if output is None else output, findings, error,
                                  skipped)
        else:
            result = _transform_guarded(item.source, item.path, config)
        if item.key is not None and item.result is None:
            cache.put(item.key, result)
        outcome = write_result(result, item.before) if write else FileOutcome(result)
        progress.changed += outcome.result.changed
        progress.errors += outcome.result.error is not None
        return outcome

    def ready(item: FileOutcome | _Pending) -> bool:
        return isinstance(item, FileOutcome) or item.result is not None or (
            item.future is not None and item.future.done())

    def submit(pending: _Pending) -> None:
        pending.future = pool.submit(_work, pending.path, pending.source, config)

    try:
        for item in items:
            if not isinstance(item, str):  # a discovery problem
                progress.errors += 1
                queue.append(FileOutcome(SourceResult(item.path, b"", b"", error=SourceError(item.path, item.message))))
            elif cache is not None and cache.known_clean(item):
                queue.append(FileOutcome(SourceResult(item, b"", b"")))  # no rule can act on it
            else:
                try:
                    source, before = read_source(item)
                except ReadError as exc:
                    progress.errors += 1
                    queue.append(FileOutcome(SourceResult(item, b"", b"", error=SourceError(item, str(exc)))))
                else:
                    if text_stage(source, config, item):
                        pending = _Pending(item, source, before)
                        queue.append(pending)
                        if cache is not None:
                            pending.key = cache.key(item, source)
                            pending.result = cache.get(pending.key, item, source)
                        if pending.result is not None:
                            progress.cached += 1  # nothing to analyse
                        elif pool is not None:
                            progress.parsed += 1
                            submit(pending)
                        elif jobs > 1:
                            progress.parsed += 1
                            held.append(pending)
                            if len(held) >= 2:
                                pool = _start_pool(jobs)
                                for waiting in held:
                                    submit(waiting)
                                held.clear()
                        else:
                            progress.parsed += 1
                    else:
                        # A file no rule can act on: nothing of it is kept.
                        queue.append(FileOutcome(SourceResult(item, b"", b"")))
                        if cache is not None:
                            cache.mark_clean(item, source, before)
            progress.scanned += 1
            # -j 1 finishes every file at once; with a pool, what is done, in order.
            while queue and (ready(queue[0]) or (pool is None and not held)):
                yield finish(queue.popleft())
            if on_progress is not None:
                on_progress(progress)
        while queue:
            yield finish(queue.popleft())
            if on_progress is not None:
                on_progress(progress)
        if cache is not None:
            cache.flush()
        if pool is not None:  # every result is in: a clean shutdown (no worker is left to stop)
            pool.shutdown(wait=True)
            pool = None
    finally:
        if pool is not None:  # interrupted, or a caller that stopped early: stop the workers now
            _stop_pool(pool)
