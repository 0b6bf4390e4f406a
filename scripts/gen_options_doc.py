"""Regenerate docs/OPTIONS.md from the option dataclasses and registered components."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srkit.config.options_doc import options_markdown  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--output', default=str(Path(__file__).resolve().parents[1] / 'docs' / 'OPTIONS.md'))
    args = parser.parse_args()
    Path(args.output).write_text(options_markdown(), encoding='utf-8')
    print(f'wrote {args.output}')


if __name__ == '__main__':
    main()
