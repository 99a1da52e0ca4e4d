"""The learning check: train configs on SynthCity with several seeds, tabulate mIoU and per-class
IoU.

    python tools/analysis_tools/learning_check.py \
        configs/quickstart/fcn_r18tiny-d8_1xb8-1k_synthcity-128x256.py \
        configs/quickstart/sanet_r18tiny-d8_1xb8-1k_synthcity-128x256.py \
        --seeds 0 1 2 --out-dir work_dirs/learning_check [--iters N] \
        [--cfg-options model.decode_head.mask_fusion=deep --tag deep] \
        [--test-variants den:model.decode_head.infer_mode=den sa4:model.decode_head.infer_mode=sa4 \
                         mask:model.decode_head.infer_mode=mask]

Each (config, seed) is trained with ``tools/train.py`` (same schedule for every config unless
``--iters`` shortens all of them alike), evaluated on SynthCity val at the end, and the per-class
table mmseg prints is parsed from the log. Runs already finished in ``--out-dir`` are reused
(with the same ``--iters`` only), and only while they are runs of the config as it trains now: a
run whose dumped config or recorded model (every default of the code filled in) differs is
refused with the first difference, so a changed config or a changed default of a head is never
reported with an old run's numbers.
``--cfg-options`` changes the trained model of every config alike (the run is named with
``--tag``); ``--test-variants LABEL:KEY=VALUE[,KEY=VALUE]`` also tests each final checkpoint with
``tools/test.py`` under those options (a test-time switch, no retraining; added to finished runs
too).
A run killed before it finished (e.g. with its session) is resumed from its last checkpoint
when the same command runs again (``progress.json`` in its work dir says what it trains; a
resumed run is the uninterrupted one bit for bit, see RNGStateHook, and its record lists where
it resumed); ``--checkpoint-interval N`` saves every N iterations to lose less. A run in use by
another learning_check process is refused (a lock in its work dir).
``--finished-only`` trains nothing: it reports the runs of these configs already finished in
``--out-dir`` (tagged ones included, e.g. ``gffnet_...-align1_seed0``), for a report while a long
series is still running; each run is matched by the config, seed and options it recorded, not by
its directory name.
Every finished run is also tested on SynthCity's held-out **test** split (its final checkpoint,
as on val) and its record written to ``--record-dir`` (default ``docs/runs/``, committed: the
results tables are rebuilt from these records by ``results_tables.py``; a record of the config as
it trains now is reused like a finished work dir). Choices are made on val; test is reported.
Writes ``results.md`` (mean ± std over seeds; thin classes apart) and ``results.png``; when the
configs validate during training (``val_interval`` below ``max_iters``, as configs/benchmark/ do
every 500 iterations), also ``curves.md`` and ``curves.png``: per-class IoU against iterations, for
the runs of the first seed given.
Long: minutes per run on a CPU. It is a script, not a test.
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import time

try:
    import fcntl
except ImportError:  # Windows: runs in one work dir are not guarded against each other
    fcntl = None

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # run from a clone: the project's own mmseg_ext


def _run_records():
    """mmseg_ext/utils/run_records.py loaded by path: it needs the standard library only,
    and importing it through the package would import torch and mmseg first (seconds
    before a usage error could be printed)."""
    import importlib.util
    path = osp.join(REPO, 'mmseg_ext', 'utils', 'run_records.py')
    spec = importlib.util.spec_from_file_location('_mmseg_ext_run_records', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_rr = _run_records()
(CLASSES, CONTEXT, SMALL, THIN, config_sha256, environment, fmt, mean_std, read_record,
 record_name, write_record, _group_mean) = (getattr(_rr, name) for name in (
     'CLASSES', 'CONTEXT', 'SMALL', 'THIN', 'config_sha256', 'environment', 'fmt', 'mean_std',
     'read_record', 'record_name', 'write_record', 'group_mean'))

#: Where the run records are committed (one JSON file per finished run, issue #37).
RECORD_DIR = osp.join('docs', 'runs')
#: The options that make tools/test.py read the val split instead of the config's test split.
VAL_SPLIT = ['test_dataloader.dataset.data_prefix.img_path=leftImg8bit/val',
             'test_dataloader.dataset.data_prefix.seg_map_path=gtFine/val']

def parse_per_class(log_text):
    """The last per-class IoU table mmseg's IoUMetric printed: {class: IoU}."""
    blocks = log_text.split('per class results:')
    if len(blocks) < 2:
        raise ValueError('no "per class results" table in the log')
    iou = {}
    for line in blocks[-1].splitlines():
        m = re.match(r'\|\s*([a-z ]+?)\s*\|\s*([0-9.]+|nan)\s*\|', line)
        if m and m.group(1) in CLASSES:
            iou[m.group(1)] = float(m.group(2))
        if len(iou) == len(CLASSES):
            break
    if len(iou) != len(CLASSES):
        raise ValueError(f'per-class table incomplete: {sorted(iou)}')
    return iou


def parse_curve(log_text):
    """Every validation in a training log: [{'iter': N, 'miou': m, 'iou': {class: IoU}}], in order.

    The iteration of a validation is that of the last ``Iter(train) [ N/M]`` line before its table.
    """
    blocks = log_text.split('per class results:')
    curve = []
    for before, table in zip(blocks[:-1], blocks[1:]):
        iters = re.findall(r'Iter\(train\)\s*\[\s*(\d+)/\d+\]', before)
        if not iters:
            continue
        iou = parse_per_class('per class results:' + table)
        miou = re.search(r'mIoU: ([0-9.]+)', table)
        curve.append(dict(iter=int(iters[-1]), iou=iou,
                          miou=float(miou.group(1)) if miou else mean_std(list(iou.values()))[0]))
    return curve


