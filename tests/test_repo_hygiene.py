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


def test_the_op_package_imports_nothing_outside_itself():
    """mmseg_ext/ops/sparse_nonlocal is also loaded by path, on its own (benchmark_snl_op.py and the
    GPU kit, where mmcv is absent): a relative import beyond it, or of mmseg_ext/mmseg/mmcv, breaks
    those routes (an `is_int` import from mmseg_ext.utils did, 2026-12-02)."""
    pkg = osp.join(REPO, 'mmseg_ext', 'ops', 'sparse_nonlocal')
    # relative imports beyond the package anywhere; the mm* packages at module level (the mmcv
    # backend imports mmcv lazily, inside a try, and falls back when it is absent)
    outside = re.compile(r'^(\s*from\s+\.\.|from\s+(mmseg_ext|mmseg|mmcv|mmengine)\b|'
                         r'import\s+(mmseg_ext|mmseg|mmcv|mmengine)\b)', re.M)
    found = []
    for root, _, names in os.walk(pkg):
        for name in names:
            if name.endswith('.py'):
                with open(osp.join(root, name), encoding='utf-8') as f:
                    found += [f'{osp.relpath(osp.join(root, name), REPO)}: {m.group(0).strip()}'
                              for m in outside.finditer(f.read())]
    assert not found, f'imports from outside the op package: {found}'
