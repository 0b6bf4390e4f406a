"""Regenerate docs/OPTIONS.md from the option dataclasses and registered components.

    python scripts/gen_options_doc.py                    # writes docs/OPTIONS.md
    python scripts/gen_options_doc.py --output /tmp/OPTIONS.md
"""
from __future__ import annotations

import argparse
from pathlib import Path

from srkit.config.options_doc import options_markdown
from srkit.engine.cli import run_entry_point

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / 'docs' / 'OPTIONS.md'


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--output', type=Path, default=DEFAULT_OUTPUT,
                        help="the Markdown file to write (default: this repository's docs/OPTIONS.md)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.output.write_text(options_markdown(), encoding='utf-8')
    print(f'wrote {args.output}')


if __name__ == '__main__':
    run_entry_point(main)
