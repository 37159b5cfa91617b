"""Published mIoU: the registry's table agrees with the verified list in the reference data, and
each run of a reproducing experiment gets its paper's number (or None where the paper has none)."""
from __future__ import annotations

import csv

import pytest

from semiseg.experiments import get_runs, list_experiments
from semiseg.experiments.published import (
    PAPER_BASELINES,
    PUBLISHED,
    published_key,
    published_result,
    published_table,
    report_rule,
)

# csv rows left out on purpose (semiseg.experiments.published module doc): not the paper's own number
LEFT_OUT = (
    lambda row: 'Reproduced' in row['setting'],                # AllSpark README re-runs
    lambda row: '†' in row['table'] + row['setting'],          # AllSpark image rows with an unexplained dagger
)


def _key(row: dict[str, str]) -> tuple[str, str, str, str]:
    dataset = 'pascal' if row['dataset'] == 'pascal_blended' else row['dataset']
    if row['method'] == 'UniMatch V2' and dataset == 'ade':
        dataset = 'ade20k'        # V2's runs (exp 63) use the release's own ADE20K preparation
    split = row['split']
    if row['method'] == 'UniMatch' and 'U2PL' in row['setting']:
        split = f'u2pl_{split}'   # UniMatch's crop-513 runs on U2PL's lists (exp 33)
    return row['method'], dataset, split, row['backbone'].split(' (')[0]


