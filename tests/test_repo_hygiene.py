"""The repository's own text: no merge-conflict markers left in a tracked file (one reached main in
docs/learning_check.md on 2026-12-02)."""
import os
import os.path as osp
import re
import subprocess

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MARKER = re.compile(r'^(<{7} |>{7} |={7}$)', re.M)


def _tracked_files():
    try:
        out = subprocess.run(['git', 'ls-files', '-z'], cwd=REPO, capture_output=True, check=True)
        return [osp.join(REPO, f) for f in out.stdout.decode().split('\0') if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. an sdist)
        skip = {'.git', '.venv', '.venv-classic', 'work_dirs', 'data', '__pycache__'}
        files = []
        for root, dirs, names in os.walk(REPO):
            dirs[:] = [d for d in dirs if d not in skip and not d.endswith('.egg-info')]
            files += [osp.join(root, n) for n in names]
        return files


def test_no_merge_conflict_markers():
    found = []
    for path in _tracked_files():
        if not path.endswith(('.py', '.md', '.sh', '.yml', '.yaml', '.txt', '.cfg', '.toml')):
            continue
        with open(path, encoding='utf-8', errors='replace') as f:
            text = f.read()
        found += [f'{osp.relpath(path, REPO)}:{text.count(chr(10), 0, m.start()) + 1}'
                  for m in MARKER.finditer(text)]
    assert not found, f'merge-conflict markers left in: {", ".join(found)}'
