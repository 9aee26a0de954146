"""setup.sh on a machine without the Debian packages the tests need (issue 20 item 10).

The machine state is made with PATH: a ``dpkg-query`` that knows no package and an ``id``
that says "not root"; the rest of the run is the real script on a copy of the tree whose .venv
is up to date (so it ends after the Debian check, as a re-run does).
"""
import glob
import hashlib
import os
import shutil
import stat
import subprocess

import pytest
from conftest import REPO, tool


def _exe(path, text):
    path.write_text('#!/bin/sh\n' + text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_setup_names_the_missing_debian_packages_when_not_root(tmp_path):
    tree = tmp_path / 'tree'
    digest = hashlib.sha256()
    stamped = ['requirements.txt', 'setup.py', 'setup.cfg',
               *sorted(glob.glob('neurovla_ros/*/*.c', root_dir=REPO))]    # as setup.sh hashes
    for rel in ['setup.sh', 'debian-packages.txt', *stamped]:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(REPO, rel), tree / rel)
    for rel in stamped:
        digest.update((tree / rel).read_bytes())
    (tree / '.venv' / 'bin').mkdir(parents=True)
    _exe(tree / '.venv' / 'bin' / 'neurovla', 'exit 0\n')
    (tree / '.venv' / '.neurovla-setup').write_text(digest.hexdigest() + '\n')
    stubs = tmp_path / 'stubs'
    stubs.mkdir()
    _exe(stubs / 'dpkg-query', 'exit 1\n')
    _exe(stubs / 'id', 'echo 1000\n')
    res = subprocess.run(['bash', 'setup.sh'], cwd=tree, capture_output=True, text=True,
                         env={**os.environ, 'PATH': f'{stubs}:{os.environ["PATH"]}'}, timeout=60)
    assert res.returncode == 0, res.stderr
    assert 'is up to date' in res.stdout, res.stdout       # the copy's .venv was accepted
    line = next(ln for ln in res.stderr.splitlines() if 'apt-get install' in ln)
    wanted = [ln.split('#')[0].strip() for ln in open(os.path.join(REPO, 'debian-packages.txt'))]
    assert line.split()[-len([w for w in wanted if w]):] == [w for w in wanted if w]
    assert line.strip().startswith('sudo apt-get install')


def test_a_missing_tool_fails_naming_its_package(monkeypatch):
    monkeypatch.setenv('PATH', '/nonexistent')
    with pytest.raises(pytest.fail.Exception, match='liburdfdom-tools'):
        tool('check_urdf')
