"""docs/OPTIONS.md is generated from the code; this fails when the two drift apart."""
from conftest import REPO

from srkit.config.options_doc import options_markdown


def test_options_doc_is_up_to_date():
    assert (REPO / 'docs' / 'OPTIONS.md').read_text(encoding='utf-8') == options_markdown(), \
        'docs/OPTIONS.md is stale: run python scripts/gen_options_doc.py'
