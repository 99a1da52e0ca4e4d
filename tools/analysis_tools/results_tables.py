"""Rebuild every results table and figure of the learning checks from the committed run records.

    python tools/analysis_tools/results_tables.py            # rewrite the tables and figures
    python tools/analysis_tools/results_tables.py --check    # exit 1 if any differs
                                                             # (the suite runs it)

Reads only ``docs/runs/*.json`` (the records ``learning_check.py`` writes, one per finished run;
no work dir, no checkpoint), so a fresh clone rebuilds the same bytes. The tables live in the
Markdown files between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` (README.md,
docs/*.md, configs/*/README.md); what is between the markers is replaced, the rest of each file is
left alone. Blocks, for SET in ``quickstart`` (configs/quickstart/, 1k iterations) and
``benchmark`` (configs/benchmark/, 4k iterations on SynthCity-bench):

* ``summary``: one row per model: both sets' val and test mIoU, the benchmark's thin-class mean,
  parameters;
* ``SET``: val and test mIoU, thin- and context-class means, the lowest small class, time;
* ``SET-classes``: per-class IoU, val and test;
* ``SET-curves``: val mIoU at each validation during training (seed 0);
* ``SET-runs``: where and with what the records were made (machine, versions, commits, dates);
* ``sanet-vs-fcn``: SANet's defaults against FCN per set, val and test, seed by seed;
* ``model-HEAD`` (``HEAD`` in sanet, ssanet, gffnet; configs/HEAD/README.md): that head against
  FCN and PSPNet, both sets, val and test, thin and context classes, seed by seed.

Figures (``docs/figures/SET_results.svg``): val and test mIoU per model, mean ± std over seeds,
drawn as plain SVG text (no plotting library, so the bytes do not depend on its version).
Only the runs of each set's configs with their own schedule and no ``--tag``/options are
tabulated; val is where choices are made, test is reported beside it (docs/learning_check.md).
"""
import argparse
import os
import os.path as osp
import re
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from mmseg_ext.utils.run_records import (  # noqa: E402
    CLASSES,
    CONTEXT,
    SMALL,
    THIN,
    fmt,
    group_mean,
    mean_std,
    read_records,
)

RECORD_DIR = osp.join('docs', 'runs')
MODELS = (('fcn', 'FCN'), ('pspnet', 'PSPNet'), ('sanet', 'SANet'), ('ssanet', 'SSANet'),
          ('gffnet', 'GFFNet'))
SETS = {
    'quickstart': ('_r18tiny-d8_1xb8-1k_synthcity-128x256.py', 'configs/quickstart/'),
    'benchmark': ('_r18tiny-d8_1xb8-4k_synthcity-bench-128x256.py', 'configs/benchmark/'),
}
BLOCK = re.compile(r'(<!-- results:([a-z-]+) -->\n)(.*?)(<!-- /results:\2 -->)', re.S)


def select(records, set_name):
    """{model key: [records of that model's config in ``set_name``, by seed]} (no tag, own
    schedule)."""
    suffix = SETS[set_name][0]
    out = {}
    for key, _ in MODELS:
        runs = [r for r in records if r['config'] == key + suffix and not r.get('tag')
                and not r['train_opts'] and r['iters'] is None]
        out[key] = sorted(runs, key=lambda r: r['seed'])
    return out


def _seeds(runs):
    return ', '.join(str(r['seed']) for r in runs) or '-'


def _cell(values):
    return fmt(values) if values else '-'


def _none_yet(set_name):
    return (f'No run of the {set_name} set is recorded yet (docs/runs/ holds none of '
            f'{SETS[set_name][1]}*{SETS[set_name][0]}).\n')


