# SPDX-License-Identifier: GPL-3.0-or-later
"""The PAM corpus through the editor and the real libpam (issue 8).

For every tree of tests/corpus/manifest.yml (rendered by lab/pamcorpus/build.sh):

1. copy the tree to a node root (plus the files the editor checks for: the
   PAM modules it writes, python3, the adopt script; /etc/passwd and
   /etc/group with the user classes);
2. evaluate the copy with the real libpam (tests/pam_eval's harness: every
   user class x scenario x service x op, stand-ins for directory and site
   modules);
3. run the editor on the copy (``plan_present`` + ``commit``, ``root=`` the
   copy) with the manifest's parameters;
4. ``expect: refused``: PlanError whose message matches ``refusal``, and no
   file changed.  ``expect: correct``: evaluate again, then
   - issue 8's property (pam_eval_harness.property_check): only sshd's account
     answer for non-admin users without a job changes, to a denial;
   - same path: every other answer passes through the same stand-in modules
     as before (the adopt modules aside), so nobody silently skips a rule;
   - the manifest's structural ``after_checks``;
   - a second run plans no change;
   - state=absent restores every file byte for byte.

Known failures of today's editor are strict xfails (the manifest's ``xfail``):
a fix makes them pass, and strict xfail then forces the marker's removal.
Results per tree go to build/pamcorpus-results.json (docs/pam-corpus.md).
"""

import concurrent.futures
import contextlib
import copy
import glob
import hashlib
import json
import os
import re
import shutil
import time

import pytest
import yaml

import _pam_eval
import pam_eval_harness as H
from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_edit as pe
from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_stack as ps
from ansible_collections.hpc.slurm_adopt.plugins.modules import pam_adopt

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'manifest.yml')) as _handle:
    MANIFEST = yaml.safe_load(_handle)
DEFAULTS = MANIFEST['defaults']
TREES = MANIFEST['trees']
EVAL_PATHS = ('etc/pam.d', 'usr/lib/pam.d', 'etc/security', 'etc/login.defs', 'etc/nsswitch.conf')
PLACEHOLDER_MODULES = ('pam_python.so', 'pam_exec.so', 'pam_access.so', 'pam_listfile.so', 'pam_unix.so')
ADOPT_NAMES = set(H.ADOPT_MODULES)
# beside the cached generator chroots (lab/pamcorpus/chroot.sh), not in the
# checkout: a clean clone on this machine reuses the answers of unchanged inputs
EVAL_CACHE = os.path.join(os.environ.get('PAMCORPUS_CACHE') or '/var/cache/slurm-adopt-corpus', 'eval')


def _params_of(entry):
    return [pytest.param(entry['name'], id=entry['name'],
                         marks=[pytest.mark.xfail(strict=True, reason=entry['xfail'])] if entry.get('xfail') else [])]


def test_manifest_is_complete():
    """Every tree has provenance, an expectation with a reason, and at least
    20 trees exist.  Fails when an entry is missing a field (not a skip)."""
    names = [t['name'] for t in TREES]
    assert len(names) == len(set(names))
    assert len(names) >= 20, 'the corpus needs at least 20 trees (issue 8)'
    for entry in TREES:
        assert entry.get('family'), entry['name']
        assert entry.get('expect') in ('correct', 'refused'), entry['name']
        assert entry.get('reason'), entry['name']
        assert entry.get('services'), entry['name']
        if entry['expect'] == 'refused':
            re.compile(entry['refusal'])
        if entry['recipe'] in ('handwritten', 'site'):
            kind = 'trees' if entry['recipe'] == 'handwritten' else 'sites'
            assert os.path.isfile(os.path.join(os.path.dirname(__file__), kind, entry['name'], 'SOURCE.md')), \
                entry['name']
        for module in entry.get('directory_modules', []) + entry.get('site_modules', []):
            assert module[:-3] in H.STANDIN_MODULES, (
                '%s: %s is not replaced by a stand-in in tests/pam_eval (add it there or drop it here)'
                % (entry['name'], module))


# --------------------------------------------------------------------------
# Helpers


def entry_of(name):
    for entry in TREES:
        if entry['name'] == name:
            return entry
    raise KeyError(name)


