"""tools/analysis_tools/benchmark_snl_op.py: its CPU measurement, and every method of its CUDA mode
built and run on tiny CPU tensors (the CUDA timing itself needs a GPU)."""
import pytest
import torch


@pytest.fixture(scope='module')
def bench(load_analysis_tool):
    return load_analysis_tool('benchmark_snl_op')


@pytest.fixture(scope='module')
def op(bench):
    return bench._load_op_module()


def test_cpu_child_measures_ours(bench):
    res = bench._child_cpu('ours', 6, 8, 3, 4, 4, reps=1, seed=0)
    assert res['time'] > 0 and res['peak'] >= res['base'] > 0


@pytest.mark.parametrize('method', ['triton', 'triton_bf16', 'sparse', 'naive', 'dense',
                                    'sdpa_bf16', 'sdpa_bf16_cv=c'])
def test_cuda_methods_run_on_cpu_tensors(bench, op, method):
    if method.startswith('triton'):
        pytest.importorskip('triton')
        if not op._triton_module().INTERPRETED:
            pytest.skip("Triton kernels need a GPU or Triton's CPU interpreter (triton >= 3.0, "
                        'TRITON_INTERPRET=1)')
    c, cv = 4, 6
    leaves, grad, run = bench._make_case(method, 4, 5, 3, c, cv, op, device='cpu')
    out = run()
    assert out.shape == grad.shape and out.dtype == grad.dtype
    assert out.shape[-1 if method.startswith('sdpa') else 1] == (c if method.endswith('=c')
                                                                  else cv)
    out.backward(grad)
    assert all(t.grad is not None for t in leaves[:3])  # dense ignores the offsets
    if method == 'triton':
        assert bench._check_against_sparse(op, leaves, grad, run, 3) < 1e-5


def test_triton_blocks_override(bench, op, monkeypatch):
    pytest.importorskip('triton')
    tk = op._triton_module()
    for name in ('_ROW_TILE', '_ROW_TILE_BWD'):  # restored after the test
        monkeypatch.setattr(tk, name, getattr(tk, name))
    bench._set_triton_blocks(op, '4096,512')
    assert (tk._ROW_TILE, tk._ROW_TILE_BWD) == (4096, 512)


def test_arguments_and_goal_lines(bench):
    args = bench.parse_args(['--device', 'cuda'])
    assert args.sizes == ['64x128', '128x256'] and args.methods == bench.CUDA_METHODS
    assert bench.parse_args([]).methods == bench.CPU_METHODS
    with pytest.raises(SystemExit):
        bench.parse_args(['--methods', 'triton'])  # a CUDA method on CPU
    results = {('triton', '64x128'): dict(fwd_bwd_s=2.0, extra_mib=10.0),
               ('dense', '64x128'): dict(fwd_bwd_s=4.0, extra_mib=1000.0),
               ('naive', '64x128'): dict(fwd_bwd_s=9.0, extra_mib=400.0),
               ('triton_bf16', '128x256'): dict(fwd_s=0.0015)}
    lines = bench._cuda_goals(results)
    assert lines == ['64x128: triton fp32 fwd+bwd / dense fp32 = 0.500 (goal <= 1.0)',
                     '64x128: extra memory triton / naive = 0.025 (goal <= 0.05)',
                     '128x256: triton bf16 forward = 1.50 ms (goal <= 2 ms)']


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message without a GPU')
def test_cuda_mode_without_gpu_says_so(bench, capsys):
    with pytest.raises(SystemExit, match='CUDA is not available here'):
        bench.main(['--device', 'cuda'])


@pytest.mark.parametrize('argv,message', [
    (['--reps', '-1'], 'argument --reps: repetitions: must be >= 1, got -1'),
    (['--reps', '0'], 'argument --reps: repetitions: must be >= 1, got 0'),
    (['--c', '0'], 'argument --c: channels: must be >= 1, got 0'),
    (['--k', 'x'], "argument --k: kernel side: an integer >= 1, got 'x'"),
    (['--sizes', 'abc'], "argument --sizes: a size is HxW in pixels with H, W >= 1, e.g. 64x128; "
                         "got 'abc'"),
    (['--sizes', '64x0'], "got '64x0'"),
    (['--max-s', 'nan'], "argument --max-s: a finite number > 0, got 'nan'"),
    (['--triton-blocks', '4096,48'], 'FWD,BWD: two powers of two'),
])
def test_bad_arguments_say_what_to_change(bench, capsys, argv, message):
    """Issue #25 item 7: argparse errors naming the argument and the allowed values."""
    with pytest.raises(SystemExit) as e:
        bench.parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert bench.parse_args(['--sizes', '8X16', '--reps', '1', '--c', '1']).sizes == ['8x16']
