"""The marker lists of conftest.py name tests that exist (a renamed test keeps its marker)."""

from pathlib import Path

import conftest

TESTS = Path(__file__).resolve().parent


def test_marker_lists_name_existing_files_and_tests():
    missing = [f'{name}.py' for name in conftest.SLOW_FILES | conftest.ROS_FILES
               | conftest.LEARNING_FILES if not (TESTS / f'{name}.py').is_file()]
    for entry in conftest.SLOW_TESTS:
        module, name = entry.split('::')
        path = TESTS / f'{module}.py'
        if not path.is_file() or f'def {name}(' not in path.read_text():
            missing.append(entry)
    assert not missing, f'conftest.py names tests that do not exist: {missing}'


def test_learning_names_are_matched_as_words():
    assert conftest.LEARNING_NAME.search('test_training_writes_its_files_and_learns')
    assert conftest.LEARNING_NAME.search('test_gather_trains_through_the_graph')
    assert not conftest.LEARNING_NAME.search('test_learner_parameter_ranges_lie_inside')
