"""Renderers of `SourceResult`s: text lines, unified diffs (plain or coloured)."""
