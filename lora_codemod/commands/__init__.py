"""What each CLI command does, apart from parsing its options (kept out of cli.py)."""