def parse_variant(text):
    """'LABEL:K=V,K=V' -> (LABEL, ['K=V', 'K=V'])."""
    label, sep, opts = text.partition(':')
    if not sep or not label or not opts or any('=' not in o for o in opts.split(',')):
        raise argparse.ArgumentTypeError(
            f'--test-variants takes LABEL:KEY=VALUE[,KEY=VALUE], got {text!r}')
    return label, opts.split(',')


def _positive(option, example, hint=''):
    """argparse type of ``option``: a positive number of iterations, else an error naming
    ``example`` (and ``hint``)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise argparse.ArgumentTypeError(
                f'takes a positive number of iterations, e.g. {option} {example}, got {text!r}'
                + hint)
        return value
    return parse


#: ``--iters`` (0 would train the full schedule, a negative number would fail in the middle of
#: training).
positive_iters = _positive('--iters', 300, '; leave --iters out to train every config with its '
                           'own schedule')
positive_interval = _positive('--checkpoint-interval', 500)


def final_checkpoint(work_dir, iters):
    """The run's last checkpoint (the one every number of the run is read from)."""
    ckpt = osp.join(work_dir, f'iter_{iters}.pth' if iters else 'latest.pth')
    if osp.isfile(ckpt):
        return ckpt
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            return f.read().strip()
    return None