@pytest.fixture(scope='module')
def csv_rows(reference_dir):
    with open(reference_dir / 'published_results.csv', newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


def test_every_held_number_is_a_csv_row(csv_rows):
    held = {}
    for row in csv_rows:
        key = _key(row)
        pub = PUBLISHED.get(key)
        if pub is not None and pub.table == row['table']:
            assert (pub.miou, pub.source) == (float(row['miou']), row['source_url_or_file']), key
            held[key] = row
    assert set(held) == set(PUBLISHED)


def test_every_csv_row_is_held_or_left_out_on_purpose(csv_rows):
    for row in csv_rows:
        pub = PUBLISHED.get(_key(row))
        is_held = pub is not None and pub.table == row['table']
        left_out = any(rule(row) for rule in LEFT_OUT)
        assert is_held != left_out, row
        assert _key(row) in PUBLISHED   # a left-out row is an alternative to a held number


def _semivl_number(csv_rows, cfg):
    found = [float(r['miou']) for r in csv_rows if r['method'] == 'SemiVL' and r['dataset'] == cfg['dataset']
             and r['split'] == cfg['split'] and r['backbone'].startswith('CLIP ViT-B/16')]
    assert len(found) <= 1
    return found[0] if found else None


def test_semivl_runs_get_the_csv_number_or_none(csv_rows):
    missing = []
    for exp_id in (40, 42, 43, 44):
        for index, cfg in enumerate(get_runs(exp_id)):
            pub = published_result(exp_id, cfg)
            expected = _semivl_number(csv_rows, cfg)
            if expected is None:
                assert pub is None
                missing.append((exp_id, cfg['dataset'], cfg['split']))
            else:
                assert pub is not None and pub.miou == expected, (exp_id, index)
                assert pub.source.startswith('https://github.com/')
    assert missing == [(43, 'ade', '1_128'), (44, 'cityscapes', '1_30')]


def test_ablations_and_demo_get_none():
    for exp_id in (0, 41):
        assert [published_result(exp_id, cfg) for cfg in get_runs(exp_id)] == [None] * len(get_runs(exp_id))
    assert published_result(99999, get_runs(40)[0]) is None


def test_reproducing_experiments_attach_by_method_model_dataset_split(csv_rows):
    """Holds for every experiment that declares `reproduces` (UniMatch / AllSpark / V2 ones too)."""
    for exp in list_experiments():
        if exp.reproduces is None:
            continue
        for cfg in get_runs(exp.exp_id):
            pub = published_result(exp.exp_id, cfg)
            key = published_key(exp.reproduces, cfg)
            table = published_table(exp.reproduces, cfg['method'])
            assert pub is (table.get(key) if key else None)
            if pub is not None and table is PUBLISHED:
                assert any(_key(r) == key and float(r['miou']) == pub.miou for r in csv_rows)


def test_a_baseline_run_or_another_model_gets_none():
    cfg = get_runs(40)[0]
    assert published_key('SemiVL', cfg) == ('SemiVL', 'pascal', '92', 'CLIP ViT-B/16')
    assert published_key('SemiVL', {**cfg, 'method': 'supervised'}) is None
    assert published_key('SemiVL', {**cfg, 'model': 'mmseg.vlm-zegclip-rd-pt-vitb'}) is None
    assert published_key('UniMatch V2', {**cfg, 'method': 'unimatch_v2', 'model': 'mmseg.dpt-dinov2l'}) == \
        ('UniMatch V2', 'pascal', '92', 'DINOv2-L')
    assert PUBLISHED[('UniMatch V2', 'pascal', '92', 'DINOv2-L')].miou == 86.44
    with pytest.raises(ValueError, match='unknown paper'):
        published_key('SemiVL2', cfg)


# ----------------------------------------------------------------------------- V2's baselines (exps 64, 66)
# log name piece -> (our method, the csv column of the number by the method's rule)
V2_BASELINE_LOGS = {'fixmatch': ('fixmatch_ema', 'best_miou_ema'), 'labeled_only': ('supervised', 'best_miou')}
TABLES_1_TO_5 = {f'table0{t}' for t in range(1, 6)}    # the partial-label tables (6-: ablations, figures)


@pytest.fixture(scope='module')
def v2_log_rows(reference_dir):
    with open(reference_dir / 'unimatch_v2_results.csv', newline='', encoding='utf-8') as f:
        return {row['log']: row for row in csv.DictReader(f)}


def _baseline_log(row: dict[str, str]) -> str | None:
    """The baseline method of a DINOv2-B partial-label log of tables 1-5, else None."""
    if row['backbone'] != 'dinov2_base' or row['split'] == 'all' or row['log'][:7] not in TABLES_1_TO_5:
        return None
    return next((method for piece, (method, _) in V2_BASELINE_LOGS.items() if f'{piece}_' in row['log']), None)


def test_v2_baseline_numbers_are_the_logs_best_by_the_methods_rule(v2_log_rows):
    held = set()
    for method, table in PAPER_BASELINES['UniMatch V2'].items():
        column = {m: c for m, c in V2_BASELINE_LOGS.values()}[method]
        for (paper, dataset, split, backbone), pub in table.items():
            row = v2_log_rows[pub.source.rsplit('/', 1)[1]]
            assert (paper, backbone) == ('UniMatch V2', 'DINOv2-B')
            assert (row['dataset'], row['split'], row['backbone']) == (dataset, split, 'dinov2_base')
            assert pub.miou == float(row[column]), pub.source
            # a cancelled job's log says so in the row (the number is its best so far)
            evaluated = int(row['evals_logged'])
            assert ('log truncated' in pub.table) == (evaluated < int(row['epochs'])), pub.source
            if evaluated < int(row['epochs']):
                assert f'{evaluated} of {row["epochs"]} epochs' in pub.table
            held.add(row['log'])
    # every DINOv2-B baseline log of the release's partial-label tables is held
    assert held == {log for log, row in v2_log_rows.items() if _baseline_log(row)}
    assert len(held) == 13 + 19


def test_v2_ablation_numbers_of_the_spec_attach_to_exp_64():
    """spec/unimatch_v2.md §5: FixMatch-EMA best EMA for DINOv2-B at VOC-92 / ADE-1/64 / COCO-1/512."""
    runs = get_runs(64)
    by_run = {(cfg['dataset'], cfg['split']): published_result(64, cfg) for cfg in runs}
    assert [by_run[k].miou for k in (('pascal', '92'), ('ade20k', '1_64'), ('coco', '1_512'))] == [83.83, 37.76, 46.71]
    # the release logged no FixMatch run on Cityscapes nor on COCO 1/64, 1/32
    assert {k for k, pub in by_run.items() if pub is None} == {
        ('cityscapes', s) for s in ('1_16', '1_8', '1_4', '1_2')} | {('coco', '1_64'), ('coco', '1_32')}
    assert {report_rule(cfg, published_result(64, cfg)) for cfg in runs} == {'ema_best'}


def test_v2_labeled_only_numbers_attach_to_exp_66():
    runs = get_runs(66)
    pubs = [published_result(66, cfg) for cfg in runs]
    assert None not in pubs and len(pubs) == 19
    assert [p.miou for p in pubs[:5]] == [76.86, 82.07, 85.27, 87.15, 88.3]      # spec §5, Sup-B
    assert {report_rule(cfg, pub) for cfg, pub in zip(runs, pubs)} == {'best'}  # no EMA: the model's best


def test_v2_baselines_attach_only_to_the_release_runs():
    fme, sup = get_runs(64)[0], get_runs(66)[0]
    assert published_result(64, {**fme, 'lr': 1e-5}) is None              # a changed run: not the release's
    assert published_result(64, {**fme, 'model': 'mmseg.dpt-dinov2s'}) is None   # the logs are DINOv2-B only
    assert published_result(66, {**sup, 'labeled_samples': None}) is None   # supervised.py repeats the list
    assert published_result(66, {**sup, 'batch_size': 4}) is None          # supervised.py doubles the batch
    # a V2 run with the baseline's method but not the baseline's other values gets none either
    assert published_result(60, {**get_runs(60)[5], 'method': 'supervised'}) is None
    assert published_table('UniMatch V2', 'unimatch') is None and published_table('SemiVL', 'supervised') is None
