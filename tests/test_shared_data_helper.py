"""conftest.require_shared and require_module: a missing shared-data path or optional runtime of the test extra skips
locally and fails under CI=true (CI always has both)."""
import pytest
from conftest import require_module, require_shared


@pytest.mark.parametrize('ci', [None, 'false', '0', ''])
def test_missing_path_skips_with_its_name_outside_ci(tmp_path, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv('CI', raising=False)
    else:
        monkeypatch.setenv('CI', ci)
    message = r'nope not found \(1 of 2 shared-data paths missing\).*SRDISTILL_SHARED'
    with pytest.raises(pytest.skip.Exception, match=message):
        require_shared(tmp_path, tmp_path / 'nope')


@pytest.mark.parametrize('ci', ['true', 'True', ' TRUE '])
def test_missing_path_fails_under_ci(tmp_path, monkeypatch, ci):
    monkeypatch.setenv('CI', ci)
    message = r'nope not found .*CI=true, where the shared data is always present'
    with pytest.raises(pytest.fail.Exception, match=message):
        require_shared(tmp_path / 'nope')


def test_present_paths_neither_skip_nor_fail(tmp_path, monkeypatch):
    monkeypatch.setenv('CI', 'true')
    (tmp_path / 'a.png').write_bytes(b'x')
    assert require_shared(tmp_path, tmp_path / 'a.png') is None



def test_missing_module_skips_outside_ci_and_fails_under_it(monkeypatch):
    monkeypatch.delenv('CI', raising=False)
    with pytest.raises(pytest.skip.Exception, match=r'no_such_runtime_xyz is not installed .*pip install -e'):
        require_module('no_such_runtime_xyz')
    monkeypatch.setenv('CI', 'true')
    with pytest.raises(pytest.fail.Exception, match=r'no_such_runtime_xyz is not installed .*CI=true'):
        require_module('no_such_runtime_xyz')
    assert require_module('json').dumps([1]) == '[1]'  # present: imported and returned