def evaluate(config, work_dir, label, opts, env, iters, split='test'):
    """tools/test.py on the run's final checkpoint with ``opts``, on the config's test split
    (``split='test'``) or on val: {miou, iou}; the log goes to ``{work_dir}/{label}.log``."""
    ckpt = final_checkpoint(work_dir, iters)
    if ckpt is None:
        raise FileNotFoundError(
            f'{work_dir} holds no checkpoint to test ({label}): this run is known only by its '
            'record; move the record away to retrain it, or leave the new test out')
    opts = list(opts) + (VAL_SPLIT if split == 'val' else [])
    cmd = [sys.executable, osp.join(REPO, 'tools', 'test.py'), config, ckpt, '--work-dir',
           osp.join(work_dir, label)] + (['--cfg-options', *opts] if opts else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    with open(osp.join(work_dir, f'{label}.log'), 'w') as f:
        f.write(log)
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{log[-3000:]}')
    return dict(iou=parse_per_class(log), miou=float(re.findall(r'mIoU: ([0-9.]+)', log)[-1]))


def test_variant(config, work_dir, label, opts, env, iters):
    """A test-time variant of the run's final checkpoint, on val (where it may be chosen) and
    on the held-out test split (reported only): {opts, miou, iou, test: {miou, iou}}."""
    val = evaluate(config, work_dir, f'test_{label}', opts, env, iters, split='val')
    test = evaluate(config, work_dir, f'test_{label}_testsplit', opts, env, iters)
    return dict(opts=opts, **val, test=test)


def run_one(config, seed, work_dir, iters, env, train_opts=(), variants=(), record_dir=None,
            tag='', checkpoint_interval=None):
    """A finished run of ``config`` with ``seed``: reused from ``work_dir/result.json`` or from
    its committed record in ``record_dir`` when either is a run of the config as it trains now,
    else trained; then tested on the held-out test split and with each of ``variants``, and its
    record (re)written into ``record_dir`` (None: no record). One process at a time works in
    ``work_dir`` (see :func:`run_lock`); a run only read from its record needs no work dir."""
    record_file = osp.join(record_dir, record_name(config, tag, seed, iters)) if record_dir \
        else None
    from_record = record_file and osp.isfile(record_file) and not osp.isdir(work_dir)
    with contextlib.nullcontext() if from_record else run_lock(work_dir):
        return _run_one(config, seed, work_dir, iters, env, train_opts, variants, record_file,
                        tag, checkpoint_interval)


def _run_one(config, seed, work_dir, iters, env, train_opts, variants, record_file, tag,
             checkpoint_interval):
    result_file = osp.join(work_dir, 'result.json')
    source = result_file if osp.isfile(result_file) else record_file \
        if record_file and osp.isfile(record_file) else None
    if source:
        if source == result_file:
            with open(result_file) as f:
                res = json.load(f)
        else:
            res = read_record(record_file)
        where = work_dir if source == result_file else record_file
        if res.get('iters') != iters:
            raise ValueError(f'{where} holds a run with --iters {res.get("iters")}, not {iters}: '
                             'use another --out-dir for another schedule')
        if res.get('train_opts', []) != list(train_opts):
            raise ValueError(f'{where} was trained with --cfg-options {res.get("train_opts")}, '
                             f'not {list(train_opts)}: give this variant its own --tag')
        why = reuse_difference(config, seed, work_dir, iters, train_opts, res)
        if why:
            raise ValueError(
                f'{where} holds a run of another model or schedule than {config} trains now '
                f'({why}, the run\'s value first): move it away to retrain it, or give '
                'the change its own config (or --cfg-options with a --tag)')
    else:
        res = train_one(config, seed, work_dir, iters, env, train_opts, checkpoint_interval)
    before = json.dumps(res, sort_keys=True)
    log_file = osp.join(work_dir, 'train.log')
    if 'curve' not in res and osp.isfile(log_file):  # a run finished before curves were kept
        with open(log_file) as f:
            res['curve'] = parse_curve(f.read())
    if record_file and res.get('fingerprint_version') != FINGERPRINT_VERSION and \
            'model_record' in res:  # reused by its model record above: fingerprint it now
        res['fingerprint'], values = model_fingerprint(
            config_as_trained(config, seed, iters, train_opts))
        res['fingerprint_values'] = compact(values)
        res['fingerprint_version'] = FINGERPRINT_VERSION
    if 'flops' not in res and record_file:  # of the inference model at the config's crop
        res['flops'] = model_flops(config_as_trained(config, seed, iters, train_opts))
    if 'test' not in res and record_file:  # the final checkpoint on the held-out test split
        res['test'] = evaluate(config, work_dir, 'test_split', list(train_opts), env, iters)
    # the test builds the trained model (train_opts) and then switches what the variant says
    variants = [(label, list(train_opts) + opts) for label, opts in variants]
    todo = [(label, opts) for label, opts in variants
            if res.get('tests', {}).get(label, {}).get('opts') != opts
            or (record_file and 'test' not in res['tests'][label])]
    for label, opts in todo:
        res.setdefault('tests', {})[label] = test_variant(config, work_dir, label, opts, env,
                                                          iters)
    changed = json.dumps(res, sort_keys=True) != before
    if osp.isdir(work_dir) and (changed or not osp.isfile(result_file)):
        with open(result_file, 'w') as f:
            json.dump(res, f, indent=1)
    if record_file and (changed or source != record_file):
        if 'compared' in res:
            write_record(record_file, dict(res, tag=tag))
        else:
            print(f'learning_check: no record written for {work_dir}: it was trained before '
                  'records were kept (2026-12-07) and lacks what they hold', file=sys.stderr)
    return res


def train_options(seed, iters, train_opts, checkpoint_interval=None):
    """The ``--cfg-options`` :func:`train_one` gives ``tools/train.py`` (``checkpoint_interval``:
    save every so many iterations, the points a killed run resumes from; None: the config's, or
    only the last with ``iters``)."""
    opts = [f'randomness.seed={seed}', 'randomness.deterministic=False']
    if iters:
        opts += [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
                 f'default_hooks.checkpoint.interval={iters}', f'param_scheduler.0.end={iters}']
    if checkpoint_interval:
        opts.append(f'default_hooks.checkpoint.interval={checkpoint_interval}')
    return opts + list(train_opts)


def config_as_trained(config, seed, iters, train_opts):
    """``config`` with the options :func:`train_one` trains it with, as mmengine merges them."""
    from mmengine.config import Config, DictAction
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(parser.parse_args(
        ['--cfg-options', *train_options(seed, iters, train_opts)]).cfg_options)
    return cfg


def current_model_record(cfg):
    """:func:`mmseg_ext.utils.config_diff.model_record` of ``cfg.model`` with the code as it is
    now (the config's ``custom_imports`` imported, mmseg's modules registered)."""
    import importlib

    from mmseg.utils import register_all_modules

    from mmseg_ext.utils.config_diff import model_record
    register_all_modules()
    for name in (cfg.get('custom_imports') or {}).get('imports', []):
        importlib.import_module(name)
    return model_record(cfg.model)


#: What a reused run must share with the config as it is now (besides the record of the model).
COMPARED_KEYS = ('model', 'train_cfg', 'optim_wrapper', 'param_scheduler')


def compared_parts(cfg):
    """``cfg``'s schedule and optimizer (COMPARED_KEYS but the model) as plain data: what a
    run record keeps of its config besides the model record."""
    from mmseg_ext.utils.config_diff import plain
    return json.loads(json.dumps({k: plain(cfg.get(k)) for k in COMPARED_KEYS if k != 'model'},
                                 sort_keys=True, default=repr))


def reuse_difference(config, seed, work_dir, iters, train_opts, res):
    """Why the finished run in ``work_dir`` is not a run of ``config`` as it trains now, or None.

    Two records of the run are compared with the config (with :func:`train_options` merged):
    its ``compared`` schedule and optimizer (a run record's, :func:`compared_parts`; for runs
    trained before records, the config mmengine dumped into the work dir: ``model``,
    ``train_cfg``, ``optim_wrapper``, ``param_scheduler``), and ``result.json``'s
    ``model_record`` (the model with every default of the code filled in when it trained,
    :func:`current_model_record`), which also catches a changed default of a head. Where the
    record is kept, the model is compared by it alone: it is the dumped model with the defaults
    of its day filled in, so a config that pins the old value of a changed default
    (``den_loss_on='den'``) still matches the runs trained under it. A run that keeps neither
    (made by hand, or by a test) is not compared; one trained before records were kept
    (2026-12-02) is compared by its config only.
    """
    from mmengine.config import Config

    from mmseg_ext.utils.config_diff import config_difference, first_difference
    dumped = osp.join(work_dir, osp.basename(config))
    if not (osp.isfile(dumped) or 'model_record' in res):
        return None
    cfg = config_as_trained(config, seed, iters, train_opts)
    if 'compared' in res:  # a run record (or a result.json written with one)
        why = first_difference(res['compared'], compared_parts(cfg))
        if why:
            return why
    elif osp.isfile(dumped):
        keys = [k for k in COMPARED_KEYS if k != 'model' or 'model_record' not in res]
        why = config_difference(Config.fromfile(dumped), cfg, keys)
        if why:
            return why
    if res.get('fingerprint_version') == FINGERPRINT_VERSION:
        # what the model computes decides, not how its arguments are spelled: a refactor that
        # renames an argument (its record differs) but keeps every initial weight and the first
        # step's losses and gradients keeps the run; the reverse is refused
        # (on another machine, whose instruction set rounds the last bits differently, the
        # hashes differ and the numbers hashed are compared with a tolerance instead)
        fingerprint, values = model_fingerprint(cfg)
        if res['fingerprint'] == fingerprint:
            return None
        far = fingerprint_difference(res.get('fingerprint_values'), values)
        if far is None:
            return None
        why = first_difference(res['model_record'], current_model_record(cfg), 'model')
        return (why + ' (a default of the code changed since it trained)' if why else
                f'model: the same arguments, but {far} (the code changed what the model '
                'computes)')
    if 'model_record' in res:
        why = first_difference(res['model_record'], current_model_record(cfg), 'model')
        if why:
            return why + ' (a default of the code changed since it trained)'
    return None


#: Version of :func:`model_fingerprint`'s definition; records of another version are compared
#: by their model record, then fingerprinted anew. Version 1 (before 2026-12-07 13:10 UTC)
#: hashed with the process's thread count, so its gradient sums depended on OMP_NUM_THREADS;
#: version 2 kept the hash only, which another instruction set changes (below).
FINGERPRINT_VERSION = 3
#: How far :func:`model_fingerprint`'s numbers may differ and still be the same model, relative
#: to each tensor's sum of magnitudes (each loss's magnitude). Other instruction sets round the
#: last bits differently from the first initial weight on. Measured on this project's 2-core
#: AMD EPYC (AVX-512) against ATen's default kernels with oneDNN held to SSE4.1, for the five
#: benchmark models (2026-12-07): every hash changed; initial weights moved by at most 1.0e-7,
#: losses by 8.1e-8, gradient sums by 1.2e-4 (SSANet: a backbone BN weight with a small
#: gradient; rounding grows through the backward pass). tests/test_run_records.py repeats this.
#: A changed argument or operation moves the losses or gradients by far more.
FINGERPRINT_RTOL = dict(weights=1e-5, losses=1e-5, grads=1e-3)


def compact(values):
    """:func:`model_fingerprint`'s numbers as a record keeps them: one line of JSON (the
    record's indented layout would give each number a line of its own)."""
    return json.dumps(values, separators=(',', ':'))


def _close(a, b, scale, part):
    return abs(a - b) <= FINGERPRINT_RTOL[part] * scale


def fingerprint_difference(recorded, current):
    """None when the fingerprint numbers ``recorded`` (a run's ``fingerprint_values``, see
    :func:`compact`) and ``current`` (:func:`model_fingerprint`'s) are the same model's within
    :data:`FINGERPRINT_RTOL`, else what differs first."""
    if isinstance(recorded, str):
        recorded = json.loads(recorded)
    if not recorded:
        return ('the initial weights or the first step\'s losses or gradients differ from the '
                'run\'s (its record keeps no numbers to compare with a tolerance)')
    if recorded['structure'] != current['structure']:
        return 'the state dict\'s names, shapes or dtypes differ from the run\'s'
    for name in sorted(set(recorded['losses']) | set(current['losses'])):
        a, b = recorded['losses'].get(name), current['losses'].get(name)
        if a is None or b is None or not _close(a, b, max(abs(a), abs(b)), 'losses'):
            return f'the first step\'s {name} is {b}, the run\'s {a}'
    for part, what in (('weights', 'initial weights'), ('grads', 'first step\'s gradients')):
        for k, (a, b) in enumerate(zip(recorded[part], current[part])):
            if (a is None) != (b is None) or a is not None and not (
                    _close(a[0], b[0], max(a[1], b[1]), part)
                    and _close(a[1], b[1], max(a[1], b[1]), part)):
                return (f'the {what} differ from the run\'s (tensor {k} of '
                        f'{len(current[part])} in name order: sum, sum of magnitudes {b}, the '
                        f'run\'s {a})')
    return None


def model_fingerprint(cfg, size=(64, 128)):
    """What training the model of ``cfg`` starts from and first computes: every initial weight
    (the state dict's names, shapes and values after ``init_weights()`` under seed 0), and the
    losses and per-parameter gradients of one training step on a fixed random batch of 2 images
    of ``size``, computed on one thread (the sums depend on the thread count). Returns

    - the sha256 of the weights' bytes, the losses and gradient sums (to 6 significant digits:
      a refactor may reorder floating-point sums): equal on this machine and stack;
    - the numbers themselves, for another machine (:func:`fingerprint_difference`): a hash of
      the state dict's structure, the losses, and each weight's and gradient's sum and sum of
      magnitudes (9 significant digits; None for a parameter without a gradient).

    Compared by the reuse rule."""
    import hashlib
    import logging

    import torch
    from mmengine.logging import MMLogger
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from mmseg_ext.apis import build_segmentor
    current_model_record(cfg)  # registers mmseg and the config's custom imports
    rng_state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    torch.set_num_threads(1)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights() logs every parameter at INFO
    try:
        torch.manual_seed(0)
        model = build_segmentor(cfg)  # the config's initialisation, as the runner's
        digest, structure = hashlib.sha256(), hashlib.sha256()

        def sums(t):
            t = t.detach().double()
            return [float(f'{float(t.sum()):.9g}'), float(f'{float(t.abs().sum()):.9g}')]
        weights = []
        for name, value in sorted(model.state_dict().items()):
            digest.update(f'{name}{tuple(value.shape)}{value.dtype}'.encode())
            structure.update(f'{name}{tuple(value.shape)}{value.dtype};'.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
            weights.append(sums(value))
        gen = torch.Generator().manual_seed(0)
        inputs = torch.randn(2, 3, *size, generator=gen)
        num_classes = model.decode_head.num_classes
        samples = []
        for _ in range(2):
            sample = SegDataSample()
            sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, *size),
                                                             generator=gen))
            sample.set_metainfo(dict(img_shape=size, ori_shape=size, pad_shape=size))
            samples.append(sample)
        model.train()
        losses = model.loss(inputs, samples)
        total = sum(v for k, v in sorted(losses.items()) if 'loss' in k)
        total.backward()
        numbers = [f'{k}={float(v.detach()):.6g}' for k, v in sorted(losses.items())
                   if torch.is_tensor(v) and v.numel() == 1]
        numbers += [f'{n}={float(p.grad.double().sum()):.6g}' if p.grad is not None else
                    f'{n}=None' for n, p in sorted(model.named_parameters())]
        digest.update(';'.join(numbers).encode())
        values = dict(
            structure=structure.hexdigest()[:16],
            losses={k: float(f'{float(v.detach()):.9g}') for k, v in sorted(losses.items())
                    if 'loss' in k},  # not acc_seg: a pixel's argmax may flip elsewhere
            weights=weights,
            grads=[sums(p.grad) if p.grad is not None else None
                   for _, p in sorted(model.named_parameters())])
        return digest.hexdigest(), values
    finally:
        torch.random.set_rng_state(rng_state)
        torch.set_num_threads(threads)
        logger.setLevel(level)