def table_set(records, set_name):
    runs = select(records, set_name)
    if not any(runs.values()):
        return _none_yet(set_name)
    lines = ['| model | val mIoU | test mIoU | thin classes val | thin classes test | '
             'context classes val | context classes test | lowest small class, val (mean) | '
             'train time / run | seeds |', '| --- ' * 10 + '|']
    for key, name in MODELS:
        rs = runs[key]
        if not rs:
            lines.append(f'| {name} |' + ' - |' * 8 + ' none yet |')
            continue
        low = min(SMALL, key=lambda c: mean_std([r['iou'][c] for r in rs])[0])
        secs = sum(r['seconds'] for r in rs) / len(rs)
        lines.append(
            f"| {name} | {_cell([r['miou'] for r in rs])} "
            f"| {_cell([r['test']['miou'] for r in rs])} "
            f"| {_cell([group_mean(r['iou'], THIN) for r in rs])} "
            f"| {_cell([group_mean(r['test']['iou'], THIN) for r in rs])} "
            f"| {_cell([group_mean(r['iou'], CONTEXT) for r in rs])} "
            f"| {_cell([group_mean(r['test']['iou'], CONTEXT) for r in rs])} "
            f"| {low} {mean_std([r['iou'][low] for r in rs])[0]:.1f} | {secs / 60:.1f} min "
            f"| {_seeds(rs)} |")
    return '\n'.join(lines) + '\n\nmean ± std over the seeds listed (one seed: its value); ' \
        'thin classes: ' + ', '.join(THIN) + '; context classes: ' + ', '.join(CONTEXT) + '.\n'