@contextlib.contextmanager
def user_classes(entry):
    """The harness's user classes, with this tree's admin group and the
    manifest's per-class changes (uid, extra groups)."""
    saved = copy.deepcopy(H.CLASSES), H.ADMIN_GROUP
    group = entry.get('admin_group') or DEFAULTS['check']['admin_group']
    try:
        H.ADMIN_GROUP = group
        H.CLASSES['admin']['groups'] = [group]
        for cls, change in (entry.get('classes') or {}).items():
            H.CLASSES[cls].update(change)
        yield
    finally:
        H.CLASSES.clear()
        H.CLASSES.update(saved[0])
        H.ADMIN_GROUP = saved[1]


def answers(scenario):
    """The harness's answers, plus: pam_slurm_adopt.so (a site's older rule,
    the C module) answers as the adopt rule whatever its arguments."""
    lines = []
    for cls, spec in sorted(H.CLASSES.items()):
        rc = H._adopt_answer('pam_slurm_adopt', cls, scenario)  # pylint: disable=protected-access
        lines.append('pam_slurm_adopt account %s * %d 0 adopt' % (spec['name'], H.RC[rc]))
    return '\n'.join(lines) + '\n' + H.answers(scenario)


def copy_rooted(src_root, rel, dst_root, deref):
    """Copy ``rel`` of a tree.  ``deref``: resolve symlinks inside the tree
    (absolute ones relative to the tree root), for the evaluator, which only
    mounts the tree's PAM paths (authselect's links point into /etc/authselect)."""
    src = os.path.join(src_root, rel)
    dst = os.path.join(dst_root, rel)
    if not os.path.lexists(src):
        return
    if deref and os.path.islink(src):
        _copy_resolved(src_root, src, dst)     # dangling in the tree: absent for PAM too
        return
    if os.path.isdir(src) and not os.path.islink(src):
        os.makedirs(dst, exist_ok=True)
        for name in sorted(os.listdir(src)):
            copy_rooted(src_root, os.path.join(rel, name), dst_root, deref)
        return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
    else:
        shutil.copy2(src, dst)


def _copy_resolved(src_root, real, dst, hops=20):
    while os.path.islink(real) and hops:
        target = os.readlink(real)
        real = os.path.join(src_root, target.lstrip('/')) if target.startswith('/') else \
            os.path.join(os.path.dirname(real), target)
        hops -= 1
    if not os.path.exists(real):
        return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.isdir(real):
        shutil.copytree(real, dst, symlinks=False)
    else:
        shutil.copy2(real, dst)


def make_node(tree, dest, entry):
    """The node root the editor works on: the tree, plus what the editor's
    module checks look for, plus passwd/group with the local user classes."""
    shutil.copytree(tree, dest, symlinks=True)
    os.unlink(os.path.join(dest, 'SOURCE.md'))
    secdir = os.path.join(dest, 'lib', 'x86_64-linux-gnu', 'security')
    os.makedirs(secdir, exist_ok=True)
    for name in PLACEHOLDER_MODULES:
        path = os.path.join(secdir, name)
        if not os.path.exists(path):
            open(path, 'w').close()
    for rel in ('usr/bin/python3', 'usr/lib/slurm-adopt/pam_slurm_adopt.py'):
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, 'w').close()
    group = entry.get('admin_group') or DEFAULTS['check']['admin_group']
    passwd = ['root:x:0:0:root:/root:/bin/bash']
    groups = ['root:x:0:']
    members = {group: []}
    for cls in ('ansible', 'admin', 'local'):
        spec = H.CLASSES[cls]
        passwd.append('%s:x:%d:%d::/home/%s:/bin/bash' % (spec['name'], spec['uid'], spec['uid'], spec['name']))
        groups.append('%s:x:%d:' % (spec['name'], spec['uid']))
        for extra in spec.get('groups') or []:
            members.setdefault(extra, []).append(spec['name'])
    for gid, name in enumerate(sorted(members), 990):
        groups.append('%s:x:%d:%s' % (name, gid, ','.join(members[name])))
    for rel, lines in (('etc/passwd', passwd), ('etc/group', groups)):
        path = os.path.join(dest, rel)
        if not os.path.lexists(path):
            with open(path, 'w') as handle:
                handle.write('\n'.join(lines) + '\n')
    return dest


def eval_stage(node, dest, entry):
    """What the evaluator mounts: the node's PAM paths with symlinks resolved."""
    os.makedirs(dest)
    for rel in EVAL_PATHS:
        copy_rooted(node, rel, dest, deref=True)
    binds, notes = {}, []
    for rel in entry.get('extra_files') or []:
        target = '/' + rel
        parent = os.path.dirname(target)
        if os.path.lexists(target):
            copy_rooted(node, rel, dest, deref=True)
            binds[target] = os.path.join(dest, rel)
        elif parent not in ('/', '/etc') and os.path.isdir(parent):
            copy_rooted(node, os.path.dirname(rel), dest, deref=True)
            binds[parent] = os.path.join(dest, os.path.dirname(rel))
        else:
            notes.append('%s is not visible to the evaluator (%s does not exist on this machine; '
                         'the rule reads a missing file)' % (rel, target))
    return dest, binds, notes


