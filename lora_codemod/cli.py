"""Placeholder CLI (being written)."""
import click


@click.group()
def cli() -> None:
    """lora-codemod"""


def main() -> None:
    cli()