def table_classes(records, set_name):
    runs = select(records, set_name)
    if not any(runs.values()):
        return _none_yet(set_name)
    keys = [(k, n) for k, n in MODELS if runs[k]]
    lines = ['| class | ' + ' | '.join(f'{n} val | {n} test' for _, n in keys) + ' |',
             '| --- |' + ' --- | --- |' * len(keys)]
    for c in CLASSES:
        tag = ' (thin)' if c in THIN else ' (context)' if c in CONTEXT else ''
        cells = []
        for k, _ in keys:
            cells += [_cell([r['iou'][c] for r in runs[k]]),
                      _cell([r['test']['iou'][c] for r in runs[k]])]
        lines.append(f'| {c}{tag} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def table_curves(records, set_name):
    runs = select(records, set_name)
    first = {k: next((r for r in runs[k] if r['seed'] == 0), None) for k, _ in MODELS}
    keys = [(k, n) for k, n in MODELS if first[k] and len(first[k].get('curve') or []) > 1]
    if not keys:
        return (f'No seed-0 run of the {set_name} set with more than one validation is recorded '
                'yet.\n')
    iters = sorted({p['iter'] for k, _ in keys for p in first[k]['curve']})
    lines = ['| iteration | ' + ' | '.join(n for _, n in keys) + ' |',
             '| --- |' + ' --- |' * len(keys)]
    for it in iters:
        vals = []
        for k, _ in keys:
            p = next((p for p in first[k]['curve'] if p['iter'] == it), None)
            vals.append(f"{p['miou']:.1f}" if p else '-')
        lines.append(f'| {it} | ' + ' | '.join(vals) + ' |')
    return '\n'.join(lines) + '\n\nval mIoU at each validation of the seed-0 runs.\n'


def table_runs(records, set_name):
    """Where, when and with what the tabulated records were made."""
    runs = [r for rs in select(records, set_name).values() for r in rs]
    if not runs:
        return _none_yet(set_name)

    def distinct(get):
        return ', '.join(sorted({get(r) for r in runs}))
    env = [r['environment'] for r in runs]
    machines = sorted({f"{e['machine']['cpus']}-CPU {e['machine']['cpu']}"
                       + (f", GPU {e['machine']['gpu']}" if e['machine'].get('gpu') else ', no GPU')
                       for e in env})
    versions = sorted({', '.join(f'{k} {v}' for k, v in sorted(e['versions'].items()) if v)
                       for e in env})
    dates = sorted(e['date'] for e in env)
    commits = sorted({(e['commit'] or 'unknown')[:10] + ('+dirty' if (e['commit'] or '').endswith(
        '+dirty') else '') for e in env})
    resumed = [r for r in runs if r.get('resumed')]
    inexact = [r for r in resumed if not all(p['exact'] for p in r['resumed'])]
    resumes = (f" {len(resumed)} of them killed and resumed from a checkpoint (RNGStateHook: "
               'the uninterrupted run bit for bit'
               + (f'; {len(inexact)} without its confirmation, see their records' if inexact
                  else '') + '); train time counts each killed segment up to the checkpoint '
               'resumed from.' if resumed else '')
    return (f"{len(runs)} runs, records in docs/runs/ ({distinct(lambda r: r['config'])}); "
            f"trained {dates[0]} to {dates[-1]} on {'; '.join(machines)}; "
            f"{'; '.join(versions)}; project commit {', '.join(commits)}.{resumes} Train time is "
            'wall time on a shared development machine, not a speed comparison.\n')


def table_summary(records):
    sets = {s: select(records, s) for s in SETS}
    if not any(rs for s in sets.values() for rs in s.values()):
        return 'No run is recorded yet (docs/runs/ is empty).\n'
    lines = ['| model | quickstart val mIoU | quickstart test mIoU | benchmark val mIoU | '
             'benchmark test mIoU | benchmark thin classes, val / test | params | FLOPs | seeds |',
             '| --- ' * 9 + '|']
    for key, name in MODELS:
        q, b = sets['quickstart'][key], sets['benchmark'][key]
        params = sorted({r['params'] for r in q + b if 'params' in r})
        flops = sorted({r['flops'] for r in b or q if 'flops' in r})
        thin = (f"{_cell([group_mean(r['iou'], THIN) for r in b])} / "
                f"{_cell([group_mean(r['test']['iou'], THIN) for r in b])}") if b else '-'
        lines.append(
            f"| {name} | {_cell([r['miou'] for r in q])} | {_cell([r['test']['miou'] for r in q])} "
            f"| {_cell([r['miou'] for r in b])} | {_cell([r['test']['miou'] for r in b])} "
            f"| {thin} | {', '.join(f'{p / 1e6:.2f}M' for p in params) or '-'} "
            f"| {', '.join(f'{f / 1e9:.2f}G' for f in flops) or '-'} "
            f"| {_seeds(q)} / {_seeds(b)} |")
    return '\n'.join(lines) + (
        '\n\nSynthCity mIoU, mean ± std over seeds (seeds: quickstart / benchmark); val is where '
        'choices were made, test is held out. Parameters of the r18tiny-d8 model as trained '
        '(auxiliary FCN head included); FLOPs of the inference model (no auxiliary head) on one '
        '128x256 image, as tools/analysis_tools/get_flops.py counts them (1 multiply-add = 1 '
        'FLOP). Per class, curves and provenance: '
        '[docs/learning_check.md](docs/learning_check.md#results-from-the-run-records).\n')


def _points(d):
    """A difference in mIoU points, signed, one decimal; one that rounds to zero is ``0.0``
    (``-0.0`` would read as a loss)."""
    text = f'{d:+.1f}'
    return '0.0' if text in ('+0.0', '-0.0') else text


def _verdict(diffs):
    """How a model fares against a baseline over paired seeds, said whichever way it falls."""
    higher, lower = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    level = len(diffs) - higher - lower
    if not level:
        return ('higher on every seed' if not lower else 'lower on every seed' if not higher
                else 'higher on some seeds, lower on others')
    if level == len(diffs):
        return 'level on every seed'
    return f'higher on {higher}, lower on {lower}, level on {level} of {len(diffs)} seeds'


def _versus(records, key, base):
    """One line per set: model ``key`` against ``base`` on the seeds both have, val and test,
    seed by seed, said plainly whichever way it falls."""
    name, base_name = dict(MODELS)[key], dict(MODELS)[base]
    lines = []
    for set_name in SETS:
        runs = select(records, set_name)
        model = {r['seed']: r for r in runs[key]}
        other = {r['seed']: r for r in runs[base]}
        seeds = sorted(set(model) & set(other))
        if not seeds:
            lines.append(f'- {set_name}: no seed has a record of both {name} and {base_name} yet.')
            continue
        parts = []
        for split, get in (('test', lambda r: r['test']['miou']), ('val', lambda r: r['miou'])):
            diffs = [get(model[s]) - get(other[s]) for s in seeds]
            m = sum(diffs) / len(diffs)
            if len(seeds) == 1:  # one pair: a difference, no verdict over seeds yet
                parts.append(f"on **{split}** {name} scores {_cell([get(model[seeds[0]])])} "
                             f"against {base_name}'s {_cell([get(other[seeds[0]])])}, "
                             f"{_points(m)} points")
                continue
            parts.append(
                f"on **{split}** {name} scores {_cell([get(model[s]) for s in seeds])} against "
                f"{base_name}'s {_cell([get(other[s]) for s in seeds])}, {_points(m)} points on "
                f"average, {_verdict(diffs)} ({', '.join(map(_points, diffs))})")
        n = len(seeds)
        lines.append(f"- {set_name} ({n} seed{'s' if n != 1 else ''}: "
                     f"{', '.join(map(str, seeds))}): " + '; '.join(parts) + '.')
    return lines


def comparison(records):
    """SANet (its default readings, chosen on SynthCity-bench val) against FCN, per set."""
    return ('SANet with its default readings (chosen on SynthCity-bench val) against FCN, on the '
            'seeds both have:\n\n' + '\n'.join(_versus(records, 'sanet', 'fcn')) + '\n')


BASELINES = ('fcn', 'pspnet')  # mmseg's own heads on the same body, data and schedule


def model_results(records, key):
    """One head against the baselines (configs/<head>/README.md): both sets' val and test mIoU,
    the benchmark's thin- and context-class means, then the seed-by-seed comparisons."""
    sets = {s: select(records, s) for s in SETS}
    lines = ['| model | quickstart val mIoU | quickstart test mIoU | benchmark val mIoU | '
             'benchmark test mIoU | benchmark thin classes, val / test | '
             'benchmark context classes, val / test | seeds |', '| --- ' * 8 + '|']
    for k in (key,) + BASELINES:
        q, b = sets['quickstart'][k], sets['benchmark'][k]
        group = lambda cls: (f"{_cell([group_mean(r['iou'], cls) for r in b])} / "  # noqa: E731
                             f"{_cell([group_mean(r['test']['iou'], cls) for r in b])}"
                             if b else '-')
        lines.append(
            f"| {dict(MODELS)[k]} | {_cell([r['miou'] for r in q])} "
            f"| {_cell([r['test']['miou'] for r in q])} | {_cell([r['miou'] for r in b])} "
            f"| {_cell([r['test']['miou'] for r in b])} | {group(THIN)} | {group(CONTEXT)} "
            f"| {_seeds(q)} / {_seeds(b)} |")
    name = dict(MODELS)[key]
    text = '\n'.join(lines) + (
        f'\n\nSynthCity mIoU from the run records, mean ± std over seeds (seeds: quickstart / '
        f'benchmark): {name} against mmseg\'s FCN and PSPNet heads on the same r18tiny-d8 body, '
        'data and schedule. Val is where choices were made, test is held out; thin classes: '
        + ', '.join(THIN) + '; context classes: ' + ', '.join(CONTEXT) + '.\n')
    for base in BASELINES:
        text += (f'\n{name} against {dict(MODELS)[base]}, on the seeds both have:\n\n'
                 + '\n'.join(_versus(records, key, base)) + '\n')
    return text + ('\nPer class, curves and provenance: [docs/learning_check.md]'
                   '(../../docs/learning_check.md#results-from-the-run-records).\n')


def figure(records, set_name):
    """An SVG bar chart: val and test mIoU per model, mean ± std (plain text, stable bytes)."""
    runs = select(records, set_name)
    w, h, left, bottom, top = 520, 260, 50, 40, 30
    plot_h = h - bottom - top
    step = (w - left - 20) / len(MODELS)
    y = lambda v: top + plot_h * (1 - v / 100)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2:.0f}" y="16" text-anchor="middle" font-size="12">SynthCity '
           f'{set_name}: mIoU (%), mean ± std over seeds</text>']
    for v in range(0, 101, 20):
        out.append(f'<line x1="{left}" x2="{w - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v}</text>')
    colours = (('val', '#4472c4'), ('test', '#ed7d31'))
    for i, (key, name) in enumerate(MODELS):
        x0 = left + i * step + step * 0.15
        bw = step * 0.35
        rs = runs[key]
        for j, (split, colour) in enumerate(colours):
            vals = [r['miou'] if split == 'val' else r['test']['miou'] for r in rs]
            if not vals:
                continue
            m, s = mean_std(vals)
            x = x0 + j * bw
            out.append(f'<rect x="{x:.1f}" y="{y(m):.1f}" width="{bw:.1f}" '
                       f'height="{y(0) - y(m):.1f}" fill="{colour}"/>')
            if len(vals) > 1:
                cx = x + bw / 2
                out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(m + s):.1f}" '
                           f'y2="{y(max(m - s, 0)):.1f}" stroke="black"/>')
            out.append(f'<text x="{x + bw / 2:.1f}" y="{y(m) - 3:.1f}" text-anchor="middle" '
                       f'font-size="9">{m:.1f}</text>')
        seeds = f'{len(rs)} seed' + ('s' if len(rs) != 1 else '')
        out.append(f'<text x="{x0 + bw:.1f}" y="{h - bottom + 14}" text-anchor="middle">'
                   f'{name}</text>')
        out.append(f'<text x="{x0 + bw:.1f}" y="{h - bottom + 27}" text-anchor="middle" '
                   f'font-size="9">{seeds}</text>')
    for j, (split, colour) in enumerate(colours):
        out.append(f'<rect x="{w - 110 + j * 50}" y="24" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{w - 96 + j * 50}" y="33">{split}</text>')
    return '\n'.join(out) + '\n</svg>\n'


