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


def _anchors(text):
    """The heading anchors GitHub gives a Markdown file: lower case, punctuation but ``-``/``_``
    dropped, spaces to ``-``, a repeated heading suffixed ``-1``, ``-2``... (code blocks
    skipped)."""
    seen, out = {}, set()
    for title in re.findall(r'^#{1,6} +(.+?) *$', re.sub(r'```.*?```', '', text, flags=re.S), re.M):
        slug = re.sub(r'[^\w\- ]', '', title.lower()).replace(' ', '-')
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f'{slug}-{n}')
    return out


def test_markdown_links_resolve():
    """Every relative link of the Markdown files reaches a file, and its #anchor a heading there
    (the benchmark's "What it shows" moved to docs/results_history.md and three head READMEs kept
    pointing at configs/benchmark/README.md, 2026-12-08)."""
    docs = {p: open(p, encoding='utf-8').read() for p in _tracked_files() if p.endswith('.md')}
    bad = []
    for path, text in docs.items():
        for link in re.findall(r'\]\(([^)\s]+)\)', re.sub(r'```.*?```', '', text, flags=re.S)):
            if re.match(r'[a-z]+:', link):  # http(s):, mailto:
                continue
            target, _, anchor = link.partition('#')
            target = osp.normpath(osp.join(osp.dirname(path), target)) if target else path
            if not osp.exists(target):
                bad.append(f'{osp.relpath(path, REPO)}: {link} (no such file)')
            elif anchor and target.endswith('.md') and anchor not in _anchors(
                    docs.get(target) or open(target, encoding='utf-8').read()):
                bad.append(f'{osp.relpath(path, REPO)}: {link} (no such heading)')
    assert not bad, 'broken links: ' + '; '.join(bad)