def _hung_is_stopped():
    """True while the harness's ``hung`` scenario answers exactly as
    ``stopped`` (same codes, no sleep) and differs only in the trace tag:
    then ``hung`` results are ``stopped`` results with that tag, and one
    evaluation less per side is needed."""
    return H.answers('hung') == H.answers('stopped').replace(' down\n', ' hung\n') and \
        H.probe_users('hung') == H.probe_users('stopped')


def _as_hung(results):
    out = []
    for res in results:
        res = copy.deepcopy(res)
        res['query']['labels']['scenario'] = 'hung'
        for line in res.get('trace') or []:
            if line.get('tag') == 'down':
                line['tag'] = 'hung'
        out.append(res)
    return out


def _hash_files(digest, path, base=None):
    """Names (relative to ``base``), link targets, modes and contents."""
    name = os.path.relpath(path, base) if base else path
    if os.path.islink(path):
        digest.update(('L %s %s\n' % (name, os.readlink(path))).encode())
    elif os.path.isdir(path):
        digest.update(('D %s\n' % name).encode())
        for child in sorted(os.listdir(path)):
            _hash_files(digest, os.path.join(path, child), base)
    elif os.path.isfile(path):
        digest.update(('F %s %o\n' % (name, os.stat(path).st_mode & 0o7777)).encode())
        with open(path, 'rb') as handle:
            digest.update(handle.read())


_SYSTEM_KEY = []


def _system_key(standin):
    """What the answers depend on besides the tree and the queries: the
    evaluator, the harness, the stand-in, this machine's libpam and PAM
    modules.  (This test's own logic reaches the evaluation only through the
    staged tree and the queries, which are part of the key.)"""
    if not _SYSTEM_KEY:
        digest = hashlib.sha256()
        for path in (_pam_eval.__file__, H.__file__, os.path.join(os.path.dirname(H.__file__), 'standin.c'),
                     standin, os.path.realpath('/lib/x86_64-linux-gnu/libpam.so.0')):
            _hash_files(digest, path, base=os.path.dirname(path))     # content and file name, not where
        for pattern in _pam_eval.MODULE_DIR_GLOBS:
            for directory in sorted(glob.glob(pattern)):
                for name in sorted(os.listdir(directory)):
                    st = os.stat(os.path.join(directory, name))
                    digest.update(('%s/%s %d %d\n' % (directory, name, st.st_size, st.st_mtime)).encode())
        _SYSTEM_KEY.append(digest.hexdigest())
    return _SYSTEM_KEY[0]


def _evaluate_job(job):
    return _pam_eval.evaluate(**job)['results']


def evaluate(stage, binds, standin, entry):
    """Every class x scenario x service x op of ``stage`` through the real
    libpam (scenarios evaluated concurrently, one namespace and process each).

    Results are kept in $PAMCORPUS_CACHE/eval (/var/cache/slurm-adopt-corpus/eval), keyed by everything the
    evaluation sees (the staged tree and bound files byte for byte, the
    queries, probe users and answers, the evaluator, harness, stand-in and
    this test, this machine's libpam and PAM modules): an unchanged input is
    not evaluated twice; any change is evaluated by the real libpam again.
    PAMCORPUS_NO_CACHE=1 evaluates everything."""
    scenarios = list(H.SCENARIOS)
    derive = 'hung' in scenarios and 'stopped' in scenarios and _hung_is_stopped()
    if derive:
        scenarios.remove('hung')

    jobs, keys = {}, {}
    for scenario in scenarios:
        queries = H.queries(stage, scenario, entry['services'])
        spec = dict(queries=queries, probe_users=H.probe_users(scenario), answers=answers(scenario),
                    overlay=sorted(H.module_overlay(standin)), binds=sorted(binds))
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
        digest.update(_system_key(standin).encode())
        for path in [stage] + [binds[k] for k in sorted(binds)]:
            digest.update(b'\0')
            _hash_files(digest, path, base=path)
        keys[scenario] = os.path.join(EVAL_CACHE, digest.hexdigest() + '.json')
        jobs[scenario] = dict(queries=queries, tree=stage, probe_users=spec['probe_users'],
                              module_overlay=H.module_overlay(standin), files={'answers': spec['answers']},
                              binds=binds)
    by_scenario = {}
    for scenario in scenarios:
        if not os.environ.get('PAMCORPUS_NO_CACHE') and os.path.isfile(keys[scenario]):
            with open(keys[scenario]) as handle:
                by_scenario[scenario] = json.load(handle)
    todo = [s for s in scenarios if s not in by_scenario]
    # separate processes, not threads: the evaluator hashes passwords with
    # crypt(3), whose result buffer is shared by the threads of a process
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, len(todo))) as pool:
        for scenario, results in zip(todo, pool.map(_evaluate_job, [jobs[s] for s in todo])):
            by_scenario[scenario] = results
            if all(r['status'] == 'ok' for r in results):
                os.makedirs(EVAL_CACHE, exist_ok=True)
                with open(keys[scenario] + '.tmp', 'w') as handle:
                    json.dump(results, handle)
                os.rename(keys[scenario] + '.tmp', keys[scenario])
    if derive:
        by_scenario['hung'] = _as_hung(by_scenario['stopped'])
    return [r for scenario in H.SCENARIOS for r in by_scenario[scenario]]


