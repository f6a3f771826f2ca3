"""package.xml and the MJCF models: well-formed XML, package format 3 with its dependencies."""

from pathlib import Path
import xml.etree.ElementTree as ET

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.linter
def test_package_xml_is_format_3_with_run_and_test_dependencies():
    root = ET.parse(REPO / 'package.xml').getroot()
    assert root.tag == 'package' and root.get('format') == '3'
    for tag in ('name', 'version', 'description', 'maintainer', 'license'):
        assert root.find(tag) is not None and root.find(tag).text.strip(), tag
    assert root.find('name').text == 'cpo_ros'
    assert root.find('export/build_type').text == 'ament_python'
    run = {e.text for e in root.findall('exec_depend')}
    for dep in ('rclpy', 'std_msgs', 'geometry_msgs', 'nav_msgs', 'diagnostic_msgs',
                'visualization_msgs', 'rosgraph_msgs', 'launch', 'launch_ros',
                'ament_index_python'):
        assert dep in run, dep
    assert {e.text for e in root.findall('test_depend')} >= {'ament_flake8', 'ament_pep257',
                                                            'ament_xmllint', 'python3-pytest'}


@pytest.mark.linter
@pytest.mark.parametrize('path', sorted((REPO / 'sim').glob('*.xml')), ids=lambda p: p.name)
def test_models_are_well_formed(path):
    assert ET.parse(path).getroot().tag == 'mujoco'