def model_flops(cfg):
    """FLOPs of the inference model (no auxiliary head) on one image of the config's
    ``crop_size``, as ``tools/analysis_tools/get_flops.py`` counts them."""
    from mmseg_ext.apis import build_segmentor
    from mmseg_ext.utils.flops import count_flops
    model = build_segmentor(cfg, weights='offline', cfg_options={'model.auxiliary_head': None})
    return count_flops(model, tuple(cfg.get('crop_size') or (512, 512)))['flops']


def count_params(cfg):
    """Parameters of the model ``cfg`` builds (SyncBN as BN), as tools/train.py builds it."""
    from mmseg_ext.apis import build_segmentor
    return sum(p.numel() for p in build_segmentor(cfg, weights='offline').parameters())


#: In a run's work dir while it trains (removed when it finishes): what it trains and the
#: segments it trained in, so that a run killed with its session is resumed, not restarted.
PROGRESS = 'progress.json'
#: In a run's work dir: locked (``flock``) by the process working on the run, see run_lock.
LOCK = '.learning_check.lock'
#: What tools/train.py's RNGStateHook logs when a resume continues the run bit for bit.
_EXACT_RESUME = 'with the settings the checkpoint was written with'


@contextlib.contextmanager
def run_lock(work_dir):
    """Held while this process trains, tests or records the run in ``work_dir`` (created if
    missing): a second learning_check on the same run (two queues, or the same command in two
    shells) would train it twice into the same checkpoints and logs, so it is refused with the
    holder's pid. An advisory ``flock`` on a file in the work dir: the kernel releases it when
    the holder exits or is killed, so a dead session leaves no stale lock behind."""
    os.makedirs(work_dir, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(osp.join(work_dir, LOCK), 'a+') as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or 'a process'
            raise RuntimeError(
                f'{work_dir} is in use by another learning_check ({holder}): wait for it to '
                'finish (or stop it), then run this command again; it resumes or reuses the '
                'run') from None
        f.seek(0)
        f.truncate()
        f.write(f'pid {os.getpid()}, since {time.strftime("%Y-%m-%d %H:%M:%S")}\n')
        f.flush()
        yield  # closing the file releases the lock


def _resume_point(work_dir, progress, identity):
    """The checkpoint an unfinished run in ``work_dir`` is resumed from, and its iteration, or
    None to train from the start (nothing saved yet). A run of anything but ``identity`` (the
    config, model and options as they train now) is refused, as :func:`run_one` refuses a
    finished one."""
    if progress is None:
        return None
    differing = [k for k in identity if progress.get(k) != identity[k]]
    if differing:
        raise ValueError(
            f'{work_dir} holds an unfinished run of another model or options '
            f'({", ".join(differing)} differ from {identity["config"]} as it trains now): move '
            'it away to train it anew')
    last, ckpt = osp.join(work_dir, 'last_checkpoint'), ''
    if osp.isfile(last):
        with open(last) as f:
            ckpt = f.read().strip()
    m = re.search(r'iter_(\d+)\.pth$', ckpt)
    if not m or not osp.isfile(ckpt):
        return None
    return ckpt, int(m.group(1))


def _train_segment(cmd, env, log_path):
    """Run ``cmd`` with its output going straight to ``log_path`` (unbuffered: what a killed
    run printed stays on disk); its exit status."""
    with open(log_path, 'w') as log:
        return subprocess.run(cmd, env=dict(env, PYTHONUNBUFFERED='1'), stdout=log,
                              stderr=subprocess.STDOUT).returncode


def merge_curves(curves, resumed_at):
    """One validation curve from the segments' (``resumed_at[k]``: the iteration segment ``k+1``
    resumed from): a segment's validations count up to the iteration the next one resumed from
    (later ones were repeated by it)."""
    merged = []
    for k, curve in enumerate(curves):
        stop = resumed_at[k] if k < len(resumed_at) else float('inf')
        merged += [p for p in curve if p['iter'] <= stop and
                   (not merged or p['iter'] > merged[-1]['iter'])]
    return merged


def train_one(config, seed, work_dir, iters, env, train_opts, checkpoint_interval=None):
    """Train ``config`` with ``seed`` in ``work_dir`` (``tools/train.py``) and read the run's
    numbers from its log. A run killed before it finished (its session ended) is resumed from
    its last checkpoint when started again: ``RNGStateHook`` makes the resumed run the
    uninterrupted one bit for bit, the record lists where it resumed and whether the hook
    confirmed that, and its ``seconds`` count each segment up to the checkpoint the next one
    resumed from (work lost after it is not counted)."""
    opts = train_options(seed, iters, train_opts, checkpoint_interval)
    cfg = config_as_trained(config, seed, iters, train_opts)
    record, compared = current_model_record(cfg), compared_parts(cfg)
    fingerprint, fingerprint_values = model_fingerprint(cfg)
    identity = dict(config=osp.basename(config), seed=seed, iters=iters,
                    train_opts=list(train_opts), config_sha256=config_sha256(record, compared),
                    fingerprint=fingerprint)
    progress_file = osp.join(work_dir, PROGRESS)
    progress = None
    if osp.isfile(progress_file):
        with open(progress_file) as f:
            progress = json.load(f)
    point = _resume_point(work_dir, progress, identity)
    if point is None:
        progress = dict(identity, segments=[])
    else:  # the killed segment counts up to the checkpoint resumed from, if it wrote it
        last = progress['segments'][-1]
        last['seconds'] = max(0.0, osp.getmtime(point[0]) - last['start'])
    os.makedirs(work_dir, exist_ok=True)
    resume = [] if point is None else ['--resume']
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), config, '--work-dir', work_dir,
           *resume, '--cfg-options', *opts, *([f'load_from={point[0]}'] if resume else [])]
    if resume:
        print(f'learning_check: resuming {work_dir} at iteration {point[1]}', flush=True)
    segment = dict(start=time.time(), resumed_from=point[1] if point else None,
                   log=f'train-{len(progress["segments"]) + 1}.log')
    progress['segments'].append(segment)
    with open(progress_file, 'w') as f:
        json.dump(progress, f, indent=1)
    returncode = _train_segment(cmd, env, osp.join(work_dir, segment['log']))
    segment['seconds'] = time.time() - segment['start']
    segments = progress['segments']
    logs = []
    for s in segments:
        with open(osp.join(work_dir, s['log'])) as f:
            logs.append(f.read())
    if returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{logs[-1][-3000:]}')
    resumed = [dict(iter=s['resumed_from'], exact=_EXACT_RESUME in log)
               for s, log in zip(segments, logs) if s['resumed_from'] is not None]
    log = ''.join(f'# learning_check: resumed at iteration {s["resumed_from"]}\n' * (k > 0) + text
                  for k, (s, text) in enumerate(zip(segments, logs)))
    with open(osp.join(work_dir, 'train.log'), 'w') as f:
        f.write(log)
    curve = merge_curves([parse_curve(t) for t in logs], [r['iter'] for r in resumed])
    final_iter = cfg.train_cfg.max_iters
    if segments[-1]['resumed_from'] != final_iter:  # the final validation is in its log
        final = dict(iou=parse_per_class(logs[-1]),
                     miou=float(re.findall(r'mIoU: ([0-9.]+)', logs[-1])[-1]))
    elif curve and curve[-1]['iter'] == final_iter:  # killed after validating, before exiting
        final = dict(iou=curve[-1]['iou'], miou=curve[-1]['miou'])
    else:  # killed between the last checkpoint and its validation: validate it now
        final = evaluate(config, work_dir, 'val_final', list(train_opts), env, iters,
                         split='val')
        curve.append(dict(iter=final_iter, **final))
    res = dict(config=osp.basename(config), seed=seed, **final,
               seconds=sum(s['seconds'] for s in segments), iters=iters,
               train_opts=list(train_opts), curve=curve,
               model_record=record, compared=compared,
               config_sha256=identity['config_sha256'], params=count_params(cfg),
               fingerprint=fingerprint, fingerprint_values=compact(fingerprint_values),
               fingerprint_version=FINGERPRINT_VERSION, environment=environment(REPO))
    if resumed:
        res['resumed'] = resumed
        if not all(r['exact'] for r in resumed):
            print(f'learning_check: WARNING: {work_dir} was resumed without RNGStateHook\'s '
                  'confirmation that it continues the run bit for bit (see its train.log); its '
                  'record says so', file=sys.stderr)
    os.remove(progress_file)
    return res


