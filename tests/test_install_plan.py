"""tools/install.sh plans mmcv's compile with one job per CPU of the machine (or MAX_JOBS), whatever
OMP_NUM_THREADS the caller set (tools/run_tests.sh sets 1 for its test workers; `nproc` honours it,
and mmcv then compiled single-threaded inside CI, issue #35)."""
import os
import os.path as osp
import subprocess

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _plan(**env):
    """``install.sh --plan`` (prints the plan, installs nothing) with ``env`` (None: unset)."""
    full = {k: v for k, v in os.environ.items()
            if k not in ('MAX_JOBS', 'OMP_THREAD_LIMIT', 'OMP_NUM_THREADS')}
    full.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run(['bash', osp.join(REPO, 'tools', 'install.sh'), '--plan'], env=full,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize('omp', ['1', '2', None])
def test_compile_plan_uses_every_cpu_whatever_omp_num_threads(omp):
    cpus = len(os.sched_getaffinity(0))
    proc = _plan(OMP_NUM_THREADS=omp)
    assert proc.returncode == 0, proc.stderr
    assert f'compile plan: {cpus} jobs for mmcv' in proc.stdout, proc.stdout
    assert f'({cpus} CPUs on this machine' in proc.stdout


def test_max_jobs_overrides_and_is_checked():
    assert 'compile plan: 5 jobs' in _plan(MAX_JOBS='5', OMP_NUM_THREADS='1').stdout
    bad = _plan(MAX_JOBS='0')
    assert bad.returncode == 2 and 'MAX_JOBS must be a positive integer' in bad.stderr
    assert 'usage: bash tools/install.sh [--plan]' in subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'install.sh'), '--bogus'], capture_output=True,
        text=True, timeout=60).stderr