def blocks(records):
    """{block name: its generated text}."""
    out = {'summary': table_summary(records), 'sanet-vs-fcn': comparison(records)}
    for key, _ in MODELS:
        if key not in BASELINES:
            out[f'model-{key}'] = model_results(records, key)
    for s in SETS:
        out[s] = table_set(records, s)
        out[f'{s}-classes'] = table_classes(records, s)
        out[f'{s}-curves'] = table_curves(records, s)
        out[f'{s}-runs'] = table_runs(records, s)
    return out


def markdown_files(repo):
    files = [osp.join(repo, 'README.md')]
    for folder in ('docs', 'configs'):
        for dirpath, dirnames, names in os.walk(osp.join(repo, folder)):
            dirnames.sort()
            files += [osp.join(dirpath, n) for n in sorted(names) if n.endswith('.md')]
    return [f for f in files if osp.isfile(f)]


def rebuild(repo, records):
    """{path: new content} of every file whose generated parts differ from ``records``'."""
    made = blocks(records)
    changed = {}
    for path in markdown_files(repo):
        with open(path, encoding='utf-8') as f:
            text = f.read()

        def fill(m, path=path):
            if m.group(2) not in made:
                raise ValueError(f'{path}: unknown results block {m.group(2)!r} (known: '
                                 f'{", ".join(sorted(made))})')
            return m.group(1) + made[m.group(2)] + m.group(4)
        new = BLOCK.sub(fill, text)
        if new != text:
            changed[path] = new
    for s in SETS:
        path = osp.join(repo, 'docs', 'figures', f'{s}_results.svg')
        svg = figure(records, s)
        old = open(path, encoding='utf-8').read() if osp.isfile(path) else None
        if svg != old:
            changed[path] = svg
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 naming each file the records would change')
    parser.add_argument('--repo', default=REPO, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    records = read_records(osp.join(args.repo, RECORD_DIR))
    changed = rebuild(args.repo, records)
    rel = sorted(osp.relpath(p, args.repo) for p in changed)
    if args.check:
        if rel:
            print('results_tables: these differ from what docs/runs/ produces (edited by hand, '
                  'or records added without rebuilding): ' + ', '.join(rel) + '. Run '
                  '`python tools/analysis_tools/results_tables.py`.', file=sys.stderr)
            return 1
        print(f'results_tables: every table and figure matches the {len(records)} records')
        return 0
    for path, text in changed.items():
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
    print(f'results_tables: {len(records)} records; rewrote {", ".join(rel) or "nothing"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