def name_tagged(res, name, tag):
    """A run trained with --cfg-options is reported as ``{config name}-{tag}`` (short:
    ``gffnet-tag``)."""
    if tag:
        res['config'], res['short'] = f'{name}-{tag}', f"{name.split('_')[0]}-{tag}"
    return res


def group_mean(res, classes):
    """Mean IoU of one run over a class group (THIN or CONTEXT)."""
    return _group_mean(res['iou'], classes)


def recorded_config(work_dir, res):
    """The config file name a finished run was trained from, as the run recorded it.

    ``result.json``'s ``config`` (written by :func:`train_one`), else the config mmengine's runner
    dumped into the work dir (``<work_dir>/<config name>.py``, when it is the only one there);
    None when neither says.
    """
    if res.get('config'):
        return osp.basename(res['config'])
    dumped = [f for f in os.listdir(work_dir) if f.endswith('.py')]
    return dumped[0] if len(dumped) == 1 else None


def finished_runs(configs, seeds, out_dir, iters, record_dir=None):
    """The runs of ``configs`` finished in ``out_dir`` or recorded in ``record_dir`` (a work dir
    and a record of the same run count once): untagged first, then each ``-tag``, by seed.

    A run belongs to the config and options it recorded (:func:`recorded_config`, the seed and
    ``train_opts`` of its ``result.json``), never to a config whose name merely prefixes its
    directory's: ``gffnet_x-slide-ms_seed0`` is a run of ``gffnet_x-slide-ms.py``, not a tagged
    run of ``gffnet_x.py``. Its directory name must be the one :func:`main` gives that run
    (``{config name}[-{tag}]_seed{seed}``, a tag exactly when it has ``--cfg-options``); a
    directory that records something else is skipped with a message.
    """
    names = [osp.splitext(osp.basename(c))[0] for c in configs]
    found = []
    for d in sorted(os.listdir(out_dir)) if osp.isdir(out_dir) else []:
        work_dir = osp.join(out_dir, d)
        if not osp.isfile(osp.join(work_dir, 'result.json')):
            continue  # still training (or not a run)
        with open(osp.join(work_dir, 'result.json')) as f:
            rec = json.load(f)
        name = osp.splitext(recorded_config(work_dir, rec) or '')[0]
        if name not in names or rec.get('seed') not in seeds:
            continue  # a run of another config, or of a seed not asked for
        opts = rec.get('train_opts', [])
        m = re.fullmatch(re.escape(name) + r'(?:-(.+))?_seed(\d+)', d)
        if not m or int(m.group(2)) != rec['seed'] or bool(m.group(1)) != bool(opts):
            print(f'learning_check: skipped {work_dir}: it records a run of {name}.py, seed '
                  f"{rec['seed']}, --cfg-options {opts}, which its name does not fit "
                  f"({name}[-TAG]_seed{rec['seed']}, TAG exactly when there are options)",
                  file=sys.stderr)
            continue
        found.append((names.index(name), m.group(1) or '', seeds.index(rec['seed']), d, opts))
    for rec in _records(record_dir, iters):
        name, tag = osp.splitext(rec['config'])[0], rec.get('tag', '')
        d = f"{name}{'-' + tag if tag else ''}_seed{rec['seed']}"
        if name in names and rec['seed'] in seeds and all(f[3] != d for f in found):
            found.append((names.index(name), tag, seeds.index(rec['seed']), d,
                          rec['train_opts']))
    results = []
    for i, tag, k, d, opts in sorted(found):
        res = run_one(configs[i], seeds[k], osp.join(out_dir, d), iters, None, opts, (),
                      record_dir, tag)
        res['config'] = res.get('config') or f'{names[i]}.py'  # recorded by the dumped config
        results.append(name_tagged(res, names[i], tag))
    return results