def _path(result, switched_off=()):
    return [(t['module'], t['function']) for t in result.get('trace') or []
            if t['module'] not in ADOPT_NAMES and t['module'] != 'pam_slurm_adopt'
            and t['module'] + '.so' not in switched_off]


def path_check(before, after, switched_off=()):
    """Answers that are not allowed to change must also pass through the same
    stand-in modules (directory and site modules), in the same order; the
    modules the editor was asked to switch off (after_checks:
    no_active_session_module) excepted."""
    old = dict((_pam_eval.result_key(r), r) for r in before)
    out = []
    for res in after:
        prev = old.get(_pam_eval.result_key(res))
        if prev is None or H.allowed_change(prev, res):
            continue
        if _path(prev, switched_off) != _path(res, switched_off):
            out.append('%s: path through the stand-ins changed: %s -> %s' % (
                _pam_eval.describe(res), ' '.join('%s:%s' % p for p in _path(prev)) or '-',
                ' '.join('%s:%s' % p for p in _path(res)) or '-'))
    return out


LET_IN = ('PAM_SUCCESS', 'PAM_NEW_AUTHTOK_REQD')


def same_denials(before, after, entry):
    """For trees whose site had its own adopt rule in the middle of the
    account stack (manifest: denial_code_may_change): a login refused before
    and after is the same answer to sshd even when the refusing rule, hence
    the PAM code, differs (the adopt rule now comes last).  Such results are
    given their old code; every other change still counts."""
    old = dict((_pam_eval.result_key(r), r) for r in before)
    out = []
    for res in after:
        prev = old.get(_pam_eval.result_key(res))
        q = res['query']
        if prev is not None and q['ops'] == ['account'] and q['service'] in entry['services'] and \
                prev['status'] == res['status'] == 'ok' and prev['rc_name'] not in LET_IN and \
                res['rc_name'] not in LET_IN and prev['rc_name'] != res['rc_name']:
            res = dict(res, rc_name=prev['rc_name'], trace=prev.get('trace'))
        out.append(res)
    return out


def editor_params(entry, node):
    spec = pam_adopt.argument_spec()
    params = dict((k, v.get('default')) for k, v in spec.items())
    group = entry.get('admin_group') or DEFAULTS['check']['admin_group']
    subst = {'admin_group': group, 'ansible': H.CLASSES['ansible']['name']}
    wanted = dict(DEFAULTS['editor'])
    wanted.update(entry.get('editor') or {})
    for key, value in wanted.items():
        if isinstance(value, list):
            value = [v.format(**subst) if isinstance(v, str) else v for v in value]
        elif isinstance(value, str):
            value = value.format(**subst)
        params[key] = value
    params.update(root=node, check_mode=False)
    return params


def snapshot(root):
    """Every file and symlink below ``root``: content or link target, mode."""
    out = {}
    for base, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.islink(path):
                out[rel] = ('link', os.readlink(path))
            else:
                with open(path, 'rb') as handle:
                    out[rel] = ('file', handle.read(), st.st_mode & 0o7777)
    return out


def snapshot_diff(before, after):
    out = []
    for rel in sorted(set(before) | set(after)):
        if before.get(rel) != after.get(rel):
            out.append('%s: %s' % (rel, 'added' if rel not in before else 'removed' if rel not in after
                                   else 'changed'))
    return out


