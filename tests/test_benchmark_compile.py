"""tools/analysis_tools/benchmark_compile.py: its plumbing, with TorchDynamo's ``eager`` backend
on a tiny input (the Inductor timings are docs/benchmarks.md's "torch.compile" section)."""
import pytest


@pytest.fixture(scope='module')
def bc(load_analysis_tool):
    return load_analysis_tool('benchmark_compile')


def test_one_row_per_head(bc, capsys):
    rows = bc.main(['--heads', 'fcn', '--size', '32', '32', '--warmup', '1', '--repeats', '1',
                    '--threads', '1', '--backend', 'eager'])
    assert [r['head'] for r in rows] == ['fcn']
    r = rows[0]
    assert 'error' not in r, r
    assert r['eager_s'] > 0 and r['compiled_s'] > 0 and r['first_s'] >= r['compiled_s']
    assert r['graphs'] >= 1 and r['breaks'] >= 0 and r['threads'] == 1
    out = capsys.readouterr().out
    assert '| fcn | ' in out and 'backend eager' in out


def test_errors_are_rows_and_arguments_are_checked(bc):
    table = bc.render([dict(head='ssanet', error='boom')])
    assert '| ssanet | error: boom |' in table
    assert bc.parse_args([]).heads == list(bc.HEADS)
    with pytest.raises(SystemExit):
        bc.parse_args(['--repeats', '0'])
    with pytest.raises(SystemExit):
        bc.parse_args(['--heads', 'nonlocal'])