def _records(record_dir, iters):
    """The run records in ``record_dir`` of runs with ``--iters`` ``iters``."""
    if not record_dir or not osp.isdir(record_dir):
        return []
    out = []
    for n in sorted(os.listdir(record_dir)):
        if n.endswith('.json'):
            rec = read_record(osp.join(record_dir, n))
            if rec['iters'] == iters:
                out.append(rec)
    return out


def short_name(res):
    return res.get('short') or res['config'].split('_')[0]


def expand_variants(results):
    """One pseudo-run per (run, test variant), named 'config [label]'."""
    out = []
    for r in results:
        out.append(r)
        for label, t in r.get('tests', {}).items():
            out.append(dict(r, config=f"{r['config']} [{label}]",
                            short=f"{short_name(r)} [{label}]",
                            iou=t['iou'], miou=t['miou'], test=t.get('test')))
    return out


def write_report(results, out_dir, seeds, iters):
    results = expand_variants(results)
    names = list(dict.fromkeys(r['config'] for r in results))
    by = {n: [r for r in results if r['config'] == n] for n in names}
    short = {n: short_name(by[n][0]) for n in names}
    lines = [f'Seeds {seeds}; '
             + (f'{iters} iterations each' if iters else 'schedule of each config'),
             '', '| config | mIoU | test mIoU | thin classes | context classes | lowest thin class '
             'or person (mean) | train time / run | seeds |',
             '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for n in names:
        rs = by[n]
        thin = [group_mean(r, THIN) for r in rs]
        ctx = [group_mean(r, CONTEXT) for r in rs]
        secs = statistics.mean(r['seconds'] for r in rs)
        low = min(SMALL, key=lambda c: mean_std([r['iou'][c] for r in rs])[0])
        low_iou = mean_std([r['iou'][low] for r in rs])[0]
        tests = [r['test']['miou'] for r in rs if r.get('test')]
        lines.append(f"| {n} | {fmt([r['miou'] for r in rs])} | {fmt(tests) if tests else '-'} | "
                     f"{fmt(thin)} | {fmt(ctx)} | "
                     f"{low} {low_iou:.1f} | {secs / 60:.1f} min | "
                     f"{', '.join(str(r['seed']) for r in rs)} |")
    lines += ['', 'Per-class IoU (mean ± std over seeds; no spread where one seed ran):', '',
              '| class | ' + ' | '.join(short[n] for n in names) + ' |',
              '| --- |' + ' --- |' * len(names)]
    for c in CLASSES:
        tag = ' (thin)' if c in THIN else ' (context)' if c in CONTEXT else ''
        lines.append(f'| {c}{tag} | ' + ' | '.join(fmt([r['iou'][c] for r in by[n]]) for n in names)
                     + ' |')
    text = '\n'.join(lines) + '\n'
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(text)
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names)), 3.5))
        groups = (('mIoU', lambda r: r['miou']),
                  ('thin classes', lambda r: group_mean(r, THIN)),
                  ('context classes', lambda r: group_mean(r, CONTEXT)))
        width = 0.8 / len(groups)
        for k, (label, get) in enumerate(groups):
            ms = [mean_std([get(r) for r in by[n]]) for n in names]
            ax.bar([i + (k - (len(groups) - 1) / 2) * width for i in range(len(names))],
                   [m for m, _ in ms], width, yerr=[s for _, s in ms], capsize=3, label=label)
        ax.set_xticks(range(len(names)),
                      [f"{short[n]}\n{len(by[n])} seed{'s' if len(by[n]) > 1 else ''}"
                       for n in names], fontsize=8)
        ax.set_ylabel('IoU (%) on SynthCity val')
        ax.set_title('mean ± std over seeds')
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(osp.join(out_dir, 'results.png'), dpi=100)
    except ImportError:
        pass
    return text