def no_active_session_module(node, params, modules):
    src = ps.FileSource(node, params['pamd_dir'], params['vendor_dir'])
    stack = ps.effective_stack(src, 'sshd', 'session')
    bad = []
    for entry in stack.entries:
        line = entry.line
        if getattr(line, 'kind', 'rule') == 'rule' and line.module_name in modules:
            bad.append('%s:%d %s' % (line.path, line.lineno, line.text.strip()))
    return ['sshd session stack still runs %s' % b for b in bad]


def fmt(title, items, limit=40):
    lines = ['%s (%d):' % (title, len(items))] + ['  ' + i for i in items[:limit]]
    if len(items) > limit:
        lines.append('  ... %d more' % (len(items) - limit))
    return '\n'.join(lines)


# --------------------------------------------------------------------------
# The test


@pytest.mark.parametrize('name', [p for e in TREES for p in _params_of(e)])
def test_tree(name, corpus, standin, record, tmp_path):
    out, index = corpus
    assert name in index, '%s was not rendered' % name
    entry = entry_of(name)
    t0 = time.time()
    with user_classes(entry):
        node = make_node(os.path.join(out, name), str(tmp_path / 'node'), entry)
        params = editor_params(entry, node)
        original = snapshot(node)
        refusal = None
        try:
            err = pam_adopt.check_params(params)      # what the module does before planning
            if err:
                raise pe.PlanError(err)
            plan = pe.plan_present(params)
        except pe.PlanError as exc:
            refusal = str(exc)
        facts = dict(family=entry['family'], expect=entry['expect'])
        if refusal is not None:
            record(name, actual='refused', message=refusal, seconds=round(time.time() - t0, 1), **facts)
            assert snapshot(node) == original, 'a refused plan wrote files'
            assert entry['expect'] == 'refused', '%s: the editor refused: %s' % (name, refusal)
            assert re.search(entry['refusal'], refusal), (
                '%s: refused, but the message does not match %r:\n%s' % (name, entry['refusal'], refusal))
            return
        stage, binds, notes = eval_stage(node, str(tmp_path / 'eval-before'), entry)
        before = evaluate(stage, binds, standin, entry)
        errors = [r for r in before if r['status'] != 'ok']
        assert not errors, fmt('%s: the evaluator failed on the tree as it is' % name,
                               ['%s: %s %s' % (_pam_eval.describe(r), r['status'], r.get('error')) for r in errors])
        facts.update(notes=notes, queries=len(before))
        written = pe.commit(params, plan, 'present')
        stage2, binds2, _notes = eval_stage(node, str(tmp_path / 'eval-after'), entry)
        after = evaluate(stage2, binds2, standin, entry)
        if entry.get('denial_code_may_change'):
            after = same_denials(before, after, entry)
        violations = H.property_check(before, after)
        switched_off = (entry.get('after_checks') or {}).get('no_active_session_module') or ()
        paths = path_check(before, after, switched_off)
        structure = []
        for module_list in [(entry.get('after_checks') or {}).get('no_active_session_module')]:
            if module_list:
                structure += no_active_session_module(node, params, module_list)
        record(name, actual='violations' if violations or paths or structure else 'edited',
               written=written, warnings=plan.warnings, violations=violations[:50], path_changes=paths[:50],
               structure=structure, seconds=round(time.time() - t0, 1), **facts)
        assert entry['expect'] == 'correct', (
            '%s: expected a refusal matching %r, but the editor wrote %s' % (name, entry.get('refusal'), written))
        problems = []
        if violations:
            problems.append(fmt('property violations (service action user [class, scenario]: before -> after)',
                                violations))
        if paths:
            problems.append(fmt('changed paths', paths))
        if structure:
            problems.append(fmt('structure', structure))
        assert not problems, '%s (editor wrote %s; warnings: %s)\n%s' % (
            name, ', '.join(written), '; '.join(plan.warnings) or 'none', '\n'.join(problems))
        # a second run changes nothing
        again = pe.plan_present(params)
        assert again.changed_paths() == [], '%s: a second run would change %s' % (name, again.changed_paths())
        # removal restores every file byte for byte
        absent = pe.plan_absent(dict(params, state='absent'))
        pe.commit(dict(params, state='absent'), absent, 'absent')
        diff = snapshot_diff(original, snapshot(node))
        assert not diff, fmt('%s: state=absent did not restore the tree' % name, diff)
        record(name, actual='correct', seconds=round(time.time() - t0, 1))
