"""``python -m settings --markdown``: print the README's configuration table."""

from __future__ import annotations

import argparse

from settings.markdown import markdown_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m settings", description="The settings table.")
    parser.add_argument("--markdown", action="store_true", help="print the README's configuration table")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table())
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