def write_curves(results, out_dir):
    """curves.md / curves.png: per-class IoU of every run against iterations (runs with >1
    point)."""
    runs = [r for r in results if len(r.get('curve') or []) > 1]
    if not runs:
        return ''
    label = {id(r): f"{short_name(r)} s{r['seed']}" for r in runs}
    cols = ('mIoU', ) + SMALL + CONTEXT
    lines = ['Per-class IoU at each validation (columns: thin classes, person, context classes)',
             '']
    for r in runs:
        lines += [f"{r['config']}, seed {r['seed']}", '', '| iter | ' + ' | '.join(cols) + ' |',
                  '| --- |' + ' --- |' * len(cols)]
        for p in r['curve']:
            vals = [p['miou']] + [p['iou'][c] for c in cols[1:]]
            lines.append(f"| {p['iter']} | " + ' | '.join(f'{v:.1f}' for v in vals) + ' |')
        lines.append('')
    text = '\n'.join(lines)
    with open(osp.join(out_dir, 'curves.md'), 'w') as f:
        f.write(text)
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(2, (len(cols) + 1) // 2,
                                 figsize=(3.0 * ((len(cols) + 1) // 2), 5.6), sharex=True)
        for ax, c in zip(axes.ravel(), cols):
            for r in runs:
                xs = [p['iter'] for p in r['curve']]
                ys = [p['miou'] if c == 'mIoU' else p['iou'][c] for p in r['curve']]
                ax.plot(xs, ys, marker='.', label=label[id(r)])
            ax.set_title(c, fontsize=9)
            ax.axhline(5, color='grey', lw=0.5, ls=':')
        for ax in axes.ravel()[len(cols):]:
            ax.axis('off')
        axes.ravel()[0].legend(fontsize=6)
        fig.supxlabel('iteration')
        fig.supylabel('IoU (%) on SynthCity val')
        fig.tight_layout()
        fig.savefig(osp.join(out_dir, 'curves.png'), dpi=100)
    except ImportError:
        pass
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('configs', nargs='+')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--iters', type=positive_iters, default=None,
                        help='shorten every config to this many iterations (same for all; a '
                        "positive int; default: each config's schedule)")
    parser.add_argument('--out-dir', default='work_dirs/learning_check')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='train every config with these changes (needs --tag)')
    parser.add_argument('--tag', default='', help='suffix of the run names for --cfg-options')
    parser.add_argument('--record-dir', default=osp.join(REPO, RECORD_DIR),
                        help='where each finished run\'s record is written and read (committed: '
                        'the tables are built from it; default: docs/runs/ of this clone)')
    parser.add_argument('--checkpoint-interval', type=positive_interval, default=None,
                        metavar='N', help='save a checkpoint every N iterations: where a run '
                        'killed before it finished is resumed from when started again (default: '
                        "the config's interval); changes nothing the run learns")
    parser.add_argument('--finished-only', action='store_true',
                        help='train nothing: report the runs of these configs finished in '
                        '--out-dir or recorded in --record-dir')
    parser.add_argument('--test-variants', nargs='+', type=parse_variant, default=[],
                        metavar='LABEL:KEY=VALUE[,KEY=VALUE]',
                        help='also test each final checkpoint with these options')
    args = parser.parse_args(argv)
    if bool(args.cfg_options) != bool(args.tag):
        parser.error('--cfg-options and --tag go together: a changed model needs its own run name')
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    if args.finished_only:
        if args.tag or args.test_variants:
            parser.error('--finished-only reports finished runs as they are: it takes no --tag, '
                         '--cfg-options or --test-variants')
        results = finished_runs(args.configs, args.seeds, args.out_dir, args.iters,
                                args.record_dir)
        if not results:
            sys.exit(f'no finished run of these configs with seeds {args.seeds} in {args.out_dir} '
                     f'or {args.record_dir}')
    else:
        results = []
        for seed in args.seeds:
            for config in args.configs:
                name = osp.splitext(osp.basename(config))[0]
                run = name + (f'-{args.tag}' if args.tag else '')
                res = run_one(config, seed, osp.join(args.out_dir, f'{run}_seed{seed}'), args.iters,
                              env, args.cfg_options, args.test_variants, args.record_dir,
                              args.tag, args.checkpoint_interval)
                name_tagged(res, name, args.tag)
                print(f"{run} seed {seed}: mIoU {res['miou']:.2f} ({res['seconds'] / 60:.1f} min)",
                      flush=True)
                results.append(res)
    print(write_report(results, args.out_dir, args.seeds, args.iters))
    write_curves([r for r in results if r['seed'] == args.seeds[0]], args.out_dir)


if __name__ == '__main__':
    main()
