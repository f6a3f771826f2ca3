"""The reference tables of docs/ agree with the code (python -m cpo_ros.ros.reference)."""

import pytest

from cpo_ros.ros import reference


def _diff(old: str, new: str) -> str:
    import difflib
    return ''.join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), 'docs',
                                        'code', n=0))


def test_parameter_tables_match_the_specs():
    (path, (old, new)), = reference.render(topics=False).items()
    assert old == new, (f'{path} differs from cpo_ros/ros/specs.py; run python -m '
                        f'cpo_ros.ros.reference\n{_diff(old, new)}')


def test_topic_tables_match_the_nodes(domain_id):
    pages = reference.render(topics=True, domain_id=domain_id)
    old, new = pages[reference.DOCS / reference.TOPICS_PAGE]
    assert old == new, (f'docs/ros.md differs from the nodes; run python -m '
                        f'cpo_ros.ros.reference\n{_diff(old, new)}')


def test_check_names_a_stale_page_and_writing_fixes_it(tmp_path, capsys):
    """A default changed in the docs makes --check exit 1 naming the page; a write repairs it."""
    docs = tmp_path / 'docs'
    docs.mkdir()
    page = docs / reference.PARAMETERS_PAGE
    good = (reference.DOCS / reference.PARAMETERS_PAGE).read_text()
    row = '| `num_envs` | `16` |'
    assert row in good
    page.write_text(good.replace(row, '| `num_envs` | `8` |'))
    assert reference.main(['--check', '--parameters-only', '--docs', str(docs)]) == 1
    assert f'stale: {page}' in capsys.readouterr().out
    assert reference.main(['--parameters-only', '--docs', str(docs)]) == 0
    assert page.read_text() == good
    assert reference.main(['--check', '--parameters-only', '--docs', str(docs)]) == 0


def test_replace_block_needs_its_markers():
    text = 'a\n<!-- BEGIN GENERATED X -->\nold\n<!-- END GENERATED X -->\nb\n'
    assert reference.replace_block(text, 'X', 'new') == (
        'a\n<!-- BEGIN GENERATED X -->\nnew\n<!-- END GENERATED X -->\nb\n')
    with pytest.raises(ValueError, match='BEGIN GENERATED Y'):
        reference.replace_block(text, 'Y', 'new')
